"""The overview's first reading goes out at once: its statements are in flight together, on
the pool's connections opened up front, side by side.

Over a remote link each statement is a round trip or more; one after another (LISTEN, the
first look, the exact count, the ready/deferred split) they were most of the time to the first
numbers. Real PostgreSQL, the default pool. What is counted is which statements were started
before any of them ended, not time.
"""

from __future__ import annotations

import asyncio
import contextvars
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from pgq_console.core.backend import Backend, opening
from pgq_console.core.backend.asyncpg_drivers import AsyncpgPoolBackend
from pgq_console.core.clock import SystemClock
from pgq_console.core.models import OverviewSnapshot
from pgq_console.core.overview.refresher import Refresher
from tests.helpers import backend_for, enqueue

# Whose statement a type lookup is for: the first reading's, or one aside.
READING: contextvars.ContextVar[str] = contextvars.ContextVar("reading", default="aside")


def _what(sql: str) -> str:
    text = " ".join(sql.split())
    for start, name in (
        ("WITH RECURSIVE eps", "first look"),
        ("WITH counts AS", "exact count"),
        ("WITH events AS", "windows"),
        ("SELECT e.entrypoint, (SELECT count(*)", "split"),
    ):
        if text.startswith(start):
            return name
    return text[:30]


def _recording(backend: Backend, log: list[tuple[str, str]]) -> None:
    read, listen = backend.read, backend.listen

    async def recorded_read(sql: str, *args: object) -> list[dict[str, Any]]:
        what = _what(sql)
        log.append(("start", what))
        token = READING.set("first reading")
        try:
            return await read(sql, *args)
        finally:
            READING.reset(token)
            log.append(("end", what))

    async def recorded_listen(handler: Any) -> None:
        log.append(("start", "LISTEN"))
        try:
            await listen(handler)
        finally:
            log.append(("end", "LISTEN"))

    backend.read = recorded_read  # type: ignore[method-assign]
    backend.listen = recorded_listen  # type: ignore[method-assign]


async def test_the_first_reading_statements_are_in_flight_together(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = fresh_database
    first = asyncio.Event()
    await enqueue(dsn, "a", 3)
    await enqueue(dsn, "a", 2, execute_after=timedelta(hours=1))
    [held] = await enqueue(dsn, "b", 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = $1", held)
    finally:
        await connection.close()
    # asyncpg's catalog lookups of types it does not know (int8[], int4[]): 6-7 round trips
    # each; none for the first reading's statements (their arrays come as text).
    lookups: list[str] = []
    introspect = asyncpg.connection.Connection._introspect_types

    async def counted_lookup(self: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(READING.get())
        return await introspect(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "_introspect_types", counted_lookup)
    backend = await backend_for(dsn)
    log: list[tuple[str, str]] = []
    _recording(backend, log)
    snapshots: list[OverviewSnapshot] = []

    def on_snapshot(snapshot: OverviewSnapshot) -> None:
        log.append(("snapshot", ""))
        snapshots.append(snapshot)
        first.set()

    refresher = Refresher(
        backend, SystemClock(), on_snapshot=on_snapshot, on_status=lambda status: None
    )
    task = asyncio.create_task(refresher.run())
    try:
        await asyncio.wait_for(first.wait(), 60)
        assert "first reading" not in lookups, lookups
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await backend.close()
    before_snapshot = log[: log.index(("snapshot", ""))]
    first_end = next(i for i, (kind, _) in enumerate(log) if kind == "end")
    started_together = {what for kind, what in log[:first_end] if kind == "start"}
    assert {"LISTEN", "first look", "exact count", "windows"} <= started_together, log
    # The ready/deferred split came with the first look, not after it.
    assert ("start", "split") not in before_snapshot, log
    rows = {row.entrypoint: row for row in snapshots[0].rows}
    assert (rows["a"].ready, rows["a"].deferred, rows["a"].held) == (3, 2, 0)
    assert (rows["b"].ready, rows["b"].deferred, rows["b"].held) == (0, 0, 1)
    assert rows["a"].oldest_ready_since is not None


async def test_the_pool_opens_its_connections_side_by_side(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection opened up front is connecting at once (asyncpg's own `min_size` opens
    the first alone, then the others: two connects one after the other)."""
    size = getattr(opening, "POOL_OPEN_SIZE", 4)
    in_flight = 0
    most = 0
    connect = asyncpg.connection.connect

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            # Each waits (a bounded while) for the others: one after another, none comes.
            for _ in range(200):
                if in_flight >= size:
                    break
                await asyncio.sleep(0.01)
            return await connect(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(asyncpg.connection, "connect", counted)
    backend = await backend_for(fresh_database)
    try:
        assert isinstance(backend, AsyncpgPoolBackend)
        pool = backend.pool
        assert most == size
        assert pool.get_size() == size
        assert pool.get_idle_size() == size
    finally:
        await backend.close()
