"""The terminal the TUI needs: refusing to start without one, a clean exit on hangup."""

from __future__ import annotations

import os
import signal
import sys

from pgq_console.core.errors import ConsoleError


def require_terminal() -> None:
    if not _has_terminal():
        raise ConsoleError(
            "the console needs a terminal (stdin is closed or not a terminal); "
            "for scripts use `pgq-console snapshot` or `check`"
        )


def _has_terminal() -> bool:
    """Textual reads keys from stdin; a served session's console reads them from its pipe."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return True
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # closed
        return False


def _exit_cleanly_on_hangup() -> None:
    """A closed terminal (an SSH session that drops) or a `kill` ends the console cleanly:
    demo traffic and the embedded server are stopped, nothing is left behind. By default both
    signals end Python at once, skipping every cleanup. While the app runs,
    `termination.TerminationSignals` takes over: consumers' running jobs finish or go back to
    the queue first."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for hangup in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(hangup, leave)
