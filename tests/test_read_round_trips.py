"""A read is one round trip on connections the console opened itself (a key press over
50 ms must not cost four: BEGIN, the preamble, the query, COMMIT), with the console's
statement timeout, name and read-only mode still in force; behind transaction pooling the
per-transaction form stays."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.jobs import fetch_detail, fetch_page, parse_filter
from pgq_console.core.target import DriverKind, Installation, Pooler
from tests.helpers import enqueue
from tests.lossy_proxy import LossyProxy

KINDS = (DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG)


def _waits(proxy: LossyProxy) -> int:
    """Round trips a reader waited for: the pool's reset on release runs aside, not counted."""
    resets = sum("RESET ALL" in text for text in proxy.request_texts)
    return proxy.requests - resets


@pytest.mark.parametrize("kind", KINDS)
async def test_a_read_is_one_round_trip(database_dsn: str, kind: DriverKind) -> None:
    [job_id] = await enqueue(database_dsn, "round_trips", 1)
    async with LossyProxy(database_dsn) as proxy:
        backend = await open_backend(
            kind, proxy.dsn, Installation(), "test-db", (), pooler=Pooler.NONE
        )
        assert isinstance(backend, Backend)
        try:
            assert backend.one_statement_reads
            reads: dict[str, Callable[[], Awaitable[object]]] = {
                "jobs page": lambda: fetch_page(backend, parse_filter("ep:round_trips")),
                "job detail": lambda: fetch_detail(backend, job_id),
            }
            for name, read in reads.items():
                await read()  # statements prepared on first use
                await read()  # (psycopg prepares on the second)
                before = _waits(proxy)
                result = await read()
                assert _waits(proxy) - before == 1, name
                assert result  # the rows came back
            detail = await fetch_detail(backend, job_id)
            assert detail.job is not None and detail.job.id == job_id
            assert [entry.status for entry in detail.history] == ["queued"]
            [settings] = await backend.read(
                "SELECT current_setting('statement_timeout') AS timeout, "
                "current_setting('application_name') AS name, "
                "current_setting('transaction_read_only') AS read_only"
            )
            assert settings == {"timeout": "5s", "name": "pgq-console", "read_only": "off"}
        finally:
            await backend.close()


async def test_read_only_sessions_stay_read_only(database_dsn: str) -> None:
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, database_dsn, Installation(), "test-db", (), read_only=True
    )
    try:
        assert backend.one_statement_reads
        [row] = await backend.read("SELECT current_setting('transaction_read_only') AS ro")
        assert row["ro"] == "on"
    finally:
        await backend.close()


async def test_the_per_transaction_form_stays_where_the_session_is_not_ours(
    database_dsn: str,
) -> None:
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, database_dsn, Installation(), "test-db", ()
    )
    assert isinstance(backend, Backend)
    try:
        backend.pooler = Pooler.TRANSACTION  # as a probe behind PgBouncer would find
        assert not backend.one_statement_reads
        [row] = await backend.read(
            "SELECT current_setting('transaction_read_only') AS ro, "
            "current_setting('statement_timeout') AS timeout"
        )
        assert row == {"ro": "on", "timeout": "5s"}  # set by this transaction itself
    finally:
        await backend.close()


async def test_a_new_connections_first_job_detail_is_two_round_trips(database_dsn: str) -> None:
    """Its history came as arrays, whose types asyncpg looks up on each new connection before
    decoding them: 3 round trips here; a new connection's first detail through a 50 ms delay
    proxy took 0.43 s (0.12 s now), the detail's p95 at 10M rows over a thin link. Now 2:
    prepare and execute, as any statement's first use."""
    [job_id] = await enqueue(database_dsn, "round_trips_first", 1)
    async with LossyProxy(database_dsn) as proxy:
        backend = await open_backend(
            DriverKind.ASYNCPG, proxy.dsn, Installation(), "test-db", (), pooler=Pooler.NONE
        )
        assert isinstance(backend, Backend)
        try:
            before = _waits(proxy)
            detail = await fetch_detail(backend, job_id)
            assert _waits(proxy) - before <= 2
            assert detail.job is not None and detail.job.id == job_id
            [entry] = detail.history
            assert entry.status == "queued" and entry.created.tzinfo is not None
        finally:
            await backend.close()
