"""Real PgQueuer workers in their own processes, for the why and bundle tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tests.screens_support import run_sql

LIVENESS_S = 60.0

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main(dsn, entrypoint, seconds, limit, on_failure, batch, max_tasks, also=""):
        connection = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(connection)))

        if also:  # a second entrypoint this worker serves, its jobs done at once

            @qm.entrypoint(also)
            async def other(job):
                pass

        @qm.entrypoint(entrypoint, concurrency_limit=int(limit), on_failure=on_failure)
        async def work(job):
            if job.payload and job.payload.startswith(b"fail"):
                raise ValueError(
                    f"card declined for job {job.id} (postgresql://billing:TB-SECRET@pay.example/db)"
                )
            if job.payload == b"key":
                raise KeyError("sku")
            await asyncio.sleep(float(seconds))

        await qm.run(
            dequeue_timeout=timedelta(seconds=0.5),
            batch_size=int(batch),
            max_concurrent_tasks=int(max_tasks) or None,
            heartbeat_timeout=timedelta(seconds=1),
        )

    asyncio.run(main(*sys.argv[1:]))
    """
)


@asynccontextmanager
async def worker(
    dsn: str,
    entrypoint: str,
    seconds: float = 0.0,
    *,
    limit: int = 0,
    on_failure: str = "delete",
    batch: int = 1,
    max_tasks: int = 0,
    also: str = "",
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A real PgQueuer worker in its own process (killed with SIGKILL on exit)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        dsn,
        entrypoint,
        str(seconds),
        str(limit),
        on_failure,
        str(batch),
        str(max_tasks),
        also,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


async def eventually(check: Callable[[], Any], predicate: Callable[[Any], bool], what: str) -> Any:
    """Re-run the async `check` until its result satisfies `predicate` (liveness bound only)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVENESS_S
    while True:
        result = await check()
        if predicate(result):
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}: last {result!r}"
        await asyncio.sleep(0.1)


async def status_of(dsn: str, job_id: int) -> str | None:
    rows = await run_sql(dsn, "SELECT status::text AS s FROM pgqueuer WHERE id = $1", job_id)
    return str(rows[0]["s"]) if rows else None
