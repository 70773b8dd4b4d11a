"""A closed terminal or a `kill` never loses the jobs in-process consumers are running.

The console runs on a real pseudo-terminal, an operator starts a consumer from the form (`7`,
`n`, "sleep N ms" 30000 on an entrypoint with 20 queued jobs), then the terminal goes away
(SIGHUP, or the terminal really closing) or the process is killed (SIGTERM). The jobs never
finished: none may be logged `canceled`, all must still be in the queue, and a new consumer must
run each of them exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

from tests.helpers import enqueue
from tests.pty_console import PtyConsole, login_environment

ENTRYPOINT = "slow_signal"
JOBS = 20
DOWN = "\x1b[B"
BACK_TAB = "\x1b[Z"


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[list[PtyConsole]]:
    started: list[PtyConsole] = []
    yield started
    for console in started:
        console.close()


def start_sleeping_consumer(console: PtyConsole) -> None:
    """What an operator types: the consumers screen, a new consumer, sleep 30 s per job."""
    console.wait_for(ENTRYPOINT, within=90)  # the overview shows the queued jobs
    console.send("7")
    console.wait_for("In-process consumers", within=60)
    console.mark()
    console.send("n")
    console.wait_for("Start an in-process consumer", within=60)
    console.mark()
    console.send(ENTRYPOINT)  # the form opens on its first text field, Entrypoints
    console.read(0.5)
    console.send(BACK_TAB + "\r")  # the handler list opens
    console.wait_for("user factory module:create", within=30)
    console.mark()
    console.send(DOWN)
    console.send("\r")  # "sleep N ms"
    console.wait_for("milliseconds per job", within=30)
    console.mark()
    console.send("\t")  # the argument
    console.read(0.5)
    console.send("30000")
    console.wait_for("30000", within=30)
    console.mark()
    console.send("\r")
    console.wait_for("started: sleep 30000ms", within=60)


async def status_counts(dsn: str) -> tuple[dict[str, int], dict[str, int]]:
    """(queue status -> rows, log status -> rows) for the entrypoint."""
    connection = await asyncpg.connect(dsn)
    try:
        queue = await connection.fetch(
            "SELECT status::text, count(*) AS n FROM pgqueuer WHERE entrypoint = $1 GROUP BY 1",
            ENTRYPOINT,
        )
        log = await connection.fetch(
            "SELECT status::text, count(*) AS n FROM pgqueuer_log WHERE entrypoint = $1 GROUP BY 1",
            ENTRYPOINT,
        )
    finally:
        await connection.close()
    return {r["status"]: r["n"] for r in queue}, {r["status"]: r["n"] for r in log}


async def wait_all_picked(dsn: str, within: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (await status_counts(dsn))[0].get("picked", 0) < JOBS:
        assert loop.time() < deadline, await status_counts(dsn)
        await asyncio.sleep(0.2)


async def run_the_rest(dsn: str) -> list[int]:
    """A fresh PgQueuer worker (a short handler) drains the queue; the job ids it ran."""
    ran: list[int] = []
    connection = await asyncpg.connect(dsn)
    try:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))

        @manager.entrypoint(ENTRYPOINT)
        async def handle(job: Job) -> None:
            ran.append(int(job.id))

        # A short heartbeat timeout: jobs left `picked` are reclaimed too (the documented
        # fallback when the hand-back could not be recorded).
        await asyncio.wait_for(
            manager.run(
                mode=QueueExecutionMode.drain,
                dequeue_timeout=timedelta(seconds=1),
                heartbeat_timeout=timedelta(seconds=2),
            ),
            timeout=120,
        )
    finally:
        await connection.close()
    return ran


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "terminal closed"])
def test_signals_never_lose_running_consumer_jobs(
    how: str, fresh_database: str, tmp_path: Path, console_factory: list[PtyConsole]
) -> None:
    dsn = fresh_database
    ids = asyncio.run(enqueue(dsn, ENTRYPOINT, JOBS))
    # A short drain: the 30 s handlers cannot finish, so every job is handed back.
    environment = login_environment(tmp_path, PGQ_CONSOLE_SHUTDOWN_DRAIN="1")
    console = PtyConsole(["--dsn", dsn], environment)
    console_factory.append(console)
    start_sleeping_consumer(console)
    asyncio.run(wait_all_picked(dsn))

    if how == "terminal closed":
        os.close(console.fd)  # the kernel hangs the terminal up: SIGHUP, then EIO on every write
        console.fd = os.open(os.devnull, os.O_RDONLY)
        expected = 128 + signal.SIGHUP
    else:
        signum = getattr(signal, how)
        os.kill(console.pid, signum)
        expected = 128 + signum
    assert console.wait_exit(within=90) == expected, console.text()[-1500:]

    queue, log = asyncio.run(status_counts(dsn))
    assert log.get("canceled", 0) == 0, log  # work the user did not cancel is never `canceled`
    # Every job is still in the queue, handed back: `queued`, so any worker runs it again.
    assert queue == {"queued": JOBS}, queue
    if how != "terminal closed":
        assert "put back in the queue" in console.text()

    ran = asyncio.run(run_the_rest(dsn))
    assert sorted(ran) == sorted(ids)  # each job exactly once
    queue, log = asyncio.run(status_counts(dsn))
    assert queue == {} and log.get("successful") == JOBS and log.get("canceled", 0) == 0


def test_a_second_signal_cuts_the_drain_short(
    fresh_database: str, tmp_path: Path, console_factory: list[PtyConsole]
) -> None:
    dsn = fresh_database
    ids = asyncio.run(enqueue(dsn, ENTRYPOINT, JOBS))
    # A drain far longer than the test waits: only the second signal can end it in time.
    environment = login_environment(tmp_path, PGQ_CONSOLE_SHUTDOWN_DRAIN="3000")
    console = PtyConsole(["--dsn", dsn], environment)
    console_factory.append(console)
    start_sleeping_consumer(console)
    asyncio.run(wait_all_picked(dsn))
    console.mark()
    os.kill(console.pid, signal.SIGTERM)
    console.wait_for("consumers stopped picking", within=60)
    os.kill(console.pid, signal.SIGTERM)
    assert console.wait_exit(within=90) == 128 + signal.SIGTERM
    queue, log = asyncio.run(status_counts(dsn))
    assert log.get("canceled", 0) == 0 and queue == {"queued": JOBS}, (queue, log)
    assert sorted(asyncio.run(run_the_rest(dsn))) == sorted(ids)


def test_shutdown_drain_setting_is_checked() -> None:
    from pgq_console.config import CliOptions, ConfigError, load_settings

    assert load_settings(CliOptions(dsn="postgresql:///x"), environ={}).shutdown_drain == 5.0
    assert (
        load_settings(
            CliOptions(dsn="postgresql:///x"), environ={"PGQ_CONSOLE_SHUTDOWN_DRAIN": "0"}
        ).shutdown_drain
        == 0
    )
    with pytest.raises(ConfigError, match="shutdown-drain"):
        load_settings(CliOptions(dsn="postgresql:///x", shutdown_drain=-1), environ={})
