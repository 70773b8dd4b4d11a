"""A read allowed a longer statement timeout than the console's (the exact depth count, 3-5 s
at 10M rows): set for its own transaction only, on every async driver, real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgq_console.core.target import DriverKind
from tests.helpers import backend_for

SETTING = "SELECT current_setting('statement_timeout') AS t"


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG])
async def test_a_long_read_has_its_own_timeout_and_leaves_the_session_as_it_was(
    fresh_database: str, kind: DriverKind
) -> None:
    backend = await backend_for(fresh_database, kind)
    try:
        assert (await backend.read(SETTING))[0]["t"] == "5s"
        long = await backend.read_long(SETTING, statement_timeout=timedelta(minutes=1))
        assert long[0]["t"] == "1min"
        assert (await backend.read(SETTING))[0]["t"] == "5s"  # transaction-local

        # A statement longer than the console's timeout: cancelled as a read, not as a long one.
        backend.statement_timeout = timedelta(milliseconds=200)
        with pytest.raises(Exception) as cancelled:
            await backend.read("SELECT pg_sleep(0.6)")
        assert backend.errors.statement_cancelled(cancelled.value)
        rows = await backend.read_long(
            "SELECT pg_sleep(0.6)::text AS slept", statement_timeout=timedelta(seconds=10)
        )
        assert rows == [{"slept": ""}]
    finally:
        await backend.close()


PARALLEL = "SELECT current_setting('max_parallel_workers_per_gather') AS w"


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG])
async def test_a_long_read_runs_without_parallel_workers_and_others_keep_the_setting(
    fresh_database: str, kind: DriverKind
) -> None:
    """The exact count runs aside: its parallel workers (two more processes, as fast on two
    cores) only took CPU from PgQueuer's workers and the console. Other reads and writes keep
    the server's setting, and the session is left as it was."""
    backend = await backend_for(fresh_database, kind)
    try:
        server_default = (await backend.read(PARALLEL))[0]["w"]
        if server_default == "0":  # a PGQ_CONSOLE_TEST_DSN server set so: nothing to tell apart
            pytest.skip("the server runs without parallel workers already")
        long = await backend.read_long(PARALLEL, statement_timeout=timedelta(minutes=1))
        assert long[0]["w"] == "0"
        assert (await backend.read(PARALLEL))[0]["w"] == server_default  # transaction-local
        async with backend.transaction() as tx:
            rows = await tx.fetch(PARALLEL)
        assert rows[0]["w"] == server_default
    finally:
        await backend.close()


async def test_the_exact_depth_count_is_not_cut_by_the_statement_timeout(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 10M rows on a busy server the exact count took longer than the 5 s statement timeout:
    it failed, was tried again a minute later, and the depths never became exact. Here the
    console's timeout is 0.2 s and the count takes at least 0.4 s."""
    from pgq_console.core import depth as depth_module
    from pgq_console.core.depth import DepthTracker
    from tests.helpers import enqueue

    exact_sql = depth_module.exact_sql

    def slow_exact_sql(installation: object) -> str:
        sql = exact_sql(installation)  # type: ignore[arg-type]
        return sql.replace("now(),", "now() + (pg_sleep(0.4)::text || '0 s')::interval,", 1)

    monkeypatch.setattr(depth_module, "exact_sql", slow_exact_sql)
    await enqueue(fresh_database, "a", 3)
    backend = await backend_for(fresh_database)
    try:
        backend.statement_timeout = timedelta(milliseconds=200)
        tracker = DepthTracker(backend.installation)
        await tracker.resync(backend)
        assert tracker.exact and tracker.reading(None).depth["a"].ready == 3
    finally:
        await backend.close()
