"""Defects an on-call engineer hit on the signal, reconnect and enqueue paths (hostile QA)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import enqueue
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
