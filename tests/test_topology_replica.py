"""Heavy reads on a real streaming replica (initdb + pg_basebackup -R), the rest on the primary."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.config import Target, open_target
from pgq_console.core import actions
from pgq_console.core.backend import Backend
from pgq_console.core.jobs import fetch_page, parse_filter
from pgq_console.core.stats import fetch_depth
from pgq_console.widgets.status_line import LiveLine
from tests.conftest import install_pgqueuer
from tests.helpers import enqueue, wait_until
from tests.topology_fixtures import Cluster, running_primary, start_replica

DATABASE = "pgqc_replica"
ASYNC_DRIVERS = ["asyncpg-pool", "asyncpg", "psycopg"]


@dataclass
class Pair:
    primary: Cluster
    replica: Cluster

    @property
    def primary_dsn(self) -> str:
        return self.primary.database_dsn(DATABASE)

    @property
    def replica_dsn(self) -> str:
        return self.replica.database_dsn(DATABASE)


async def _fetchval(dsn: str, sql: str, *args: object) -> object:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


async def _until_replayed(pair: Pair, sql: str, expected: object) -> None:
    """Wait until the standby shows what the primary committed (no wall-clock guess)."""
    for _ in range(600):
        try:
            if await _fetchval(pair.replica_dsn, sql) == expected:
                return
        except (asyncpg.PostgresError, OSError):
            pass  # the database or table not replayed yet
        await asyncio.sleep(0.05)
    raise AssertionError(f"the standby never showed {sql} = {expected!r}")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with running_primary(replication=True) as (root, primary):
        asyncio.run(_fetchval(primary.dsn, f'CREATE DATABASE "{DATABASE}"'))
        asyncio.run(install_pgqueuer(primary.database_dsn(DATABASE)))
        replica = start_replica(root, primary)
        try:
            result = Pair(primary, replica)
            asyncio.run(_until_replayed(result, "SELECT count(*) FROM pgqueuer", 0))
            yield result
        finally:
            replica.stop()


async def _reset(pair: Pair) -> None:
    await _fetchval(pair.primary_dsn, "TRUNCATE pgqueuer, pgqueuer_log")
    await _until_replayed(pair, "SELECT count(*) FROM pgqueuer", 0)


async def _open(pair: Pair, driver: str) -> Backend:
    target = Target(dsn=pair.primary_dsn, driver=driver, replica_dsn=pair.replica_dsn)
    backend = await open_target(target)
    assert isinstance(backend, Backend) and backend.replica is not None
    return backend


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
async def test_heavy_reads_on_the_replica_previews_and_depth_on_the_primary(
    pair: Pair, driver: str
) -> None:
    await _reset(pair)
    ids = await enqueue(pair.primary_dsn, "rep", 3)
    await _until_replayed(pair, "SELECT count(*) FROM pgqueuer", 3)
    backend = await _open(pair, driver)
    paused = False
    try:
        assert backend.replica is not None
        assert backend.replica.usable() is None  # not checked yet: the primary answers
        assert (await backend.replica.check(force=True)).in_use
        await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_pause()")
        paused = True
        # Committed on the primary only: a failure held, two more queued.
        await _fetchval(
            pair.primary_dsn, "UPDATE pgqueuer SET status = 'failed' WHERE id = $1", ids[0]
        )
        await enqueue(pair.primary_dsn, "rep", 2)

        page = await fetch_page(backend, parse_filter("ep:rep"))
        assert len(page.rows) == 3  # the standby's rows
        assert all(row.status == "queued" for row in page.rows)
        assert (await fetch_depth(backend)).depth["rep"].ready == 4  # live depth: primary
        preview = await actions.requeue(backend, actions.ids_predicate(ids)).preview(backend)
        assert preview.count == 1  # the held failure exists on the primary only
        on_replica = await _fetchval(
            pair.replica_dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq-console'",
        )
        assert isinstance(on_replica, int) and on_replica >= 1

        # Past the threshold the primary answers, and the status says why.
        backend.replica.max_lag_s = 0.5
        loop = asyncio.get_running_loop()
        started = loop.time()
        while (await backend.replica.check(force=True)).in_use:
            assert loop.time() - started < 60, "the lag never grew past 0.5 s"
            await asyncio.sleep(0.1)
        status = backend.replica.status
        assert status.problem is not None and status.problem.startswith("lag ")
        assert status.describe().endswith("reads on the primary")
        page = await fetch_page(backend, parse_filter("ep:rep"))
        assert len(page.rows) == 5
    finally:
        if paused:
            await _fetchval(pair.replica_dsn, "SELECT pg_wal_replay_resume()")
        await backend.close()


async def test_header_shows_lag_and_fallback_when_the_replica_stops(pair: Pair) -> None:
    await _reset(pair)
    backend = await _open(pair, "asyncpg-pool")
    app = PgqConsole(backend, refresh_interval=0.5)
    try:
        async with app.run_test(size=(200, 30)) as pilot:
            line = app.screen.query_one(LiveLine)

            def header() -> str:
                return str(line.render())

            await wait_until(pilot, lambda: "replica lag " in header(), 30, "the replica lag")
            pair.replica.stop()
            try:
                await wait_until(
                    pilot,
                    lambda: "replica down" in header() and "reads on the primary" in header(),
                    60,
                    "the fallback in the header",
                )
                await enqueue(pair.primary_dsn, "after_stop", 2)
                page = await fetch_page(backend, parse_filter("ep:after_stop"))
                assert len(page.rows) == 2  # the primary answered
            finally:
                pair.replica.start()
            await wait_until(pilot, lambda: "replica lag " in header(), 60, "the replica back")
    finally:
        await backend.close()


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
async def test_pointed_at_a_standby_the_console_still_reads(pair: Pair, driver: str) -> None:
    """The pooler probe's NOTIFY is refused on a standby: that is no reason not to connect."""
    await _reset(pair)
    await enqueue(pair.primary_dsn, "standby_only", 2)
    await _until_replayed(pair, "SELECT count(*) FROM pgqueuer", 2)
    backend = await open_target(Target(dsn=pair.replica_dsn, driver=driver, read_only=True))
    try:
        assert isinstance(backend, Backend)
        assert (await fetch_depth(backend)).depth["standby_only"].ready == 2
    finally:
        await backend.close()


async def test_a_standby_target_is_neither_offered_nor_given_an_index(pair: Pair) -> None:
    """Pointed at the standby itself (not --read-only): the Database screen offers no index
    and the action refuses at its preview, before anything is audited or built."""
    from pgq_console.core.errors import ConsoleError
    from pgq_console.core.health import fetch_health
    from pgq_console.core.indexes import HeldIndexAction, StatisticsIndexAction
    from pgq_console.screens.health import HealthScreen
    from tests.screens_support import console, open_screen, until

    backend = await open_target(Target(dsn=pair.replica_dsn, driver="asyncpg-pool"))
    try:
        assert isinstance(backend, Backend) and not backend.read_only
        health = await fetch_health(backend)
        assert health.standby
        for action in (StatisticsIndexAction(), HeldIndexAction()):
            with pytest.raises(ConsoleError, match="standby"):
                await action.preview(backend)
    finally:
        await backend.close()
    app = console(pair.replica_dsn)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_screen(pilot, "6", HealthScreen)

        def line() -> str:
            return " ".join(str(screen.query_one("#health-held-index").render()).split())

        await until(pilot, lambda: "no index (PgQueuer has none)" in line())
        assert "review and create" not in line()
