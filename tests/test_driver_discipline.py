"""One connection discipline per driver (issue 19): reads and writes never interleave on a
shared connection, and every extra connection is made the way the handed-in one was."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from pgq_console.core.backend import Backend
from pgq_console.core.enqueue import Enqueuer, EnqueueRequest
from pgq_console.core.stats import fetch_depth, fetch_windows
from pgq_console.core.target import DriverKind
from tests.helpers import backend_for

ASYNC_KINDS = [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG]


async def _count(dsn: str, entrypoint: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint
            )
        )
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", ASYNC_KINDS, ids=lambda k: k.value)
async def test_reads_and_enqueues_never_interleave(fresh_database: str, kind: DriverKind) -> None:
    """The overview's reads run while the form enqueues: every reported id is in the table,
    and the connection still reads afterwards (no stuck transaction, no "operation in
    progress", no ReadOnlySqlTransaction, no SAVEPOINT outside a transaction)."""
    backend = await backend_for(fresh_database, kind)
    assert isinstance(backend, Backend)
    entrypoint = f"race_{kind.name.lower()}"
    stop = asyncio.Event()
    read_errors: list[BaseException] = []
    reads = 0

    async def refresher() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                await fetch_depth(backend)
                await fetch_windows(backend)
                reads += 1
            except Exception as exc:  # collected: the assertion names them
                read_errors.append(exc)
            await asyncio.sleep(0)

    try:
        readers = [asyncio.ensure_future(refresher()) for _ in range(2)]
        enqueuer = Enqueuer(backend, batch_size=50)
        reported: list[int] = []
        errors: list[str] = []
        for _ in range(30):
            result = await enqueuer.enqueue(EnqueueRequest(entrypoint=entrypoint, copies=100))
            reported.extend(result.ids)
            if result.error:
                errors.append(result.error)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        assert errors == []
        assert read_errors == []
        assert reads > 0
        assert len(reported) == len(set(reported)) == 3000
        assert await _count(fresh_database, entrypoint) == len(reported)
        # Nothing is stuck: the shared connection still reads and writes.
        assert (await asyncio.wait_for(fetch_depth(backend), 10)).depth[entrypoint].ready == 3000
        again = await asyncio.wait_for(
            Enqueuer(backend).enqueue(EnqueueRequest(entrypoint=entrypoint)), 10
        )
        assert again.error is None and len(again.ids) == 1
    finally:
        stop.set()
        await backend.close()
