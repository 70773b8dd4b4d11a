"""A read that hangs on a connection the program handed in: the console gives up on the read,
never on the program's connection (its own queries and LISTENs go on)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import psycopg
import pytest

from pgq_console.core.backend import Backend
from pgq_console.core.backend.asyncpg_drivers import AsyncpgBackend
from pgq_console.core.backend.driver_errors import DatabaseTimeout
from pgq_console.core.backend.psycopg_drivers import PsycopgBackend
from pgq_console.core.target import Installation
from tests.lossy_proxy import LossyProxy


async def hang_one_read(backend: Backend, proxy: LossyProxy) -> None:
    backend.statement_timeout = timedelta(seconds=0.5)  # deadline: this + CLIENT_GRACE_S
    # The network hangs, and recovers just as the console gives up on the read (its cancel
    # request): the cancelled read ends cleanly, the connection is as the program left it.
    proxy.stall(until_cancel=True)
    try:
        with pytest.raises(DatabaseTimeout, match="the read was cancelled"):
            await backend.read("SELECT 1")
    finally:
        proxy.resume()  # asyncpg sends its cancel request in the background, later


async def test_asyncpg_connection_handed_in_outlives_a_hung_read(database_dsn: str) -> None:
    async with LossyProxy(database_dsn) as proxy:
        connection = await asyncpg.connect(proxy.dsn)
        heard: list[str] = []
        await connection.add_listener("ch_pgqueuer", lambda *args: heard.append(str(args[-1])))
        try:
            await hang_one_read(AsyncpgBackend(connection, Installation(), "program"), proxy)
            assert not connection.is_closed()
            assert await asyncio.wait_for(connection.fetchval("SELECT 2"), 20) == 2
            listening = await connection.fetch("SELECT pg_listening_channels() AS channel")
            assert [row["channel"] for row in listening] == ["ch_pgqueuer"]
        finally:
            await asyncio.wait_for(connection.close(), 10)


async def test_psycopg_connection_handed_in_outlives_a_hung_read(database_dsn: str) -> None:
    async with LossyProxy(database_dsn) as proxy:
        connection = await psycopg.AsyncConnection.connect(proxy.dsn, autocommit=True)
        try:
            await hang_one_read(PsycopgBackend(connection, Installation(), "program"), proxy)
            assert not connection.closed
            cursor = await asyncio.wait_for(connection.execute("SELECT 2"), 20)
            assert await cursor.fetchone() == (2,)
        finally:
            await asyncio.wait_for(connection.close(), 10)
