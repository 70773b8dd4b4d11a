"""Defects an on-call engineer hit on the signal, reconnect and enqueue paths (hostile QA)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgq_console.core.audit import read_records
from pgq_console.core.clock import SystemClock
from pgq_console.core.consumers import ConsumerState, ConsumerSupervisor, parse_consumer_form
from pgq_console.core.target import DriverKind
from tests.helpers import backend_for, enqueue, wait_for
from tests.pty_console import PtyConsole, login_environment
from tests.test_signal_drain import (
    ENTRYPOINT,
    JOBS,
    start_sleeping_consumer,
    status_counts,
    wait_all_picked,
)


@pytest.fixture
def console_factory(tmp_path: Path) -> Iterator[list[PtyConsole]]:
    started: list[PtyConsole] = []
    yield started
    for console in started:
        console.close()


def _switched_back(output: bytes, on: bytes, off: bytes) -> bool:
    """Whatever switched a terminal mode on was switched off again later in the stream."""
    last_on = output.rfind(on)
    return last_on == -1 or output.rfind(off) > last_on


def test_a_third_signal_leaves_the_terminal_as_it_was(
    fresh_database: str, tmp_path: Path, console_factory: list[PtyConsole]
) -> None:
    """The third signal ends the process at once, past Textual's own clean-up: every mode
    Textual switched on must be switched off, or the operator's shell is left without line
    wrap (the exit message itself was cut at the terminal's width), with bracketed paste and
    (on kitty-protocol terminals) keys arriving as escape codes."""
    dsn = fresh_database
    asyncio.run(enqueue(dsn, ENTRYPOINT, JOBS))
    environment = login_environment(tmp_path, PGQ_CONSOLE_SHUTDOWN_DRAIN="3000")
    console = PtyConsole(["--dsn", dsn], environment)
    console_factory.append(console)
    start_sleeping_consumer(console)
    asyncio.run(wait_all_picked(dsn))
    console.mark()
    os.kill(console.pid, signal.SIGTERM)
    console.wait_for("consumers stopped picking", within=60)
    os.kill(console.pid, signal.SIGHUP)
    os.kill(console.pid, signal.SIGTERM)
    assert console.wait_exit(within=90) in (128 + signal.SIGTERM, 128 + signal.SIGHUP)
    assert "exiting now" in console.text(), console.text()[-1500:]  # the hard exit ran
    output = console.output
    assert _switched_back(output, b"\x1b[?7l", b"\x1b[?7h"), output[-400:]  # line wrap
    assert _switched_back(output, b"\x1b[?2004h", b"\x1b[?2004l"), output[-400:]  # paste
    assert _switched_back(output, b"\x1b[>25u", b"\x1b[<u"), output[-400:]  # kitty keys
    assert _switched_back(output, b"\x1b[?1049h", b"\x1b[?1049l"), output[-400:]  # alt screen
    queue, log = asyncio.run(status_counts(dsn))
    assert log.get("canceled", 0) == 0, log
    assert sum(queue.values()) == JOBS, queue


async def _terminate_console_sessions(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'pgq-console%' AND datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await connection.close()


async def test_a_reconnect_is_audited_as_one_not_as_another_start(fresh_database: str) -> None:
    """Killing a draining consumer's session: the jobs it had in flight are put back in the
    queue (a write) on reconnect. The audit file said "consumer start" once per reconnect (an
    operator reading it sees starts nobody made) and had no record of the jobs put back."""
    dsn = fresh_database
    ids = set(await enqueue(dsn, "audited_reconnect", 1500))
    backend = await backend_for(dsn, DriverKind.ASYNCPG_POOL)
    supervisor = ConsumerSupervisor({}, SystemClock())
    try:
        consumer = await supervisor.start(
            backend,
            parse_consumer_form(
                {
                    "handler": "sleep",
                    "argument": "20",
                    "entrypoints": "audited_reconnect",
                    "batch_size": "10",
                }
            ),
        )
        await wait_for(lambda: consumer.done >= 100, within=120, what="jobs done")
        assert await _terminate_console_sessions(dsn) >= 1
        await wait_for(lambda: consumer.reconnects == 1, within=120, what="reconnected")
        await wait_for(
            lambda: consumer.state is ConsumerState.RUNNING, within=120, what="running again"
        )
        connection = await asyncpg.connect(dsn)
        try:
            for _ in range(3000):  # a liveness limit of about 300 s
                if not await connection.fetchval("SELECT count(*) FROM pgqueuer"):
                    break
                await asyncio.sleep(0.1)
            assert not await connection.fetchval("SELECT count(*) FROM pgqueuer")
            put_back = {
                int(row["job_id"])
                for row in await connection.fetch(
                    "SELECT job_id FROM pgqueuer_log WHERE status = 'queued' "
                    "GROUP BY job_id HAVING count(*) > 1"
                )
            }
        finally:
            await connection.close()
        assert await supervisor.drain_all(within=30)
    finally:
        supervisor.close()
        await backend.close()
    assert put_back <= ids
    records = [r for r in read_records() if r["predicate"].startswith(f"{consumer.name}:")]
    actions = [str(r["action"]) for r in records]
    assert actions.count("consumer start") == 1, actions
    reconnects = [r for r in records if str(r["action"]).startswith("consumer reconnected")]
    assert len(reconnects) == 1, actions
    assert set(reconnects[0]["job_ids"]) == put_back, (reconnects[0], sorted(put_back))
    assert reconnects[0]["count"] == len(put_back)


def test_quitting_during_an_enqueue_says_on_the_terminal_what_was_written(
    fresh_database: str, tmp_path: Path, console_factory: list[PtyConsole]
) -> None:
    """`ctrl+q`, "Quit (y)" during a form enqueue: the report of what was written went to the
    console's log file (Textual prints an exit message to the error console, which the CLI
    captures), so the terminal said nothing and the operator never learnt the count."""
    dsn = fresh_database
    entrypoint = "quit_mid_enqueue"
    asyncio.run(enqueue(dsn, entrypoint, 1))  # a known name: no new-name confirmation
    console = PtyConsole(["--dsn", dsn], login_environment(tmp_path))
    console_factory.append(console)
    console.wait_for(entrypoint, within=90)
    console.mark()
    console.send("e")
    console.wait_for("Enqueue test jobs", within=60)
    console.send(entrypoint)
    console.read(0.5)
    console.send("\t" * 7)  # to Copies
    console.read(0.5)
    console.send("\x1b[F")  # End
    console.read(0.3)
    console.send("\x7f")  # Backspace: the default 1 goes
    console.read(0.3)
    for digit in "1000000":
        console.send(digit)
        console.read(0.1)
    console.wait_for("1000000", within=30)
    console.mark()
    console.send("\x13")  # ctrl+s
    console.wait_for("Enqueued ", within=60)
    console.mark()
    console.send("\x11")  # ctrl+q
    console.wait_for("Quit pgq-console?", within=60)
    console.send("y")
    assert console.wait_exit(within=120) == 0, console.text()[-1500:]
    written = asyncio.run(_count(dsn, entrypoint)) - 1
    assert 0 < written < 1_000_000
    tail = console.output[console.output.rfind(b"\x1b[?1049l") :].decode(errors="replace")
    assert f"Enqueue stopped: {written:,} of 1,000,000" in tail, tail[-600:]


async def _count(dsn: str, entrypoint: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint
            )
        )
    finally:
        await connection.close()


async def test_a_refused_reconnect_is_waited_out_not_the_end(fresh_database: str) -> None:
    """The database refuses new connections for a while when a consumer's session dies (a
    database closed for maintenance, a full server after a restart): asyncpg's refusal is a
    server error, so the consumer ended `failed` at its first reconnect attempt, while the same
    consumer on psycopg (OperationalError) and the overview went on trying."""
    dsn = fresh_database
    await enqueue(dsn, "refused_reconnect", 50)
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    backend = await backend_for(dsn, DriverKind.ASYNCPG_POOL)
    supervisor = ConsumerSupervisor({}, SystemClock())
    try:
        consumer = await supervisor.start(
            backend,
            parse_consumer_form(
                {"handler": "sleep", "argument": "10", "entrypoints": "refused_reconnect"}
            ),
        )
        await wait_for(lambda: consumer.done >= 50, within=120, what="jobs done")
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
        await wait_for(
            lambda: consumer.state is ConsumerState.FAILED or consumer.reconnect_attempt >= 2,
            within=120,
            what="a second reconnect attempt",
        )
        assert consumer.state is ConsumerState.RECONNECTING, list(consumer.lines)[-4:]
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await wait_for(lambda: consumer.reconnects == 1, within=120, what="reconnected")
        await enqueue(dsn, "refused_reconnect", 10)
        await wait_for(lambda: consumer.done >= 60, within=120, what="jobs done after it")
        assert await supervisor.drain_all(within=30)
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
        supervisor.close()
        await backend.close()
