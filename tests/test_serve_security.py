"""`serve` locked down: token, Host and Origin checks, Basic auth, loopback only
without auth, clamped terminal sizes, a session cap, no `file` payloads, an offline page.

Each check talks to a real `pgq-console serve` process over HTTP/WebSocket (aiohttp's client)
and looks at its child processes: a refused connection must not have started a console.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import drop_database, make_database
from tests.test_scripting_serve import free_port, wait_for_port

pytest.importorskip("textual_serve", reason="needs the serve extra: pip install '.[serve]'")

URL_LINE = re.compile(r"serving on (\S+)")


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # as printed, with the token when there is one
    port: int
    dsn: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str | None:
        match = re.search(r"token=([\w-]+)", self.url)
        return match.group(1) if match else None

    def children(self) -> list[int]:
        """Processes the server started (each browser session's console)."""
        found = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in task.read_text().split()]
        return found


def start_serve(dsn: str, *extra: str, env_extra: dict[str, str] | None = None) -> Served:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    env["PGQ_CONSOLE_DSN"] = dsn
    env.update(env_extra or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "pgq_console", "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if match := URL_LINE.search(line):
            wait_for_port(port, process)
            return Served(process, match.group(1), port, dsn)
    stop(process)
    raise AssertionError(f"serve never printed its URL: {seen}")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def serve_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "serve_security")
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


@pytest.fixture
def served(serve_dsn: str) -> Iterator[Served]:
    running = start_serve(serve_dsn, "--host", "127.0.0.1", "--max-sessions", "1")
    try:
        yield running
    finally:
        stop(running.process)


async def get(url: str, **headers: str) -> tuple[int, str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.text(), response.cookies


async def page_websocket_url(served: Served) -> str:
    """The WebSocket URL the page hands the browser (read from the page, as textual.js does)."""
    status, page, _ = await get(served.url.replace("localhost", "127.0.0.1"))
    assert status == 200, page
    match = re.search(r'data-session-websocket-url="([^"]+)"', page)
    assert match, page
    return match.group(1).replace("&amp;", "&")


async def try_websocket(url: str, origin: str | None) -> int | None:
    """The HTTP status of a refused handshake, or None when it was accepted (then closed)."""
    headers = {"Origin": origin} if origin else {}
    async with aiohttp.ClientSession() as session:
        try:
            websocket = await session.ws_connect(url, headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await websocket.close()
        return None


def test_foreign_origin_and_missing_token_are_refused_before_a_console_starts(
    served: Served,
) -> None:
    ws_url = asyncio.run(page_websocket_url(served))
    own_origin = served.base
    # A page on another site riding on the operator's browser.
    assert asyncio.run(try_websocket(ws_url, "https://evil.example")) == 403
    # The socket without (or with a wrong) token, from the server's own origin.
    token = served.token or ""
    no_token = ws_url.replace(token, "") if token else ws_url
    wrong_token = ws_url.replace(token, "x" * len(token)) if token else ws_url
    assert asyncio.run(try_websocket(no_token, own_origin)) in (403, 404)
    assert asyncio.run(try_websocket(wrong_token, own_origin)) == 403
    assert served.children() == []
    # The page itself needs the token; a rebinding DNS name is not this server.
    status, page, _ = asyncio.run(get(f"{served.base}/"))
    assert status == 403 and "token" in page
    status, _, _ = asyncio.run(get(f"{served.base}/?token=wrong"))
    assert status == 403
    status, _, _ = asyncio.run(get(served.url.replace("localhost", "127.0.0.1"), Host="evil.test"))
    assert status == 403
    assert served.children() == []


def test_the_printed_url_opens_the_page_and_its_socket(served: Served) -> None:
    assert served.token and len(served.token) >= 24
    status, page, cookies = asyncio.run(get(served.url.replace("localhost", "127.0.0.1")))
    assert status == 200
    assert "<title>pgq-console</title>" in page and 'rel="icon"' in page
    assert "googleapis" not in page and "https://" not in page  # works offline
    assert "pgq_console_token" in cookies  # a reload without ?token= still works
    for asset in ("/favicon.svg", "/static/textual.js", "/static/xterm.css"):
        assert asyncio.run(get(served.base + asset))[0] == 200, asset
    ws_url = asyncio.run(page_websocket_url(served))
    assert asyncio.run(try_websocket(ws_url, served.base)) is None


async def open_session(ws_url: str, origin: str) -> tuple[aiohttp.ClientSession, Any]:
    session = aiohttp.ClientSession()
    websocket = await session.ws_connect(ws_url, headers={"Origin": origin})
    return session, websocket


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {key: value for key, _, value in pairs}


def test_an_oversized_terminal_is_clamped_and_sessions_are_capped(served: Served) -> None:
    ws_url = asyncio.run(page_websocket_url(served))

    async def scenario() -> None:
        separator = "&" if "?" in ws_url else "?"
        huge = f"{ws_url}{separator}width=100000&height=100000"
        session, websocket = await open_session(huge, served.base)
        try:
            deadline = time.monotonic() + 30
            # Until the child has exec'd, /proc shows the server's own environment.
            while not served.children() or "ROWS" not in environ_of(served.children()[0]):
                assert time.monotonic() < deadline, "no console started"
                await asyncio.sleep(0.1)
            console = environ_of(served.children()[0])
            assert (console["COLUMNS"], console["ROWS"]) == ("500", "200")
            # The cap (1 here): a second tab gets a clear page and no console.
            assert await try_websocket(ws_url, served.base) == 503
            status, page, _ = await get(served.url.replace("localhost", "127.0.0.1"))
            assert status == 503 and "sessions" in page
            assert len(served.children()) == 1
        finally:
            await websocket.close()
            await session.close()

    asyncio.run(scenario())


def test_a_non_loopback_address_needs_auth_or_insecure(serve_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    env["PGQ_CONSOLE_DSN"] = serve_dsn
    process = subprocess.Popen(
        [sys.executable, "-m", "pgq_console", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop(process)
        raise AssertionError("serve bound 0.0.0.0 without auth") from None
    assert process.returncode == 2
    assert stderr.count("\n") == 1 and "PGQ_CONSOLE_SERVE_PASSWORD" in stderr, stderr


def test_basic_auth_guards_every_path(serve_dsn: str) -> None:
    running = start_serve(
        serve_dsn,
        "--host",
        "127.0.0.1",
        env_extra={"PGQ_CONSOLE_SERVE_USER": "ops", "PGQ_CONSOLE_SERVE_PASSWORD": "pa:ss w"},
    )
    try:
        page_url = running.url.replace("localhost", "127.0.0.1")
        status, _, _ = asyncio.run(get(page_url))
        assert status == 401
        wrong = "Basic " + base64.b64encode(b"ops:nope").decode()
        assert asyncio.run(get(page_url, Authorization=wrong))[0] == 401
        right = "Basic " + base64.b64encode(b"ops:pa:ss w").decode()
        assert asyncio.run(get(page_url, Authorization=right))[0] == 200
        assert asyncio.run(get(running.base + "/static/textual.js"))[0] == 401
        assert running.children() == []
    finally:
        stop(running.process)


class RecordingSession:
    """Stands in for the console process: records what the relay passes on."""

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.typed: list[bytes] = []

    async def start(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def send_bytes(self, data: bytes) -> bool:
        self.typed.append(data)
        return True

    async def set_terminal_size(self, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def blur(self) -> None: ...
    async def focus(self) -> None: ...
    async def stop(self) -> None: ...


async def test_resize_messages_are_clamped_and_junk_is_dropped() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from pgq_console.serve import ConsoleServer, ServeConfig

    recording = RecordingSession()
    config = ServeConfig("true", host="127.0.0.1", port=0, token="t0ken")
    server = ConsoleServer(config, session_factory=lambda websocket: recording)
    async with TestClient(TestServer(server.application())) as client:
        websocket = await client.ws_connect("/ws/t0ken?width=90&height=30")
        for junk in ("not json", "[]", '{"a": 1}', '["stdin", 5]', "[" * 5000):
            await websocket.send_str(junk)
        await websocket.send_str('["resize", {"width": 100000, "height": 100000}]')
        await websocket.send_str('["resize", {"width": -5, "height": "x"}]')
        await websocket.send_str('["stdin", "q"]')
        await websocket.send_str('["ping", "1"]')
        assert await websocket.receive_json() == ["pong", "1"]
        await websocket.close()
    assert recording.sizes == [(90, 30), (500, 200), (1, 24)]
    assert recording.typed == [b"q"]


def test_clamp_size() -> None:
    from pgq_console.serve import clamp_size

    assert clamp_size("100000", "100000") == (500, 200)
    assert clamp_size(None, "0") == (80, 1)
    assert clamp_size(float("inf"), 1e308) == (80, 200)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--max-sessions", "0"], "--max-sessions must be from 1 to 1000"),
        (["--port", "99999"], "--port 99999 is not a TCP port"),
    ],
)
def test_bad_serve_options_are_refused(option: list[str], expected: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pgq_console",
            "--dsn",
            "postgresql://u@127.0.0.1:1/x",
            "serve",
            *option,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stop(process)
        raise AssertionError(f"serve started with {option}") from None
    assert process.returncode == 2 and expected in stderr, stderr
