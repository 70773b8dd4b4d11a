"""`pgq-console serve`: the console in a browser, locked down.

textual-serve's `Server` accepts any page's WebSocket (a page on another site could drive the
console), any terminal size and any number of sessions, and its page loads Google's fonts. So
this is our own small aiohttp server around textual-serve's public `AppService` (one console
process per browser session) and its bundled JavaScript:

- a random token per launch, printed with the URL (as Jupyter does), is required by the page
  (once; then a same-site cookie) and by the WebSocket (in its path);
- the `Host` header must name this server (DNS rebinding) and a WebSocket's `Origin` must be
  this server's own (cross-site WebSocket hijacking);
- optional HTTP Basic auth (PGQ_CONSOLE_SERVE_USER / PGQ_CONSOLE_SERVE_PASSWORD); a
  non-loopback address is refused without it unless `--insecure`;
- terminal sizes are clamped, sessions are capped, messages are bounded.

Every refusal happens before a console process starts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import html
import ipaddress
import json
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from pgq_console.core.errors import ConsoleError

log = logging.getLogger("pgq_console.serve")

MAX_COLUMNS = 500
MAX_ROWS = 200
DEFAULT_MAX_SESSIONS = 4
MAX_MESSAGE_BYTES = 1024 * 1024  # a paste into the terminal; nothing legitimate is larger
TOKEN_COOKIE = "pgq_console_token"
USER_VARIABLE = "PGQ_CONSOLE_SERVE_USER"
PASSWORD_VARIABLE = "PGQ_CONSOLE_SERVE_PASSWORD"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


class Session(Protocol):
    """One console process behind one WebSocket (textual-serve's AppService)."""

    async def start(self, width: int, height: int) -> None: ...
    async def send_bytes(self, data: bytes) -> bool: ...
    async def set_terminal_size(self, width: int, height: int) -> None: ...
    async def blur(self) -> None: ...
    async def focus(self) -> None: ...
    async def stop(self) -> None: ...


SessionFactory = Callable[[web.WebSocketResponse], Session]


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str

    def accepts(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        # Both compared, always: the time taken says nothing about which one was wrong.
        user_ok = hmac.compare_digest(user.encode(), self.user.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return bool(sep) and user_ok and password_ok


def basic_auth_from(environ: Mapping[str, str]) -> BasicAuth | None:
    user = environ.get(USER_VARIABLE, "")
    password = environ.get(PASSWORD_VARIABLE, "")
    if not user and not password:
        return None
    if not user or not password:
        raise ConsoleError(f"serve: set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
    if ":" in user:
        raise ConsoleError(f"serve: {USER_VARIABLE} must not contain ':'")
    return BasicAuth(user, password)


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("", "0.0.0.0", "::")


def clamp_size(width: object, height: object) -> tuple[int, int]:
    """A terminal size the browser asked for, within 1..500 x 1..200 (80x24 if unreadable)."""

    def bounded(value: object, default: int, top: int) -> int:
        try:
            number: int = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            return default
        return max(1, min(top, number))

    return bounded(width, 80, MAX_COLUMNS), bounded(height, 24, MAX_ROWS)


@dataclass
class ServeConfig:
    command: str
    host: str
    port: int
    title: str = "pgq-console"
    public_url: str | None = None
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    auth: BasicAuth | None = None
    max_sessions: int = DEFAULT_MAX_SESSIONS

    def allowed_hosts(self) -> set[str] | None:
        """Host names the `Host` header may carry; None when bound to every address."""
        names = set()
        if self.public_url:
            names.add((urlsplit(self.public_url).hostname or "").lower())
        if is_wildcard(self.host):
            return None if not self.public_url else names
        names.add(self.host.strip("[]").lower())
        if is_loopback(self.host):
            names |= {"localhost", "127.0.0.1", "::1"}
        return names

    def url(self) -> str:
        base = self.public_url or f"http://{_host_for_url(self.host)}:{self.port}"
        return f"{base.rstrip('/')}/?token={self.token}"


def _host_for_url(host: str) -> str:
    if is_wildcard(host):
        return "localhost"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _host_name(host_header: str) -> str:
    """`example.com:8000` → `example.com`; `[::1]:8000` → `::1`."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


STATIC_FILES = {
    "textual.js": ("js/textual.js", "text/javascript"),
    "xterm.css": ("css/xterm.css", "text/css"),
    "roboto-mono.ttf": ("fonts/RobotoMono-VariableFont_wght.ttf", "font/ttf"),
}

FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#0c181f"/>'
    '<path d="M3 4h10M3 8h7M3 12h4" stroke="#4ec9b0" stroke-width="2" stroke-linecap="round"/>'
    "</svg>"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
        "'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token is in the page's URL
    "Cache-Control": "no-store",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
<link rel="stylesheet" href="/static/xterm.css">
<style>
@font-face {{ font-family: "Roboto Mono"; src: url("/static/roboto-mono.ttf"); }}
html, body {{ margin: 0; height: 100%; background: #0c181f; color: #e6e6e6;
  font-family: "Roboto Mono", monospace; }}
#terminal {{ position: absolute; inset: 0; }}
.notice {{ position: absolute; inset: 0; display: flex; align-items: center;
  justify-content: center; flex-direction: column; z-index: 10; background: #0c181f; }}
body.-first-byte .starting, .closed, #start {{ display: none; }}
body.-closed .closed {{ display: flex; }}
button {{ margin: 16px; padding: 12px 28px; border: none; background: #265a73; color: #fff;
  font: inherit; cursor: pointer; }}
</style>
<script src="/static/textual.js"></script>
</head>
<body>
<div class="notice starting"><div>{title}: starting…</div>
<button type="button" id="start" onclick="location.reload()">Start</button></div>
<div class="notice closed"><div>Session ended.</div>
<button type="button" onclick="location.reload()">Restart</button></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="{websocket_url}"
 data-font-size="{font_size}"></div>
</body>
</html>
"""

NOTICE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" type="image/svg+xml" href="/favicon.svg">
<style>body {{ background: #0c181f; color: #e6e6e6; font-family: monospace; padding: 3em; }}
</style></head>
<body><h1>{heading}</h1><p>{text}</p></body></html>
"""


def _default_session_factory(command: str) -> SessionFactory:
    from textual_serve.app_service import AppService
    from textual_serve.download_manager import DownloadManager

    downloads = DownloadManager()

    def make(websocket: web.WebSocketResponse) -> Session:
        async def close() -> None:
            await websocket.close()

        return AppService(
            command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=close,
            download_manager=downloads,
        )

    return make


class ConsoleServer:
    """The aiohttp application: page, static files, favicon and the console WebSocket."""

    def __init__(self, config: ServeConfig, session_factory: SessionFactory | None = None):
        self.config = config
        self.session_factory = session_factory or _default_session_factory(config.command)
        self.sessions = 0
        self.websockets: set[web.WebSocketResponse] = set()

    # -- checks, before anything else ----------------------------------------------------------

    def _notice(self, status: int, heading: str, text: str) -> web.Response:
        body = NOTICE_PAGE.format(
            title=html.escape(self.config.title), heading=html.escape(heading), text=text
        )
        headers = dict(SECURITY_HEADERS)
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="pgq-console", charset="UTF-8"'
        return web.Response(status=status, text=body, content_type="text/html", headers=headers)

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        allowed = self.config.allowed_hosts()
        if allowed is not None and _host_name(request.host) not in allowed:
            log.warning("serve: refused a request for host %r", request.host)
            return self._notice(403, "Wrong host", "This server does not answer for that name.")
        if self.config.auth and not self.config.auth.accepts(request.headers.get("Authorization")):
            return self._notice(401, "Sign in", "This console needs a user name and password.")
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
        return response

    def _token_ok(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(
            candidate.encode(), self.config.token.encode()
        )

    def _origin_ok(self, request: web.Request) -> bool:
        """A browser always sends `Origin` with a WebSocket: it must be this very server."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser, so not a page riding on the operator's browser
        parts = urlsplit(origin)
        own = {request.host.lower()}
        if self.config.public_url:
            own.add(urlsplit(self.config.public_url).netloc.lower())
        return parts.scheme in ("http", "https") and parts.netloc.lower() in own

    def _full(self) -> web.Response:
        return self._notice(
            503,
            "All sessions are in use",
            f"This console serves at most {self.config.max_sessions} browser sessions at once. "
            "Close another tab of it, then reload this page.",
        )

    # -- handlers --------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        from_query = request.query.get("token")
        if not (self._token_ok(from_query) or self._token_ok(request.cookies.get(TOKEN_COOKIE))):
            return self._notice(
                403,
                "This link needs its token",
                "Open the URL printed by <code>pgq-console serve</code> where it was started "
                "(it ends in <code>?token=…</code>).",
            )
        if self.sessions >= self.config.max_sessions:
            return self._full()
        scheme = "wss" if request.secure else "ws"
        if self.config.public_url:
            public = urlsplit(self.config.public_url)
            scheme = "wss" if public.scheme == "https" else "ws"
            where = public.netloc + public.path.rstrip("/")
        else:
            where = request.host
        _, font_size = clamp_size(0, request.query.get("fontsize", "16"))
        page = PAGE.format(
            title=html.escape(self.config.title),
            websocket_url=html.escape(f"{scheme}://{where}/ws/{self.config.token}"),
            font_size=max(6, min(font_size, 48)),
        )
        response = web.Response(text=page, content_type="text/html")
        if from_query:
            response.set_cookie(
                TOKEN_COOKIE, self.config.token, httponly=True, samesite="Strict", path="/"
            )
        return response

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=FAVICON, content_type="image/svg+xml")

    async def static(self, request: web.Request) -> web.StreamResponse:
        entry = STATIC_FILES.get(request.match_info["name"])
        if entry is None:
            raise web.HTTPNotFound()
        path, content_type = entry
        data = (files("textual_serve") / "static" / path).read_bytes()
        return web.Response(body=data, content_type=content_type)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._token_ok(request.match_info.get("token")):
            log.warning("serve: refused a WebSocket without the token")
            return self._notice(403, "Refused", "Wrong or missing token.")
        if not self._origin_ok(request):
            log.warning("serve: refused a WebSocket from origin %r", request.headers.get("Origin"))
            return self._notice(403, "Refused", "Cross-origin connection.")
        if self.sessions >= self.config.max_sessions:
            return self._full()
        width, height = clamp_size(request.query.get("width"), request.query.get("height"))
        websocket = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE_BYTES)
        self.sessions += 1
        session: Session | None = None
        try:
            await websocket.prepare(request)
            self.websockets.add(websocket)
            session = self.session_factory(websocket)
            await session.start(width, height)
            await self.relay(websocket, session)
        except asyncio.CancelledError:
            await websocket.close()
        except Exception:
            log.exception("serve: a browser session failed")
        finally:
            self.sessions -= 1
            self.websockets.discard(websocket)
            if session is not None:
                with contextlib.suppress(Exception):
                    await session.stop()
        return websocket

    async def relay(self, websocket: web.WebSocketResponse, session: Session) -> None:
        """Browser → console. Anything malformed is dropped, never an exception."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except (ValueError, RecursionError):
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
            if kind == "stdin" and isinstance(data, str):
                await session.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                await session.set_terminal_size(*clamp_size(data.get("width"), data.get("height")))
            elif kind == "ping" and isinstance(data, str | int | float):
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await session.blur()
            elif kind == "focus":
                await session.focus()

    async def on_shutdown(self, app: web.Application) -> None:
        for websocket in list(self.websockets):
            await websocket.close()

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=MAX_MESSAGE_BYTES)
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/favicon.svg", self.favicon),
                web.get("/favicon.ico", self.favicon),
                web.get("/static/{name}", self.static),
                web.get("/ws/{token}", self.websocket),
            ]
        )
        app.on_shutdown.append(self.on_shutdown)
        return app


def check_exposure(host: str, auth: BasicAuth | None, *, insecure: bool) -> None:
    """Beyond this machine, the token alone is not enough: ask for a password (or --insecure)."""
    if is_loopback(host) or auth is not None or insecure:
        return
    raise ConsoleError(
        f"serve: {host} is reachable from other machines; set {USER_VARIABLE} and "
        f"{PASSWORD_VARIABLE} (HTTP Basic auth), bind to localhost, or pass --insecure"
    )


def run_server(config: ServeConfig, announce: Callable[[str], None]) -> None:
    asyncio.run(_serve(ConsoleServer(config), announce))


async def _serve(server: ConsoleServer, announce: Callable[[str], None]) -> None:
    config = server.config
    runner = web.AppRunner(server.application(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        announce(config.url())  # only once the port listens: the URL works when it is shown
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        raise ConsoleError(f"serve: cannot listen on {where}: {exc.strerror}") from None
    finally:
        await runner.cleanup()  # closes every session's socket, which stops its console
