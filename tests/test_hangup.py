"""A closed terminal (SIGHUP, an SSH session dropping) or a kill (SIGTERM) ends the demo cleanly:
the embedded server and the traffic stop, no process is left behind."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("pgserver")


def _demo_servers() -> set[str]:
    """Data directories of running demo servers (`pgq-demo-*`), from `ps`."""
    out = subprocess.run(["ps", "-ewwo", "args="], capture_output=True, text=True, check=True)
    return set(re.findall(r"postgres -D (/\S*pgq-demo-\S+)", out.stdout))


def _read_until(fd: int, needle: bytes, within: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + within
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_demo_leaves_nothing_behind_when_its_terminal_goes(signum: int, tmp_path: Path) -> None:
    # A short private TMPDIR (a unix socket path has ~100 characters; tmp_path can be longer).
    own_tmp = tempfile.mkdtemp(prefix="pgqc-hup-")
    try:
        _run_and_hang_up(signum, tmp_path, own_tmp)
    finally:
        shutil.rmtree(own_tmp, ignore_errors=True)


def _run_and_hang_up(signum: int, tmp_path: Path, own_tmp: str) -> None:
    # Only what a login shell would have: settings left in this process's environment by
    # other tests (a config file, a profile) must not reach the console.
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "COLUMNS": "100",
        "LINES": "30",
        # Its embedded server under this test's own directory: other consoles and test workers
        # on the machine run demo servers of their own.
        "TMPDIR": own_tmp,
    }
    pid, fd = pty.fork()
    if pid == 0:  # the child: the console on a real (pseudo) terminal
        os.execve(sys.executable, [sys.executable, "-m", "pgq_console", "--demo"], environment)
    try:
        # The demo's traffic is on screen: the server, producers and workers are all up.
        screen = _read_until(fd, b"send_email", within=90)
        assert b"send_email" in screen, screen[-800:]
        started = {path for path in _demo_servers() if path.startswith(f"{own_tmp}/")}
        assert len(started) == 1, (started, _demo_servers())  # this console's embedded server
        os.kill(pid, signum)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            screen += _read_until(fd, b"\0", within=0.2)  # keep the terminal drained
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            pytest.fail(f"the console did not exit within 60 s: {screen[-800:]!r}")
        assert os.waitstatus_to_exitcode(status) == 128 + signum, screen[-800:]
        assert not (_demo_servers() & started), "the embedded server was left running"
    finally:
        os.close(fd)
        try:  # a failed test still stops its console (and so its server) if it can
            os.kill(pid, signal.SIGTERM)
            time.sleep(10)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
