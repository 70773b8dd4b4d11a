"""The console as a user runs it: `python -m pgq_console` on a real pseudo-terminal.

Keys go in as bytes; the screen comes back as the raw output stream, searched with the escape
sequences stripped (Textual paints text in runs, cut by colour and cursor moves).
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import sys
import time
from pathlib import Path

_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]")


def login_environment(home: Path, **extra: str) -> dict[str, str]:
    """Only what a login shell would have: nothing other tests left in this process."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "COLUMNS": "120",
        "LINES": "36",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "PGPASSFILE": str(home / "no-pgpass"),
    }
    if "PYTHONPATH" in os.environ:
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    environment.update(extra)
    return environment


class PtyConsole:
    """One console process on its own terminal."""

    def __init__(self, arguments: list[str], environment: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the console on a real (pseudo) terminal
            os.execve(
                sys.executable, [sys.executable, "-m", "pgq_console", *arguments], environment
            )
        self.output = b""
        self.status: int | None = None

    def read(self, within: float) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.output += chunk

    def text(self) -> str:
        return _ESCAPES.sub(b"", self.output).decode("utf-8", errors="replace")

    def wait_for(self, needle: str, within: float = 60.0) -> None:
        """Until `needle` is on screen (appeared after the last `mark`); `within` is a liveness
        limit, stretched as the other waits' are (tests/helpers.py: LIVENESS_STRETCH)."""
        from tests.helpers import LIVENESS_STRETCH

        deadline = time.monotonic() + within * LIVENESS_STRETCH
        while needle not in self.text()[self._mark :]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen: {self.text()[-1500:]!r}")
            self.read(0.2)

    _mark = 0

    def mark(self) -> None:
        """What is on screen so far no longer counts for `wait_for`."""
        self.read(0.05)
        self._mark = len(self.text())

    def send(self, keys: str | bytes) -> None:
        os.write(self.fd, keys.encode() if isinstance(keys, str) else keys)

    def wait_exit(self, within: float) -> int:
        """The exit code, once the process has ended; AssertionError after `within` s."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.read(0.2)  # keep the terminal drained
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
        raise AssertionError(f"the console did not exit within {within} s: {self.text()[-1500:]!r}")

    def close(self) -> None:
        """Stop the console if it still runs (a failed test), and the terminal."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        with contextlib.suppress(OSError):
            os.close(self.fd)
