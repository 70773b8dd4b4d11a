"""A TCP proxy in front of PostgreSQL that adds a round-trip time, for benchmarks.

Every chunk read from either side is forwarded `rtt / 2` seconds later (order kept per
direction), so a request and its reply together take one extra `rtt`, like a server that far
away; bandwidth is not limited. The server may be on TCP or a Unix socket (pgserver).

    async with DelayProxy(server_dsn, rtt=0.05) as proxy:
        ...  # connect to proxy.dsn

    python bench/delay_proxy.py DSN --rtt 0.05        # standalone: prints the proxied DSN
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


class DelayProxy:
    def __init__(self, dsn: str, rtt: float) -> None:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        self._port = parts.port or int(query.get("port", ["5432"])[0])
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        self._unix = f"{host}/.s.PGSQL.{self._port}" if host.startswith("/") else None
        self._host = host
        self._parts = parts
        self._query = {k: v for k, v in query.items() if k not in ("host", "port")}
        self.rtt = rtt
        self.port = 0
        self.connections = 0
        # Request bursts: a client chunk after a server chunk (or the first) on a connection.
        self.round_trips = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def dsn(self) -> str:
        user = self._parts.username or "postgres"
        password = f":{self._parts.password}" if self._parts.password else ""
        query = urlencode({**{k: v[0] for k, v in self._query.items()}, "sslmode": "disable"})
        netloc = f"{user}{password}@127.0.0.1:{self.port}"
        return urlunsplit((self._parts.scheme, netloc, self._parts.path, query, ""))

    async def __aenter__(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self._unix:
                server_r, server_w = await asyncio.open_unix_connection(self._unix)
            else:
                server_r, server_w = await asyncio.open_connection(self._host, self._port)
        except OSError:
            client_w.close()
            return
        last = ["server"]  # who sent last on this connection

        def seen(side: str) -> None:
            if side == "client" and last[0] == "server":
                self.round_trips += 1
            last[0] = side

        up = asyncio.create_task(self._pump(client_r, server_w, lambda: seen("client")))
        down = asyncio.create_task(self._pump(server_r, client_w, lambda: seen("server")))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, server_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        seen: Callable[[], None] = lambda: None,
    ) -> None:
        """Forward chunks half a round trip after they arrived, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                if chunk:
                    seen()
                await queue.put((time.monotonic() + self.rtt / 2, chunk))
                if not chunk:
                    break
            await sender
        finally:
            sender.cancel()


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dsn")
    parser.add_argument("--rtt", type=float, default=0.05, help="added round trip, s (0.05)")
    args = parser.parse_args()
    async with DelayProxy(args.dsn, args.rtt) as proxy:
        print(proxy.dsn, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main())
