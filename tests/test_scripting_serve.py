"""`pgq-console serve`: the console in a real headless Chromium, the DSN never on show.

Needs Debian's chromium (`apt-get install -y chromium`, which `.ci/run` does); skipped with that
reason otherwise, except under `CI=true`, where a missing browser fails the run.
The browser is driven over the DevTools protocol with aiohttp (textual-serve depends on it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgq_console.config import CliOptions, load_settings
from pgq_console.scripting import serve_command
from tests.conftest import drop_database, make_database
from tests.helpers import enqueue

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SESSION_SECRET = "serve-Secr3t-pw"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.communicate()[0]}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def with_secret(dsn: str) -> tuple[str, str]:
    """The DSN with a password to look for (the embedded server trusts local connections)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{SESSION_SECRET}@{host}")), SESSION_SECRET


@pytest.fixture
def served_database(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "serve")
    asyncio.run(enqueue(dsn, "served_job", 3))
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def test_serve_command_never_carries_the_dsn(tmp_path: Path) -> None:
    import argparse

    settings = load_settings(CliOptions(dsn="postgresql://u:pw@h/db"), {})
    args = argparse.Namespace(dsn="postgresql://u:pw@h/db", profile=None, read_only=True)
    command = serve_command(settings, args)
    assert command[1:3] == ["-m", "pgq_console"] and "--read-only" in command
    assert not any("postgresql" in part or part == "pw" for part in command)


async def console_sessions(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'pgq-console' AND datname = current_database()"
            )
        )
    finally:
        await connection.close()


async def devtools(port: int, calls: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        pages = await (await session.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(p for p in pages if p["type"] == "page")
        results = []
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            for number, (method, params) in enumerate(calls, start=1):
                await ws.send_json({"id": number, "method": method, "params": params})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == number:
                        results.append(message.get("result", {}))
                        break
        return results


def missing(reason: str) -> None:
    """Skip on a developer's machine; under CI a missing prerequisite is a failure, not a pass."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


async def console_listens(dsn: str) -> bool:
    """The served console got past its splash to the overview, which LISTENs for queue events."""
    connection = await asyncpg.connect(dsn)
    try:
        return bool(
            await connection.fetchval(
                "SELECT count(*) > 0 FROM pg_stat_activity"
                " WHERE application_name LIKE 'pgq-console%' AND datname = current_database()"
                " AND query ILIKE 'LISTEN%'"
            )
        )
    finally:
        await connection.close()


PAGE_STATE = (
    "JSON.stringify({title: document.title, html: document.documentElement.outerHTML,"
    " classes: Array.from(document.body.classList)})"
)


def test_serve_in_headless_chromium(served_database: str, tmp_path: Path) -> None:
    if CHROMIUM is None:
        missing("needs a headless Chromium: apt-get install -y chromium (Debian)")
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        missing("needs the serve extra: pip install '.[serve]'")
    assert CHROMIUM is not None
    dsn, secret = with_secret(served_database)
    database = urlsplit(served_database).path.lstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    env["PGQ_CONSOLE_DSN"] = dsn  # from the environment, never the command line
    port, debug_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pgq_console", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    profile_dir = tempfile.mkdtemp(prefix="pgqc-chromium-")
    browser: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        url = ""
        while not url:  # the URL with its token, as the operator sees it
            line = server.stdout.readline()
            assert line, "serve exited before printing its URL"
            url = line.split("serving on ", 1)[1].split()[0] if "serving on " in line else ""
        wait_for_port(port, server)
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                f"--user-data-dir={profile_dir}",
                f"--remote-debugging-port={debug_port}",
                "--window-size=1200,700",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        # The browser's session starts a console, which connects with the DSN it inherited.
        deadline = time.monotonic() + 60
        while asyncio.run(console_sessions(served_database)) == 0:
            assert time.monotonic() < deadline, "the browser session never connected"
            time.sleep(0.3)

        # Rendered = the console wrote to the terminal (textual-serve then marks the body
        # `-first-byte` and hides its splash), the session is open, and the console reached the
        # overview (it LISTENs). The terminal is a canvas, so its text cannot be read here.
        state: dict[str, Any] = {}
        rendered = False
        deadline = time.monotonic() + 60
        while not rendered and time.monotonic() < deadline:
            results = asyncio.run(
                devtools(
                    debug_port,
                    [
                        ("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}),
                        ("Page.captureScreenshot", {"format": "png"}),
                    ],
                )
            )
            state = json.loads(results[0]["result"]["value"])
            (tmp_path / "served.png").write_bytes(base64.b64decode(results[1]["data"]))
            assert "-closed" not in state["classes"], "the browser session closed"
            rendered = "-first-byte" in state["classes"] and asyncio.run(
                console_listens(served_database)
            )
            if not rendered:
                time.sleep(0.3)
        assert rendered, (
            f"the console never rendered in the browser (body classes {state.get('classes')};"
            f" screenshot {tmp_path / 'served.png'})"
        )
        page, title = state["html"], state["title"]
        for leak in (secret, dsn, "postgresql://", database):
            assert leak not in title and leak not in page, leak
        assert "pgq-console" in page  # the page names the app, nothing more

        # No process of the session carries the DSN on its command line.
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "pgq_console" in args:
                    assert secret not in args and database not in args, args
    finally:
        if browser is not None:
            browser.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                browser.wait(10)
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(profile_dir, ignore_errors=True)
