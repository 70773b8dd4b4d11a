"""User code the consumer tests load by path, as an operator would type it in the form.

`tests.consumer_fixtures:async_handler`, `...:sync_handler`, `...:create_pgqueuer` and
`...:create_queue_manager`. The factories connect to `PGQC_TEST_FACTORY_DSN`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer, QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Context, Job
from pgqueuer.queries import Queries

PROCESSED: dict[str, list[int]] = {"async": [], "sync": [], "factory": [], "qm": []}
SYNC_THREADS: set[str] = set()
log = logging.getLogger("consumer_fixtures")
log.setLevel(logging.INFO)  # as user code that logs at INFO sets it


async def async_handler(job: Job, context: Context) -> None:
    assert "console" in context.resources  # the console's `resources` reach user handlers
    PROCESSED["async"].append(job.id)
    log.info("async handler saw job %s payload %r", job.id, job.payload)


def sync_handler(job: Job) -> None:
    SYNC_THREADS.add(threading.current_thread().name)
    PROCESSED["sync"].append(job.id)
    if job.payload == b"boom":
        raise ValueError(f"job {job.id} asked to fail [red]not markup[/red]")


NOT_CALLABLE = 42


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGQC_TEST_FACTORY_DSN"])
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint("factory_job")
    async def handle(job: Job) -> None:
        PROCESSED["factory"].append(job.id)

    try:
        yield pgq
    finally:
        await connection.close()


@asynccontextmanager
async def create_queue_manager() -> AsyncIterator[QueueManager]:
    connection = await asyncpg.connect(os.environ["PGQC_TEST_FACTORY_DSN"])
    manager = QueueManager(Queries(AsyncpgDriver(connection)))

    @manager.entrypoint("factory_qm_job")
    async def handle(job: Job) -> None:
        PROCESSED["qm"].append(job.id)

    try:
        yield manager
    finally:
        await connection.close()


async def not_a_context_manager() -> PgQueuer:  # the README's old, rejected factory shape
    raise AssertionError("never awaited")


async def exiting_handler(job: Job) -> None:
    """A handler that calls sys.exit (SystemExit(3)) or is interrupted (KeyboardInterrupt)."""
    if job.payload == b"keyboard":
        raise KeyboardInterrupt
    raise SystemExit(3)


def exiting_sync_handler(job: Job) -> None:
    raise SystemExit(4)


# A sync handler that holds its thread until the test lets it go.
RELEASE_THREADS = threading.Event()
HOLDING: set[int] = set()
_holding_lock = threading.Lock()


def holding_sync_handler(job: Job) -> None:
    with _holding_lock:
        HOLDING.add(job.id)
    try:
        RELEASE_THREADS.wait(timeout=120)
    finally:
        with _holding_lock:
            HOLDING.discard(job.id)


# An async handler that catches the CancelledError interrupting it, cleans up and returns.
CLEANED_UP: list[int] = []


async def cleaning_up_handler(job: Job) -> None:
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        await asyncio.sleep(0.05)  # the clean-up awaits too
        CLEANED_UP.append(job.id)


async def printing_handler(job: Job) -> None:
    print(f"async print of job {job.id}", "in two", sep=" ")
    print("partial ", end="")
    print("line done")


def printing_sync_handler(job: Job) -> None:
    import sys

    print(f"sync print of job {job.id}")
    print(f"sync warning of job {job.id}", file=sys.stderr)


async def send_email(job: Job) -> None:
    """An async handler that blocks the event loop (a sync call inside async code)."""
    import time

    time.sleep(3)  # noqa: ASYNC251 - the very mistake under test


# An async handler that runs until the test opens its entrypoint's gate (set by the test, on
# its own event loop).
GATES: dict[str, asyncio.Event] = {}


async def gated_handler(job: Job) -> None:
    await GATES[job.entrypoint].wait()
