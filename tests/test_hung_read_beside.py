"""Reads in flight beside one that hung: when the console resets the connection that gave no
answer, they fail on the reset, and say what happened (the server did not answer), not a
closed connection of unknown cause. The overview's depth read queued behind a windows read
on one connection said "lost the connection (connection is closed)" when the backend hung."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from pgq_console.core.backend import open_backend
from pgq_console.core.backend.driver_errors import DatabaseTimeout
from pgq_console.core.target import DriverKind, Installation
from tests.lossy_proxy import LossyProxy


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL])
async def test_a_read_beside_a_hung_one_says_the_server_did_not_answer(
    database_dsn: str, kind: DriverKind
) -> None:
    async with LossyProxy(database_dsn) as proxy:
        backend = await open_backend(kind, proxy.dsn, Installation(), "hung-db", ())
        try:
            backend.statement_timeout = timedelta(seconds=30)
            proxy.stall()  # no reply from here on: a network cut, a stopped backend
            # The first read's deadline comes long before the second's: the connections are
            # reset under the second (on one connection it waits its turn behind the first).
            first = asyncio.ensure_future(
                backend.read_long("SELECT 1", statement_timeout=timedelta(seconds=0.1))
            )
            second = asyncio.ensure_future(backend.read("SELECT 2"))
            with pytest.raises(DatabaseTimeout, match="did not answer"):
                await first
            with pytest.raises(DatabaseTimeout, match="hung-db did not answer"):
                await asyncio.wait_for(second, 20)
        finally:
            proxy.resume()
            await asyncio.wait_for(backend.close(), 10)
