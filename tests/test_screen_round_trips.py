"""A key press waits one round trip: each screen's reads are sent at once (on a pool, side by
side), never one after another. Over 50 ms that is 50 ms, not 50 ms per statement (the
Database screen took 2.4 s: PgQueuer's 14 catalog statements, then the activity, the sizes,
the index state and its plan, one after another).

How it is counted: the proxy holds every reply from the server (`LossyProxy.stall`) while the
screen's reading starts; every statement of its first round trip is then waiting at once, and
the test waits for exactly that many. Released, the reading must end without one more round
trip. A screen that goes back to reading in turn never has them all waiting (the test fails
after its liveness limit), and one that adds a statement after the first answer is counted.
The pool's connections are warmed first with the very statements (asyncpg prepares a statement
on its first use on a connection: one more round trip, once)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgq_console.core import depth as depth_module
from pgq_console.core import index_cache
from pgq_console.core.backend import AsyncpgPoolBackend, Backend, open_backend
from pgq_console.core.backend import catalog as catalog_module
from pgq_console.core.backend.opening import POOL_MAX_SIZE
from pgq_console.core.charts import ChartsSnapshot, fetch_charts_then_percentiles
from pgq_console.core.clock import SystemClock
from pgq_console.core.health import fetch_health
from pgq_console.core.jobs import fetch_held_and_groups, forget_held_index, held_index_usable
from pgq_console.core.jobs import held as held_module
from pgq_console.core.models import OverviewSnapshot
from pgq_console.core.overview import Refresher
from pgq_console.core.overview.pacing import Pacer
from pgq_console.core.overview.tiers import DEFERRED_EVERY_S, OverviewTiers
from pgq_console.core.schedules import fetch_schedules
from pgq_console.core.target import DriverKind, Installation, Pooler
from tests.helpers import enqueue, wait_for
from tests.lossy_proxy import LossyProxy
from tests.screens_support import run_sql


def _waits(proxy: LossyProxy) -> int:
    """Round trips a reader waited for: the pool's reset on release runs aside, not counted."""
    return proxy.requests - sum("RESET ALL" in text for text in proxy.request_texts)


async def _warm(backend: AsyncpgPoolBackend, reading: Callable[[], Awaitable[object]]) -> None:
    """Run `reading` once, then its every statement on every connection the pool can have."""
    seen = await _statements(backend, reading)
    connections = [await backend.pool.acquire() for _ in range(POOL_MAX_SIZE)]
    try:
        for connection in connections:
            for sql, args in seen:
                await connection.fetch(sql, *args)
    finally:
        for connection in connections:
            await backend.pool.release(connection)


async def _statements(
    backend: Backend, reading: Callable[[], Awaitable[object]]
) -> list[tuple[str, tuple[object, ...]]]:
    """The statements `reading` sends (through `Backend.read`), with their arguments."""
    seen: list[tuple[str, tuple[object, ...]]] = []
    read = backend.read

    async def recording(sql: str, *args: object) -> list[dict[str, Any]]:
        seen.append((sql, args))
        return await read(sql, *args)

    backend.read = recording  # type: ignore[method-assign]
    try:
        await reading()
    finally:
        del backend.read
    return seen


async def _round_trips(
    proxy: LossyProxy, reading: Callable[[], Awaitable[Any]], statements: int
) -> Any:
    """`reading`'s result, asserting that its `statements` were all sent before any answer came
    back and that nothing was sent after."""
    before = _waits(proxy)
    proxy.stall()
    try:
        task = asyncio.ensure_future(reading())
        await wait_for(
            lambda: _waits(proxy) - before >= statements or task.done(),
            within=10,
            what=f"{statements} statements sent at once",
        )
    finally:
        proxy.resume()
    result = await task
    assert _waits(proxy) - before == statements
    return result


@pytest.fixture
async def proxied(fresh_database: str) -> Any:
    async with LossyProxy(fresh_database) as proxy:
        backend = await open_backend(
            DriverKind.ASYNCPG_POOL, proxy.dsn, Installation(), "test-db", (), pooler=Pooler.NONE
        )
        assert isinstance(backend, AsyncpgPoolBackend) and backend.one_statement_reads
        try:
            yield proxy, backend
        finally:
            await backend.close()


async def test_the_database_screen_is_one_round_trip(proxied: Any, fresh_database: str) -> None:
    proxy, backend = proxied
    await run_sql(fresh_database, "CREATE TABLE other (id int)")  # not a queue table
    await _warm(backend, lambda: fetch_health(backend))
    # The activity with the indexes' states; the sizes with the schema catalog; the EXPLAINs of
    # the held count and of the overview's hour read.
    data = await _round_trips(proxy, lambda: fetch_health(backend), 4)
    assert data.schema.installed and not data.schema.pending and not data.schema.problem
    assert [t.name for t in data.tables][:2] == ["pgqueuer", "pgqueuer_log"]
    assert all(t.total_bytes for t in data.tables) and data.sizes_problem is None
    assert data.held_index is not None and not data.held_index.exists and data.held_index.plan
    statistics = data.statistics_index
    assert statistics is not None and not statistics.exists and statistics.plan
    assert data.server_version


async def test_the_failures_screen_is_one_round_trip(proxied: Any, fresh_database: str) -> None:
    proxy, backend = proxied
    [held] = await enqueue(fresh_database, "fails", 1)
    await run_sql(fresh_database, "UPDATE pgqueuer SET status = 'failed' WHERE id = $1", held)

    def reading() -> Awaitable[Any]:
        now = datetime.now(UTC)
        return fetch_held_and_groups(backend, now, held_limit=500, group_limit=200)

    await _warm(backend, reading)
    page, groups = await _round_trips(proxy, reading, 2)  # the held page and the groups
    assert [row.id for row in page.rows] == [held]
    assert groups.total == 0


async def test_the_charts_counts_do_not_wait_for_the_percentiles(proxied: Any) -> None:
    proxy, backend = proxied
    counts: list[ChartsSnapshot] = []
    await _warm(backend, lambda: fetch_charts_then_percentiles(backend, counts.append))
    # The minutes, the backlog and the percentiles.
    snapshot = await _round_trips(
        proxy, lambda: fetch_charts_then_percentiles(backend, counts.append), 3
    )
    assert counts[-1].percentiles_pending and not snapshot.percentiles_pending


class _HandClock(SystemClock):
    """Monotonic time moved by the test (when the ready/deferred split is due), wall time real."""

    def __init__(self) -> None:
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono


async def test_the_overview_following_the_log_is_one_round_trip(
    proxied: Any, fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that follows the log (a large queue) reads the delta and, when it is due, the
    ready/deferred split in one statement, in one snapshot: it was a statement of its own after
    the delta, so the overview's return from another screen waited two round trips in turn."""
    proxy, backend = proxied
    monkeypatch.setattr(depth_module, "FOLLOW_ABOVE", 20)
    monkeypatch.setattr(depth_module, "FOLLOW_BELOW", 10)
    await enqueue(fresh_database, "a", 25)
    await enqueue(fresh_database, "b", 2, execute_after=timedelta(hours=1))
    clock = _HandClock()
    tiers = OverviewTiers(
        backend, clock, Pacer(0.02, clock.mono), interval_s=lambda: 2.0, on_exact=lambda: None
    )

    async def refresh() -> None:  # as the refresher does: the depth, then the split tier
        await tiers.follow_depth()
        await tiers.read_deferred()

    try:
        await refresh()  # the first look and the exact count: the log is followed from here
        assert not tiers.tracker.direct and tiers.tracker.exact

        async def due_refresh() -> None:
            clock.mono += DEFERRED_EVERY_S + 1  # the split of every entrypoint is due
            await refresh()

        await _warm(backend, due_refresh)
        # Jobs queued since, some deferred: the split must see them with the delta.
        await enqueue(fresh_database, "c", 3)
        await enqueue(fresh_database, "c", 4, execute_after=timedelta(hours=1))
        await _round_trips(proxy, due_refresh, 1)
        tracked = tiers.tracked
        assert tracked is not None
        depth = {e: (d.ready, d.deferred) for e, d in tracked.depth.items() if d.ready + d.deferred}
        assert depth == {"a": (25, 0), "b": (0, 2), "c": (3, 4)}
        # Only the entrypoints that had jobs queued since: the same one statement.
        await enqueue(fresh_database, "a", 1, execute_after=timedelta(hours=1))
        clock.mono += 1.5
        await _round_trips(proxy, refresh, 1)
        tracked = tiers.tracked
        assert tracked is not None and (tracked.depth["a"].ready, tracked.depth["a"].deferred) == (
            25,
            1,
        )
    finally:
        await tiers.close()


async def test_the_overview_returns_with_its_reads_sent_at_once(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shown again after another screen, the overview reads the log delta (with the split of
    the jobs queued meanwhile) and the windows then due at once, on the pool's connections:
    the windows were read after the depth had been shown, one more round trip in turn."""
    monkeypatch.setattr(depth_module, "FOLLOW_ABOVE", 20)
    monkeypatch.setattr(depth_module, "FOLLOW_BELOW", 10)
    await enqueue(fresh_database, "a", 25)
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, fresh_database, Installation(), "test-db", ()
    )
    log: list[tuple[str, str]] = []
    read = backend.read

    async def recorded(sql: str, *args: object) -> list[dict[str, Any]]:
        text = " ".join(sql.split())
        what = next(
            (
                name
                for start, name in (
                    ("WITH rows AS", "delta"),
                    ("WITH events AS", "windows"),
                    ("SELECT e.entrypoint, (SELECT count(*)", "split"),
                )
                if text.startswith(start)
            ),
            text[:30],
        )
        log.append(("start", what))
        try:
            return await read(sql, *args)
        finally:
            log.append(("end", what))

    backend.read = recorded  # type: ignore[method-assign]
    snapshots: list[OverviewSnapshot] = []
    shown = True
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=snapshots.append,
        on_status=lambda _status: None,
        active=lambda: shown,
    )
    task = asyncio.create_task(refresher.run())
    clock = refresher.clock

    def settled() -> bool:
        starts = sum(kind == "start" for kind, _ in log)
        return starts == sum(kind == "end" for kind, _ in log) and refresher.status.refreshes >= 3

    try:
        await wait_for(
            lambda: settled() and not refresher.tracker.direct and refresher.tracker.exact,
            within=30,
            what="the log followed, its first reads done",
        )
        shown = False  # another screen
        await wait_for(settled, what="no read under way")
        await enqueue(fresh_database, "c", 2)
        await enqueue(fresh_database, "c", 3, execute_after=timedelta(hours=1))
        await wait_for(
            lambda: refresher.tiers.log_tiers_due(clock.monotonic()), within=30, what="windows due"
        )
        del log[:]
        seen = len(snapshots)
        shown = True
        refresher.wake()  # the screen is resumed
        await wait_for(
            lambda: (
                any(r.entrypoint == "c" for s in snapshots[seen:] for r in s.rows)
                and ("end", "windows") in log
            ),
            what="the return's reads",
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await backend.close()
    first_end = next(i for i, (kind, _) in enumerate(log) if kind == "end")
    assert {what for _, what in log[:first_end]} == {"delta", "windows"}, log
    assert ("start", "split") not in log, log
    rows = {r.entrypoint: r for r in next(s for s in snapshots[seen:] if s.rows).rows}
    assert (rows["c"].ready, rows["c"].deferred) == (2, 3)


async def test_the_schedules_screen_is_one_statement_without_schedules(proxied: Any) -> None:
    proxy, backend = proxied
    await _warm(backend, lambda: fetch_schedules(backend))
    snapshot = await _round_trips(proxy, lambda: fetch_schedules(backend), 1)
    assert snapshot.rows == () and snapshot.taken_at is not None


async def test_the_schema_catalog_falls_back_to_pgqueuers_reading(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should a pgqueuer release change its catalog queries so they cannot be combined, the
    Database screen reads the schema PgQueuer's own way (more statements, the same answer)."""

    def not_combinable(*args: object, **kwargs: object) -> None:
        raise catalog_module.NotCombinable("a second placeholder")

    monkeypatch.setattr(catalog_module, "combined_catalog_columns", not_combinable)
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, fresh_database, Installation(), "test-db", ()
    )
    try:
        data = await fetch_health(backend)
        assert data.schema.installed and not data.schema.pending and not data.schema.problem
        assert all(t.total_bytes for t in data.tables) and data.sizes_problem is None
    finally:
        await backend.close()


async def test_the_held_index_is_read_again_aside(fresh_database: str) -> None:
    """Past its time the known answer is given at once and read again for the next page (a key
    press on Failures does not wait for the catalog); the console's own build forgets it."""
    backend: Backend = await open_backend(
        DriverKind.ASYNCPG_POOL, fresh_database, Installation(), "test-db", ()
    )
    try:
        assert not await held_index_usable(backend, now=0.0)
        await run_sql(
            fresh_database,
            "CREATE INDEX pgqueuer_held_ep_id_idx ON pgqueuer (entrypoint, id) "
            "WHERE status = 'failed'",
        )
        assert not await held_index_usable(backend, now=1.0)  # known, not read again yet
        later = held_module.HELD_INDEX_TTL_S + 1
        assert not await held_index_usable(backend, now=later)  # at once; read aside
        name = "pgqueuer_held_ep_id_idx"
        await wait_for(
            lambda: index_cache.reading_aside(backend, name) is None, what="the read aside"
        )
        assert await held_index_usable(backend, now=later + 1)
        # A read aside overtaken by `forget_held_index` does not put its answer back.
        await run_sql(fresh_database, "DROP INDEX pgqueuer_held_ep_id_idx")
        assert await held_index_usable(backend, now=3 * later)  # starts a read aside
        aside = index_cache.reading_aside(backend, name)
        assert aside is not None
        forget_held_index(backend)
        await aside
        assert index_cache.known(backend, name) is None
        assert not await held_index_usable(backend, now=3 * later + 1)  # read now
    finally:
        await backend.close()


async def test_the_screens_read_only_types_asyncpg_knows(fresh_database: str) -> None:
    """No integer array nor enum in what the screens send or get back: asyncpg looks those up
    in the catalog first, per connection (6 round trips, 0.3 s at 50 ms RTT), so the first key
    press that lands on each of the pool's connections paid it (the Database screen's blocking
    pids, the failure groups' hourly counts)."""
    import asyncpg
    from asyncpg.protocol.protocol import BUILTIN_TYPE_OID_MAP

    from pgq_console.core.workers import fetch_workers

    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, fresh_database, Installation(), "test-db", ()
    )
    connection = await asyncpg.connect(fresh_database)
    try:
        now = datetime.now(UTC)
        readings: dict[str, Callable[[], Awaitable[object]]] = {
            "database": lambda: fetch_health(backend),
            "failures": lambda: fetch_held_and_groups(
                backend, now, held_limit=500, group_limit=200
            ),
            "charts": lambda: fetch_charts_then_percentiles(backend, lambda _counts: None),
            "schedules": lambda: fetch_schedules(backend),
            "workers": lambda: fetch_workers(backend, now=now),
        }
        for name, reading in readings.items():
            for sql, _args in await _statements(backend, reading):
                statement = await connection.prepare(sql)
                types = [*statement.get_parameters(), *(a.type for a in statement.get_attributes())]
                looked_up = [t.name for t in types if t.oid not in BUILTIN_TYPE_OID_MAP]
                assert not looked_up, (name, looked_up, sql[:200])
    finally:
        await connection.close()
        await backend.close()


async def test_the_overview_reads_only_types_asyncpg_knows(fresh_database: str) -> None:
    """The log delta sent the in-progress xids as a bigint[]: asyncpg looked int8[] up in the
    catalog on each pool connection the delta first ran on (~7 round trips: 0.44 s of an
    overview's return at 50 ms RTT, measured in the scale bench). Every statement the overview
    sends takes and gives only types asyncpg knows."""
    import asyncpg
    from asyncpg.protocol.protocol import BUILTIN_TYPE_OID_MAP

    from pgq_console.core.stats import windows_sql

    installation = Installation()
    statements = {
        "first look": depth_module.first_look_sql(installation),
        "exact count": depth_module.exact_sql(installation),
        "delta": depth_module.delta_sql(installation),
        "split": depth_module.deferred_sql(installation),
        "direct": depth_module.direct_sql(installation, picked_held=False),
        "direct with picked/held": depth_module.direct_sql(installation, picked_held=True),
        "windows": windows_sql(installation),
    }
    connection = await asyncpg.connect(fresh_database)
    try:
        for name, sql in statements.items():
            statement = await connection.prepare(sql)
            types = [*statement.get_parameters(), *(a.type for a in statement.get_attributes())]
            looked_up = [t.name for t in types if t.oid not in BUILTIN_TYPE_OID_MAP]
            assert not looked_up, (name, looked_up)
    finally:
        await connection.close()
