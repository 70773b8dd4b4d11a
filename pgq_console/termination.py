"""SIGHUP and SIGTERM while the console runs: finish or hand back consumer jobs, then exit.

A closed terminal (an SSH session dropping) or a `kill` must never lose a job an in-process
consumer is running. While the app runs, both signals go to `PgqConsole.stop_on_signal` on the
event loop: consumers stop picking, running jobs get the shutdown drain to finish and the rest
go back to `queued`; the console then exits with 128 + signum. A second signal cuts the drain
short; a third, or a watchdog once the drain and hand-back deadlines are long past (a handler
blocking the event loop, a dead terminal blocking output), ends the process at once: jobs not
handed back by then stay `picked`, and PgQueuer re-runs them once their heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgq_console.app import PgqConsole

TERMINATION_SIGNALS = (signal.SIGHUP, signal.SIGTERM)
# Past the drain and the hand-back: closing connections, the backend, the demo's server.
WATCHDOG_MARGIN_S = 15.0
# What Textual's driver switches on, switched off when the watchdog exits past it, in the
# order its `stop_application_mode` uses: left on, line wrap stays off, pastes arrive bracketed
# and a kitty-protocol terminal sends every key to the shell as an escape code.
_TERMINAL_RESET = (
    "\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?1016l"  # mouse
    "\x1b[?2004l\x1b[?7h\x1b[?2048l"  # bracketed paste, line wrap, in-band resize
    "\x1b[<u"  # kitty keyboard protocol, popped before leaving the alternate screen
    "\x1b[?1049l\x1b[?25h\x1b[?1004l"
)


def terminal_gone(fd: int) -> bool:
    """The terminal on `fd` hung up (its SSH session or window closed). Not `isatty`: that
    is False for a terminal that hung up."""
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(event & (select.POLLHUP | select.POLLERR) for _, event in poller.poll(0))
    except (OSError, ValueError):
        return True


def quiet_if_hung_up() -> None:
    """At exit: output to a terminal that hung up fails, and Python then exits with 120
    instead of the code it was given."""
    if terminal_gone(2) or terminal_gone(1):
        discard_terminal_output()


def discard_terminal_output() -> None:
    """Point stdout and stderr at /dev/null: writing to a hung-up terminal fails, and Textual's
    output thread dies on that error, after which the event loop blocks on its full queue."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                os.dup2(null, fd)
        os.close(null)


class HangupTolerantStream:
    """The terminal stream Textual writes the screen to, minus the failure when the terminal
    hangs up: Textual's output thread dies on that error and the event loop then blocks on
    its full queue, so no shutdown (no drain, no hand-back) could finish. Output to a terminal
    that is gone has nowhere to go anyway."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text) or 0)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def tolerate_hangup() -> Iterator[None]:
    """While the TUI runs, its output stream (`sys.__stderr__`) survives a hang-up."""
    original = sys.__stderr__
    if original is None:
        yield
        return
    sys.__stderr__ = HangupTolerantStream(original)  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        sys.__stderr__ = original  # type: ignore[misc]


class TerminationSignals:
    """Routes SIGHUP/SIGTERM to `app.stop_on_signal` while the app runs (a context manager)."""

    def __init__(self, app: PgqConsole) -> None:
        self.app = app
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, object] = {}
        self._watchdog: threading.Timer | None = None
        self._terminal_attributes: list[Any] | None = None

    def __enter__(self) -> TerminationSignals:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            import termios

            if os.isatty(0):
                self._terminal_attributes = termios.tcgetattr(0)
        for signum in TERMINATION_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        # The watchdog stays armed: it ends a cleanup that hangs after the app is gone.

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # A Python-level handler, not loop.add_signal_handler: it runs even while the loop is
        # blocked (a handler sleeping on it, a write to a dead terminal), so the watchdog is
        # always armed.
        self.received += 1
        if signum == signal.SIGHUP and terminal_gone(2):
            discard_terminal_output()
        if self.received >= 3:
            self._hard_exit(signum)
        from pgq_console.core.consumers import RELEASE_WITHIN_S

        drain = self.app.shutdown_drain_s if self.received == 1 else 0.0
        self._arm_watchdog(drain + RELEASE_WITHIN_S + WATCHDOG_MARGIN_S, signum)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._deliver, signum)

    def _deliver(self, signum: int) -> None:
        if signum == signal.SIGHUP:  # the hang-up may only show now
            quiet_if_hung_up()
        self.app.stop_on_signal(signum)

    def _arm_watchdog(self, within: float, signum: int) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = threading.Timer(within, self._hard_exit, (signum,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _hard_exit(self, signum: int) -> None:
        """End the process now, leaving the terminal usable if it is still there."""
        if not terminal_gone(2):
            with contextlib.suppress(Exception):
                os.write(2, _TERMINAL_RESET.encode())
                if self._terminal_attributes is not None:
                    import termios

                    termios.tcsetattr(0, termios.TCSANOW, self._terminal_attributes)
                os.write(
                    2,
                    f"pgq-console: {signal.Signals(signum).name}: exiting now; jobs not handed "
                    "back stay picked until PgQueuer re-runs them (stale heartbeat)\n".encode(),
                )
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(128 + signum)
