"""The built wheel, installed non-editable in a clean venv, as a new user runs it.

    .venv/bin/python .ci/wheel_smoke.py .venv-wheel/bin/pgq-console

Run by `.ci/run` with the checkout's dev venv (for the embedded server and prometheus_client's
parser); the console under test is the wheel venv's entry point, started outside the checkout
so nothing of the source tree is on its path. Checks `--version` (= the wheel's metadata),
`paths`, `snapshot` (text and OpenMetrics, parsed) against a throwaway embedded server, and
`--demo` on a real pseudo-terminal: its traffic on screen, `q` quits with 0, its server gone.
Exits non-zero with one line per failed check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.openmetrics.parser import text_string_to_metric_families

_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]")


def login_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "COLUMNS": "100",
        "LINES": "30",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TMPDIR": str(home / "tmp"),
    }


def run(console: str, home: Path, *arguments: str) -> str:
    done = subprocess.run(
        [console, *arguments],
        cwd=home,
        env=login_environment(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(arguments[:2])}: exit {done.returncode}: {done.stderr}")
    return done.stdout


def check_install(console: str, home: Path) -> None:
    python = Path(console).with_name("python")
    where = subprocess.run(
        [
            python,
            "-c",
            "import pgq_console, importlib.metadata as m;"
            "print(pgq_console.__file__); print(m.version('pgq-console'))",
        ],
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if "site-packages" not in where[0]:
        raise AssertionError(f"pgq_console imported from {where[0]}, not the installed wheel")
    version = run(console, home, "--version").strip()
    if where[1] not in version:
        raise AssertionError(f"--version says {version!r}, the metadata {where[1]!r}")
    paths = run(console, home, "paths")
    if "audit" not in paths:
        raise AssertionError(f"paths lists no audit file: {paths!r}")


def check_snapshot(console: str, home: Path) -> None:
    import asyncpg
    from pgqueuer.queries import Queries

    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(home / "pgdata")
    uri = server.start()
    try:

        async def install() -> None:
            connection = await asyncpg.connect(uri)
            try:
                await Queries.from_asyncpg_connection(connection).install()
                await Queries.from_asyncpg_connection(connection).enqueue(
                    ["smoke_job"] * 3, [b"{}"] * 3, [0] * 3
                )
            finally:
                await connection.close()

        asyncio.run(install())
        text = run(console, home, "snapshot", "--dsn", uri)
        if "smoke_job" not in text:
            raise AssertionError(f"snapshot does not show the queued entrypoint: {text!r}")
        metrics = run(console, home, "snapshot", "--format", "openmetrics", "--dsn", uri)
        families = {family.name for family in text_string_to_metric_families(metrics)}
        if "pgqueuer_jobs" not in families:
            raise AssertionError(f"no pgqueuer_jobs family in the OpenMetrics output: {families}")
    finally:
        server.stop()


def _demo_postmasters(tmp: Path) -> list[str]:
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            words = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"postgres") and str(tmp).encode() in b" ".join(words):
            found.append(b" ".join(words).decode(errors="replace"))
    return found


def check_demo(console: str, home: Path) -> None:
    environment = login_environment(home)
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(home)
        os.execve(console, [console, "--demo"], environment)
    screen = b""
    try:
        deadline = time.monotonic() + 120
        while b"send_email" not in _ESCAPES.sub(b"", screen) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
        if b"send_email" not in _ESCAPES.sub(b"", screen):
            raise AssertionError(f"--demo showed no traffic: {screen[-600:]!r}")
        if not _demo_postmasters(home / "tmp"):
            raise AssertionError("--demo is on screen but its embedded server was not found")
        os.write(fd, b"q")
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                with contextlib.suppress(OSError):
                    screen += os.read(fd, 65536)
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(code)
                break
        if status != 0:
            raise AssertionError(f"--demo after q: exit {status}: {screen[-600:]!r}")
        if _demo_postmasters(home / "tmp"):
            raise AssertionError("--demo quit but left its embedded server running")
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def main() -> int:
    console = os.path.abspath(sys.argv[1])
    failures = 0
    for check in (check_install, check_snapshot, check_demo):
        with tempfile.TemporaryDirectory(prefix="pgqc-wheel-") as directory:
            home = Path(directory)
            (home / "tmp").mkdir()
            try:
                check(console, home)
                print(f"wheel smoke: {check.__name__}: ok")
            except Exception as exc:  # one line per failed check, then a non-zero exit
                failures += 1
                print(f"wheel smoke: {check.__name__}: FAILED: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
