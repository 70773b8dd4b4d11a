"""One connection discipline per driver: reads and writes never interleave on a
shared connection, and every extra connection is made the way the handed-in one was."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
import pytest
from pgqueuer.queries import Queries

from pgq_console.core.backend import (
    AsyncpgBackend,
    AsyncpgPoolBackend,
    Backend,
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.clock import SystemClock
from pgq_console.core.consumers import ConsumerSupervisor, parse_consumer_form
from pgq_console.core.enqueue import Enqueuer, EnqueueRequest
from pgq_console.core.errors import ConsoleError
from pgq_console.core.stats import fetch_depth, fetch_windows
from pgq_console.core.target import DriverKind, Installation
from tests.helpers import LIVENESS_STRETCH, backend_for, enqueue

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


# -- item 2: every extra connection is made like the handed-in one ---------------------------


async def _until(predicate: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within * LIVENESS_STRETCH
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        await asyncio.sleep(0.05)


async def _queued(dsn: str, entrypoint: str, table: str = "pgqueuer") -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE entrypoint = $1", entrypoint
            )
        )
    finally:
        await connection.close()


async def _run_noop_consumer(
    backend: Backend, entrypoint: str, drained: Callable[[], Awaitable[bool]]
) -> None:
    supervisor = ConsumerSupervisor({}, SystemClock())
    try:
        consumer = await supervisor.start(
            backend, parse_consumer_form({"handler": "noop", "entrypoints": entrypoint})
        )
        await _until(drained)
        supervisor.stop(consumer.id)
        assert await supervisor.wait(consumer.id, within=20)
    finally:
        supervisor.close()


async def test_pool_with_its_own_connect_function(database_dsn: str, fresh_database: str) -> None:
    """The pool's `connect=` goes to `database_dsn` whatever its dsn says: consumers, the
    audit listener and every other extra connection go there too."""
    entrypoint = "pool_connect_fn"
    await enqueue(database_dsn, entrypoint, 7)
    await enqueue(fresh_database, entrypoint, 7)  # the database the pool's dsn names

    async def connect_to_the_real_database(*_: Any, **options: Any) -> asyncpg.Connection:
        return await asyncpg.connect(
            database_dsn,
            connection_class=options["connection_class"],
            record_class=options["record_class"],
        )

    pool = await asyncpg.create_pool(
        fresh_database, connect=connect_to_the_real_database, min_size=1, max_size=4
    )
    try:
        backend = AsyncpgPoolBackend(pool, Installation(), "embedded pool")
        extra = await backend.new_connection()
        try:
            assert await extra.fetchval("SELECT current_database()") == await pool.fetchval(
                "SELECT current_database()"
            )
        finally:
            await extra.close()
        await _run_noop_consumer(backend, entrypoint, lambda: _zero(database_dsn, entrypoint))
        assert await _queued(fresh_database, entrypoint) == 7  # untouched
        await backend.close()
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def _zero(dsn: str, entrypoint: str, table: str = "pgqueuer") -> bool:
    return await _queued(dsn, entrypoint, table) == 0


async def test_connection_with_a_search_path(fresh_database: str) -> None:
    """A connection opened with server_settings={"search_path": ...}: the consumer works on
    that schema's queue, not on public's."""
    entrypoint = "schema_job"
    admin = await asyncpg.connect(fresh_database)
    await admin.execute("CREATE SCHEMA alt")
    await admin.close()
    connection = await asyncpg.connect(fresh_database, server_settings={"search_path": "alt"})
    try:
        await Queries.from_asyncpg_connection(connection).install()
        await Queries.from_asyncpg_connection(connection).enqueue(
            [entrypoint] * 5, [None] * 5, [0] * 5
        )
        await enqueue(fresh_database, entrypoint, 3)  # public.pgqueuer
        backend = AsyncpgBackend(connection, Installation(), "embedded connection")
        extra = await backend.new_connection()
        try:
            assert await extra.fetchval("SELECT current_schema()") == "alt"
        finally:
            await extra.close()
        await _run_noop_consumer(
            backend, entrypoint, lambda: _zero(fresh_database, entrypoint, "alt.pgqueuer")
        )
        assert await _queued(fresh_database, entrypoint, "public.pgqueuer") == 3
        await backend.close()
    finally:
        await connection.close()


async def test_psycopg_connection_with_a_search_path(fresh_database: str) -> None:
    """The same for psycopg: its `options=-c search_path=...` reach the extra connections."""
    admin = await asyncpg.connect(fresh_database)
    await admin.execute("CREATE SCHEMA alt")
    await admin.close()
    aconn = await psycopg.AsyncConnection.connect(
        fresh_database, autocommit=True, options="-c search_path=alt"
    )
    try:
        backend = PsycopgBackend(aconn, Installation(), "embedded psycopg")
        extra = await backend.new_connection()
        try:
            cursor = await extra.execute("SELECT current_schema()")
            assert (await cursor.fetchone()) == ("alt",)
        finally:
            await extra.close()
        await backend.close()
    finally:
        await aconn.close()


async def test_search_path_set_after_connecting_is_refused_with_the_reason(
    fresh_database: str,
) -> None:
    """A `SET search_path` cannot be copied from the startup settings: the consumer is refused
    with one line that says why, instead of working on another schema's queue."""
    admin = await asyncpg.connect(fresh_database)
    await admin.execute("CREATE SCHEMA alt")
    await admin.close()
    connection = await asyncpg.connect(fresh_database)
    await connection.execute("SET search_path TO alt")
    supervisor = ConsumerSupervisor({}, SystemClock())
    try:
        backend = AsyncpgBackend(connection, Installation(), "embedded connection")
        with pytest.raises(ConsoleError) as refused:
            await supervisor.start(
                backend, parse_consumer_form({"handler": "noop", "entrypoints": "x"})
            )
        assert "search_path" in str(refused.value) and "\n" not in str(refused.value)
        assert not [c for c in supervisor.consumers.values() if c.state == "running"]
        await backend.close()
    finally:
        supervisor.close()
        await connection.close()


async def test_sync_driver_enqueues_while_the_depth_refreshes(fresh_database: str) -> None:
    """psycopg-sync: the enqueue-only screen's depth reads and the form's enqueues share the
    blocking connection from worker threads; every reported id is written."""
    backend = await backend_for(fresh_database, DriverKind.PSYCOPG_SYNC)
    assert isinstance(backend, SyncPsycopgBackend)
    stop = asyncio.Event()
    read_errors: list[Exception] = []

    async def depth() -> None:
        while not stop.is_set():
            try:
                await backend.queue_size()
            except Exception as exc:
                read_errors.append(exc)

    reader = asyncio.ensure_future(depth())
    try:
        reported: list[int] = []
        for _ in range(10):
            result = await Enqueuer(backend, batch_size=50).enqueue(
                EnqueueRequest(entrypoint="sync_race", copies=200)
            )
            assert result.error is None
            reported.extend(result.ids)
        stop.set()
        await asyncio.wait_for(reader, 30)
        assert read_errors == []
        assert await _count(fresh_database, "sync_race") == len(set(reported)) == 2000
    finally:
        stop.set()
        await backend.close()


@pytest.mark.parametrize("kind", ["asyncpg", "psycopg"])
async def test_a_new_connection_inside_a_transaction_does_not_wait_for_itself(
    fresh_database: str, kind: str
) -> None:
    """Schema installs open their connection inside the action's transaction, which holds the
    shared connection's lock: making that connection must not wait for the same lock."""
    owner: Any
    backend: Backend
    if kind == "asyncpg":
        owner = await asyncpg.connect(fresh_database)
        backend = AsyncpgBackend(owner, Installation(), "embedded connection")
    else:
        owner = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
        backend = PsycopgBackend(owner, Installation(), "embedded psycopg")
    try:
        async with backend.transaction():
            extra = await asyncio.wait_for(backend.new_connection(), 15)
            await extra.close()
        await backend.close()
    finally:
        await owner.close()


async def test_pool_init_runs_on_the_consoles_connections_too(fresh_database: str) -> None:
    """A pool whose `init=` sets the search_path: the console's extra connections get it."""
    admin = await asyncpg.connect(fresh_database)
    await admin.execute("CREATE SCHEMA alt")
    await admin.close()

    async def init(connection: asyncpg.Connection) -> None:
        await connection.execute("SET search_path TO alt")

    pool = await asyncpg.create_pool(fresh_database, init=init, min_size=1, max_size=2)
    try:
        backend = AsyncpgPoolBackend(pool, Installation(), "embedded pool")
        extra = await backend.new_connection()
        try:
            assert await extra.fetchval("SELECT current_schema()") == "alt"
        finally:
            await extra.close()
        await backend.close()
    finally:
        await asyncio.wait_for(pool.close(), 10)
