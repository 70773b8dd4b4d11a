"""Shared plumbing of the workers, schedules, health, charts and resilience tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import Clock, FixedClock
from pgq_console.core.target import DriverKind, Installation
from tests.helpers import console_of, wait_until

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "ops@db.example.com:5432/app"


def opener_for(dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL) -> Callable[[], Any]:
    async def open_() -> Backend:
        return await open_backend(kind, dsn, Installation(), LABEL, ())

    return open_


def console(dsn: str, clock: Clock | None = None, **options: Any) -> PgqConsole:
    app = PgqConsole(opener_for(dsn), clock=clock or FixedClock(FIXED_NOW), **options)
    app.animation_level = "none"
    return app


async def run_sql(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def seed(dsn: str, sql: str, *args: object) -> None:
    """Run `;`-separated statements (each may use $1 = args[0]) synchronously."""

    async def go() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            for statement in filter(str.strip, sql.split(";")):
                if "$1" in statement:
                    await connection.execute(statement, *args)
                else:
                    await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(go())


async def until(pilot: Pilot[Any], predicate: Callable[[], bool], within: float = 30.0) -> None:
    await wait_until(pilot, predicate, within=within)


async def open_screen(pilot: Pilot[Any], key: str, screen_type: type) -> Any:
    """Wait for the app to be up, press the number key, wait for the screen and its data."""
    app = console_of(pilot)
    await until(pilot, lambda: app.screen is not None and "overview" in app._modes)
    await until(pilot, lambda: app.settled)  # startup work (screens built ahead) is done
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, screen_type))
    screen: Any = app.screen  # a polled screen: `data` once it has read
    await until(pilot, lambda: screen.data is not None)
    return screen
