"""End-to-end: embedded PostgreSQL + real PgQueuer demo traffic (self-contained, ~10 s)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

pytest.importorskip("pgserver")

from pgq_console.core.demo import (  # noqa: E402
    APPLICATION_NAME,
    DEMO_ENTRYPOINTS,
    DemoStats,
    DemoTraffic,
    install_schema,
)
from pgq_console.core.embedded import EmbeddedPostgres  # noqa: E402


@pytest.fixture(scope="module")
def pg_uri() -> Iterator[str]:
    pg = EmbeddedPostgres()
    try:
        yield pg.start()
    finally:
        pg.stop()


async def _eventually(check: Callable[[], Awaitable[bool]], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.25)
    return await check()


def _postgres_processes(marker: str, pids: set[int]) -> list[str]:
    """`ps` lines of live processes mentioning ``marker`` or having one of ``pids``."""
    out = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,stat=,args="], capture_output=True, text=True, check=True
    ).stdout
    hits = []
    for line in out.splitlines():
        pid, ppid, stat, *_ = line.split(maxsplit=3)
        related = marker in line or int(pid) in pids or int(ppid) in pids
        # A zombie has exited; it lingers until PID 1 reaps it (up to ~2 s here).
        if related and not stat.startswith("Z"):
            hits.append(line)
    return hits


async def test_demo_traffic_produces_processes_and_fails(pg_uri: str) -> None:
    await install_schema(pg_uri)
    await install_schema(pg_uri)  # second call is a no-op
    conn = await asyncpg.connect(pg_uri)
    demo = DemoTraffic(pg_uri, jobs_per_second=400.0)
    try:
        await demo.start()

        async def both_failure_kinds_seen() -> bool:
            held = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'failed'")
            exc = await conn.fetchval(
                "SELECT count(*) FROM pgqueuer_log WHERE status = 'exception'"
            )
            return bool(held and exc and demo.stats.processed > 1000)

        assert await _eventually(both_failure_kinds_seen, within=30.0), demo.stats
        live = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION_NAME
        )
        assert live == 3  # one producer + two consumers
    finally:
        await demo.stop()
    await demo.stop()  # idempotent

    stats = demo.stats
    assert isinstance(stats, DemoStats)
    assert stats.enqueued > stats.processed > 0
    assert stats.failed > 0

    held = await conn.fetch("SELECT DISTINCT entrypoint FROM pgqueuer WHERE status = 'failed'")
    assert {r["entrypoint"] for r in held} == {"charge_card"}
    exc = await conn.fetch(
        "SELECT DISTINCT entrypoint FROM pgqueuer_log WHERE status = 'exception'"
    )
    assert {r["entrypoint"] for r in exc} == {"sync_crm"}

    log = {
        (r["entrypoint"], r["status"]): r["n"]
        for r in await conn.fetch(
            "SELECT entrypoint, status::text AS status, count(*) AS n "
            "FROM pgqueuer_log GROUP BY 1, 2"
        )
    }
    assert {ep for ep, st in log if st == "successful"} == set(DEMO_ENTRYPOINTS)
    # Consumers flush their status buffers on graceful stop, so the log matches the counters.
    assert sum(n for (_, st), n in log.items() if st == "successful") == stats.processed
    assert sum(n for (_, st), n in log.items() if st in ("failed", "exception")) == stats.failed
    assert sum(n for (_, st), n in log.items() if st == "queued") == stats.enqueued

    shape = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE priority > 0) AS prio, "
        "count(*) FILTER (WHERE execute_after > now() + interval '2 seconds') AS deferred, "
        "count(*) FILTER (WHERE entrypoint = 'build_report' AND status = 'queued') AS reports "
        "FROM pgqueuer"
    )
    assert shape["deferred"] > 0
    assert shape["reports"] > 20  # build_report is throttled, so its backlog grows
    assert await conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE priority > 0") > 0

    left = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION_NAME
    )
    assert left == 0
    await conn.close()


async def test_demo_survives_db_loss_and_stop_leaves_no_postgres() -> None:
    pg = EmbeddedPostgres()
    uri = await asyncio.to_thread(pg.start)
    data_dir = pg.data_dir
    assert data_dir is not None and data_dir.exists()
    other = pg.create_database("other db")
    assert other.startswith("postgresql://") and "/other%20db?" in other
    conn = await asyncpg.connect(other)
    assert await conn.fetchval("SELECT current_database()") == "other db"
    await conn.close()

    server: Any = pg._server  # white-box: remember the postmaster and its children
    postmaster = server.get_postmaster_info().process
    pids = {postmaster.pid, *(c.pid for c in postmaster.children(recursive=True))}
    assert _postgres_processes(str(data_dir), pids)

    await install_schema(uri)
    demo = DemoTraffic(uri)
    await demo.start()
    try:

        async def some_processed() -> bool:
            return demo.stats.processed > 50

        await _eventually(some_processed, within=30.0)
        assert demo.stats.processed > 50
        # Pull the database out from under the running demo: it must keep going quietly.
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(1.0)
        assert all(not t.done() for t in demo._consumers)
        assert demo._producer is not None and not demo._producer.done()
    finally:
        started = time.monotonic()
        await demo.stop()
        assert time.monotonic() - started < 30.0  # liveness: stop never hangs
    pg.stop()  # idempotent

    assert not data_dir.exists()
    assert not data_dir.parent.exists()  # the temp root we created is gone too
    assert _postgres_processes(str(data_dir), pids) == []
