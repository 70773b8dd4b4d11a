"""An embedded console leaves what it was handed as it found it: no LISTEN,
no listener callback, no checked-out pool connection, no extra connection, loggers restored.
Embedded five times in a row on the same pool of 4 and on the same connections."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.core.consumers import parse_consumer_form
from tests.helpers import LIVENESS_STRETCH, enqueue, has_row, overview_of, wait_until

RUNS = 5


@pytest.fixture
def bare_logging() -> Iterator[Callable[[], None]]:
    """Makes logging look like a program's that never set it up (no root handler, WARNING);
    called in the test body, since pytest adds its capture handlers for the call phase.
    Everything is put back afterwards."""
    root = logging.getLogger()
    saved_level = root.level
    saved_handlers: list[logging.Handler] = []
    named = {name: logging.getLogger(name).level for name in ("pgqueuer", "asyncio")}

    def strip() -> None:
        for handler in list(root.handlers):
            saved_handlers.append(handler)
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        for name in named:
            logging.getLogger(name).setLevel(logging.NOTSET)

    try:
        yield strip
    finally:
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        for name, level in named.items():
            logging.getLogger(name).setLevel(level)


def logging_state() -> tuple[Any, ...]:
    root = logging.getLogger()
    return (
        root.level,
        tuple(root.handlers),
        *(
            (logging.getLogger(name).level, tuple(logging.getLogger(name).handlers))
            for name in ("pgqueuer", "asyncio")
        ),
    )


async def other_sessions(dsn: str) -> int:
    """Sessions on the test database other than the one asking."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await connection.close()


async def eventually(
    predicate: Callable[[], Awaitable[bool]],
    within: float = 15.0,
    what: Callable[[], str] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within * LIVENESS_STRETCH
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what() if what else predicate}")
        await asyncio.sleep(0.05)


async def embed_once(app: PgqConsole, entrypoint: str) -> None:
    """Open the console, let it listen (overview and audit toasts) and run a consumer, quit."""
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_until(pilot, lambda: has_row(app, entrypoint), within=20)
        screen = overview_of(app)
        await wait_until(pilot, lambda: bool(screen.status and screen.status.listening), within=20)
        assert app.backend is not None
        consumer = await app.consumers.start(
            app.backend, parse_consumer_form({"handler": "noop", "entrypoints": "nothing_here"})
        )
        app.consumers.stop(consumer.id)
        assert await app.consumers.wait(consumer.id, within=20)
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, within=20)


async def test_five_embeddings_on_one_pool_of_four(
    fresh_database: str, bare_logging: Callable[[], None]
) -> None:
    bare_logging()
    entrypoint = "embedded_pool"
    await enqueue(fresh_database, entrypoint, 2)
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    try:
        before_logging = logging_state()
        for _ in range(RUNS):
            await embed_once(PgqConsole.from_asyncpg_pool(pool), entrypoint)
            # All four connections are the program's again, promptly.
            held = [await asyncio.wait_for(pool.acquire(), 5) for _ in range(4)]
            for connection in held:
                assert await connection.fetch("SELECT pg_listening_channels()") == []
                await pool.release(connection)
            assert await asyncio.wait_for(pool.fetchval("SELECT 1"), 5) == 1
            assert logging_state() == before_logging
        await asyncio.wait_for(pool.close(), 10)
        # Nothing the console opened outlives it (consumers, audit listener).
        await eventually(lambda: _equals(other_sessions(fresh_database), 0))
    finally:
        pool.terminate()


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_five_embeddings_on_one_asyncpg_connection(
    fresh_database: str, bare_logging: Callable[[], None]
) -> None:
    bare_logging()
    entrypoint = "embedded_connection"
    await enqueue(fresh_database, entrypoint, 2)
    connection = await asyncpg.connect(fresh_database)
    heard: list[str] = []

    def programs_own(*args: Any) -> None:  # the program listens on the same channel
        heard.append(str(args[-1]))

    await connection.add_listener("ch_pgqueuer", programs_own)
    try:
        before_logging = logging_state()
        for _ in range(RUNS):
            await embed_once(PgqConsole.from_asyncpg_connection(connection), entrypoint)
            # The console's callbacks are gone; the program's own listener stays, and LISTENs.
            assert {channel: len(cbs) for channel, cbs in connection._listeners.items()} == {
                "ch_pgqueuer": 1
            }
            assert await asyncio.wait_for(connection.fetchval("SELECT 1"), 5) == 1
            listening = await connection.fetch("SELECT pg_listening_channels() AS channel")
            assert [row["channel"] for row in listening] == ["ch_pgqueuer"]
            assert logging_state() == before_logging
            await eventually(lambda: _equals(other_sessions(fresh_database), 1))
        heard.clear()
        await connection.execute("SELECT pg_notify('ch_pgqueuer', 'still mine')")
        # Heard among whatever else reached the channel (a CI run timed out on `== [...]`;
        # the failure now says what was heard).
        await eventually(
            lambda: _true("still mine" in heard),
            what=lambda: (
                f"the program's own NOTIFY; heard {heard!r}, listeners "
                f"{ {channel: len(cbs) for channel, cbs in connection._listeners.items()} }"
            ),
        )
    finally:
        await asyncio.wait_for(connection.close(), 10)


async def _true(value: bool) -> bool:
    return value


async def test_five_embeddings_on_one_psycopg_connection(
    fresh_database: str, bare_logging: Callable[[], None]
) -> None:
    bare_logging()
    entrypoint = "embedded_psycopg"
    await enqueue(fresh_database, entrypoint, 2)
    aconn = await psycopg.AsyncConnection.connect(fresh_database, autocommit=True)
    try:
        before_logging = logging_state()
        for _ in range(RUNS):
            await embed_once(PgqConsole.from_psycopg_connection(aconn), entrypoint)
            cursor = await aconn.execute("SELECT pg_listening_channels()")
            assert await cursor.fetchall() == []
            assert logging_state() == before_logging
            # No `pgq-console-listen` (or any other) connection is left behind.
            await eventually(lambda: _equals(other_sessions(fresh_database), 1))
    finally:
        await aconn.close()
