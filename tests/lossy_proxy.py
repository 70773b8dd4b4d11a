"""A TCP proxy in front of PostgreSQL that can lose the reply to a COMMIT.

`LossyProxy(dsn)` listens on 127.0.0.1 and forwards every connection to the server of `dsn`
(TCP or a Unix socket). After `arm()`, the next COMMIT a client sends is forwarded, the
server's reply is read and thrown away, and both sides of that connection are closed: the
transaction committed, the client never hears so (a reply lost after COMMIT was sent).
`arm("INSERT INTO pgqueuer")` does the same to the next autocommit statement whose text contains
those words (extended protocol: the reply is lost after the Sync that commits it).

    async with LossyProxy(server_dsn) as proxy:
        backend = await backend_for(proxy.dsn)
        proxy.arm()
        ...  # the next COMMIT's reply is lost
        assert proxy.dropped == 1

`requests` counts what clients waited for (each Sync or simple Query: one round trip), and
`request_texts` keeps the simple queries' text, so a test can count a read's round trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from types import TracebackType
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_PROTOCOL_3 = 196608


class LossyProxy:
    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self._port = parts.port or int(query.get("port", ["5432"])[0])
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._unix = f"{host}/.s.PGSQL.{self._port}" if host.startswith("/") else None
        self._host = host
        self._parts = parts
        self._query = {k: v for k, v in query.items() if k not in ("host", "port")}
        self._server: asyncio.AbstractServer | None = None
        self.requests = 0
        self.request_texts: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._armed: str | None = None
        self._after: str | None = None  # only the COMMIT of a transaction that ran this
        self.dropped = 0
        self.port = 0
        self._flowing = asyncio.Event()  # cleared by `stall`: the server's replies are held
        self._flowing.set()
        self._resume_on_cancel = False
        self.cancel_requests = 0

    @property
    def dsn(self) -> str:
        """The same database, through the proxy (TCP on 127.0.0.1, no TLS)."""
        user = self._parts.username or "postgres"
        password = f":{self._parts.password}" if self._parts.password else ""
        query = urlencode({**{k: v[0] for k, v in self._query.items()}, "sslmode": "disable"})
        netloc = f"{user}{password}@127.0.0.1:{self.port}"
        return urlunsplit((self._parts.scheme, netloc, self._parts.path, query, ""))

    def arm(self, statement: str = "COMMIT", *, after: str | None = None) -> None:
        """Lose the reply to the next COMMIT (or statement containing `statement`); with
        `after`, only a COMMIT of a transaction that sent a statement containing it (so a
        console's background reads, which commit too, are let through)."""
        self._armed = statement.upper()
        self._after = after.upper() if after else None

    def stall(self, *, until_cancel: bool = False) -> None:
        """Hold every reply from the server (a hung network) until `resume`, or with
        `until_cancel` until a client sends a cancel request (the network recovers just as the
        client gives up on its statement)."""
        self._resume_on_cancel = until_cancel
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def __aenter__(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._unix:
                server_reader, server = await asyncio.open_unix_connection(self._unix)
            else:
                server_reader, server = await asyncio.open_connection(self._host, self._port)
        except OSError:
            client.close()
            self._tasks.discard(task)
            return
        lost_reply = asyncio.Event()
        losing: list[bool] = [False]  # set just before a COMMIT whose reply is to be lost
        upstream = asyncio.ensure_future(
            self._client_to_server(client_reader, server, losing, lost_reply)
        )
        downstream = asyncio.ensure_future(
            self._server_to_client(server_reader, client, losing, lost_reply)
        )
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            if losing[0]:
                # The COMMIT went through: wait for the server's answer, which nobody relays.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost_reply.wait(), 30)
                self.dropped += 1
        finally:
            for pending in (upstream, downstream):
                pending.cancel()
            for writer in (client, server):
                with contextlib.suppress(Exception):
                    writer.close()
            self._tasks.discard(task)

    async def _server_to_client(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        losing: list[bool],
        lost_reply: asyncio.Event,
    ) -> None:
        while data := await reader.read(65536):
            if losing[0]:
                lost_reply.set()
                await asyncio.Event().wait()  # relay nothing more; `_serve` closes the sockets
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()

    async def _client_to_server(
        self,
        reader: asyncio.StreamReader,
        server: asyncio.StreamWriter,
        losing: list[bool],
        lost_reply: asyncio.Event,
    ) -> None:
        # Untyped startup packets (SSL/GSS requests, the startup message) come first.
        while True:
            header = await reader.readexactly(4)
            (length,) = struct.unpack("!i", header)
            body = await reader.readexactly(length - 4)
            server.write(header + body)
            await server.drain()
            code = struct.unpack("!i", body[:4])[0]
            if code == _CANCEL_REQUEST:
                self.cancel_requests += 1
                if self._resume_on_cancel:
                    self._flowing.set()
            if code not in (_SSL_REQUEST, _GSSENC_REQUEST):
                break
        statements: dict[bytes, str] = {}  # prepared statement name -> query
        portals: dict[bytes, str] = {}  # portal name -> query
        lose_at_sync = False
        wrote = False  # this transaction sent a statement containing `self._after`
        while True:
            kind = await reader.readexactly(1)
            header = await reader.readexactly(4)
            (length,) = struct.unpack("!i", header)
            body = await reader.readexactly(length - 4)
            if kind in (b"P", b"Q") and self._after:
                wrote = wrote or self._after in body.decode("utf-8", "replace").upper()
            if kind == b"P":
                name, query = body.split(b"\x00", 2)[:2]
                statements[name] = query.decode("utf-8", "replace").upper()
            elif kind == b"B":
                portal, name = body.split(b"\x00", 2)[:2]
                portals[portal] = statements.get(name, "")
            elif kind == b"E" and self._armed and self._armed != "COMMIT":
                portal = body.split(b"\x00", 1)[0]
                if self._armed in portals.get(portal, ""):
                    self._armed = None
                    lose_at_sync = True
            if kind in (b"S", b"Q"):
                self.requests += 1
                if kind == b"Q":
                    self.request_texts.append(body.decode("utf-8", "replace"))
            is_commit = _is_commit(kind, body)
            commit = (self._armed == "COMMIT" and is_commit and (self._after is None or wrote)) or (
                lose_at_sync and kind == b"S"
            )
            if is_commit:
                wrote = False
            if commit:
                self._armed = None
                losing[0] = True
            server.write(kind + header + body)
            await server.drain()
            if commit:
                await lost_reply.wait()
                return


def _is_commit(kind: bytes, body: bytes) -> bool:
    if kind != b"Q":  # asyncpg and psycopg commit with a simple query
        return False
    text = body.decode("utf-8", "replace")
    words = text.strip().strip("\x00").strip().rstrip(";").split()
    return bool(words) and words[0].upper() in ("COMMIT", "END")
