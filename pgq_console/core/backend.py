"""The console's connection to one PgQueuer installation, through any driver of the contract.

Reads go through `Backend.read`: one read-only transaction with a transaction-local
statement_timeout and application_name, so the overview works on a read-only role and never
changes a handed-in connection's session. Writes and schema checks use pgqueuer's own
`Queries` (`Backend.queries`). LISTEN uses pgqueuer's listener helper on the driver the contract
prescribes; for psycopg it always runs on a separate connection, because a listening
PsycopgDriver holds the connection lock for up to a second per query.

Connections drop (server restart, pg_terminate_backend, network cut): every read and transaction
first replaces a connection that is known to be dead, and a read that outlives the statement
timeout by `CLIENT_GRACE_S` (a network cut: the server cannot cancel it) resets its connection, so
no caller ever waits forever. `listener_alive()` tells the live model when to LISTEN again.

Behind PgBouncer (topologies.md): only application_name goes in the startup packet when the
pooler refuses the others (every setting is transaction-local anyway), and `open_backend`
probes the live path end to end (LISTEN, NOTIFY from another connection, wait): no delivery
means transaction pooling, so prepared statements are off and the live model polls, unless a
`listen_dsn` gives LISTEN a direct connection of its own. Errors a pooler raises mid-session
(a prepared statement it lost, a closed server connection) discard the connections, so the
next read reconnects instead of failing the same way forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pgqueuer.core.listeners import initialize_notice_event_listener
from pgqueuer.domain import models as pgq_models
from pgqueuer.domain.types import Channel

from pgq_console.core.errors import ConsoleError, describe_connect_error
from pgq_console.core.pooler import (
    DIRECT,
    PROBE_WAIT_S,
    ConnectOptions,
    pooler_broke,
    resolve_connect_options,
    startup_refused,
)
from pgq_console.core.target import APPLICATION_NAME, DriverKind, Installation, Pooler

if TYPE_CHECKING:
    import asyncpg
    import psycopg
    from pgqueuer.queries import Queries

    from pgq_console.core.replica import ReplicaLink

EventHandler = Callable[[pgq_models.AnyEvent], None]

DEFAULT_STATEMENT_TIMEOUT = timedelta(seconds=5)
CONNECT_TIMEOUT_S = 10.0
# Past the statement timeout the server should have cancelled the query itself; this much later
# the connection is presumed cut and is reset.
CLIENT_GRACE_S = 3.0
class DatabaseTimeout(ConsoleError):
    """The database did not answer in time (no reply at all, not a cancelled statement)."""


def _timeout_setting(timeout: timedelta) -> str:
    return f"{int(timeout.total_seconds() * 1000)}ms"


class Tx(Protocol):
    """One open transaction on one connection; `$1` placeholders for every driver."""

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, *args: object) -> str: ...


READ_ONLY_REFUSAL = "read-only mode: the console does not write to this database"


class Backend(ABC):
    """What the console needs from a database connection, whatever the driver."""

    kind: DriverKind

    def __init__(self, installation: Installation, label: str, *, read_only: bool = False) -> None:
        self.installation = installation
        self.label = label
        self.statement_timeout = DEFAULT_STATEMENT_TIMEOUT
        # Connections the console opens itself are also read-only on the server when set.
        self.read_only = read_only
        self._listen_driver: Any = None
        self._dsn: str | None = None  # known when the console opened the connection itself
        self.connect_options = DIRECT
        # What is in front, as set or probed (never AUTO here); NONE for handed-in connections.
        self.pooler = Pooler.NONE
        # A direct connection for LISTEN only (behind a transaction pooler).
        self.listen_dsn: str | None = None
        self._direct_listen: Any = None  # the connection opened from listen_dsn
        # A hot standby for `read_heavy` (see core/replica.py), or None.
        self.replica: ReplicaLink | None = None
        self._search_path: str | None = None  # of a handed-in session (`_handed_in_search_path`)

    @property
    def can_listen(self) -> bool:
        """Whether LISTEN can work: not on a transaction-pooled connection without listen_dsn."""
        return self.pooler is not Pooler.TRANSACTION or self.listen_dsn is not None

    @property
    def why_polling(self) -> str | None:
        """Why the live model cannot LISTEN (the header says it), or None."""
        return None if self.can_listen else "PgBouncer transaction pooling"

    @property
    def autocommit_problem(self) -> str | None:
        """Why the connection cannot be used yet (psycopg without autocommit), or None."""
        return None

    async def enable_autocommit(self) -> str | None:
        """Switch a handed-in psycopg connection to autocommit; the reason it is unsafe, or None."""
        return None

    @property
    @abstractmethod
    def queries(self) -> Queries:
        """pgqueuer's Queries on this connection, bound to the installation's names."""

    async def read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """Run one SELECT in a read-only transaction with the console's statement timeout.

        A dead connection is replaced first; no answer within the statement timeout plus
        `CLIENT_GRACE_S` raises DatabaseTimeout and resets the connection that hung.
        """
        await self.ensure_connected()
        deadline = self.statement_timeout.total_seconds() + CLIENT_GRACE_S
        task = asyncio.ensure_future(self._read(sql, *args))
        try:
            done, _ = await asyncio.wait({task}, timeout=deadline)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            exc = task.exception()
            if exc is not None and pooler_broke(exc):
                await self.discard_connections()
            return task.result()
        await self._abort_in_flight()
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 2)
        raise DatabaseTimeout(
            f"{self.label} did not answer within {deadline:g}s; the connection was reset"
        )

    async def read_heavy(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """A read that may be a little stale (pages, detail, charts): on the replica while it is
        fit, else on the primary. Never for what a write's preview or the live depth needs."""
        if self.replica is not None:
            standby = self.replica.usable()
            if standby is not None:
                try:
                    return await standby.read(sql, *args)
                except Exception as exc:
                    self.replica.failed(exc)
        return await self.read(sql, *args)

    async def _close_replica(self) -> None:
        if self.replica is not None:
            with contextlib.suppress(Exception):
                await self.replica.close()

    @abstractmethod
    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]: ...

    async def ensure_connected(self) -> None:
        """Replace the console's connection when it is known to be dead (no-op otherwise)."""
        return None  # pools replace closed connections on acquire

    async def _abort_in_flight(self) -> None:
        """Terminate the connections of reads that hung (pools: the acquired ones)."""
        return None

    async def discard_connections(self) -> None:
        """Drop the query connections (a pooler broke their session): the next use reconnects."""
        await self._abort_in_flight()

    def listener_alive(self) -> bool:
        """Whether the LISTEN connection is still open (False when not listening)."""
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        return self._listen_driver is not None

    def _direct_listen_alive(self) -> bool:
        connection = self._direct_listen
        if self._listen_driver is None or connection is None:
            return False
        if self.kind is DriverKind.PSYCOPG:
            return not (connection.closed or connection.broken)
        return not connection.is_closed()

    @abstractmethod
    def _make_listen_driver(self) -> Any: ...

    @abstractmethod
    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A read-write transaction with the console's statement timeout; refused when read-only.

        Everything inside runs on one connection and commits together (or not at all).
        """
        if self.read_only:
            raise ConsoleError(READ_ONLY_REFUSAL)
        if self.autocommit_problem:
            raise ConsoleError(self.autocommit_problem)
        await self.ensure_connected()
        if self._dsn is None and not self.installation.settings.db_schema:
            await self._handed_in_search_path()
        try:
            async with self._transaction() as tx:
                await tx.execute(_PREAMBLE, *self._preamble_args())
                yield tx
        except Exception as exc:
            if pooler_broke(exc):
                await self.discard_connections()
            raise

    @abstractmethod
    async def new_connection(self) -> Any:
        """A fresh connection of the same driver family to the same database, autocommit,
        for work that must not share the UI's connection (consumers, reconnects). The caller
        owns and closes it."""

    async def new_listen_connection(self) -> Any:
        """A connection for a LISTEN of its own: from `listen_dsn` past a pooler, else like
        `new_connection`. The caller owns and closes it."""
        if self.listen_dsn is None:
            return await self.new_connection()
        if self.kind is DriverKind.PSYCOPG:
            return await _psycopg_connect(
                self.listen_dsn, autocommit=True, **_psycopg_params(False, ConnectOptions(False))
            )
        return await _asyncpg_connect(self.listen_dsn, False, ConnectOptions(False))

    async def _check_same_search_path(
        self, connection: Any, fetchval: Callable[[Any, str], Awaitable[Any]]
    ) -> None:
        """Refuse a new connection that would see other tables than the handed-in one (a
        search_path set with SET after connecting cannot be copied from the startup settings)."""
        if self.installation.settings.db_schema:
            return  # the names are schema-qualified: search_path does not matter
        if self.autocommit_problem:
            return  # nothing runs on that connection until it is fixed, not even this read
        query = "SELECT current_setting('search_path') AS search_path"
        try:
            theirs = await self._handed_in_search_path()
            ours = await fetchval(connection, query)
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        if ours != theirs:
            with contextlib.suppress(Exception):
                await connection.close()
            raise ConsoleError(
                f"the connection was handed in with search_path {theirs!r} set after connecting; "
                f"a new connection would use {ours!r}: pass search_path in its startup settings"
            )

    async def _handed_in_search_path(self) -> str:
        """The handed-in session's search_path, read once: `transaction()` reads it before it
        takes the lock, since new connections are also opened inside a transaction (schema
        installs) and reading then would wait for that very lock."""
        if self._search_path is None:
            query = "SELECT current_setting('search_path') AS search_path"
            self._search_path = str((await self.read(query))[0]["search_path"])
        return self._search_path

    def new_driver(self, connection: Any) -> Any:
        """pgqueuer's Driver over a connection from `new_connection`."""
        from pgqueuer.db import AsyncpgDriver, PsycopgDriver

        if self.kind is DriverKind.PSYCOPG:
            return PsycopgDriver(connection)
        return AsyncpgDriver(connection)

    async def listen(self, handler: EventHandler) -> None:
        """LISTEN on the installation's channel; `handler` gets every parsed PgQueuer event."""
        if self.listen_dsn is None and not self.can_listen:
            raise ConsoleError("LISTEN does not work through transaction pooling: set listen_dsn")
        if self.listen_dsn is not None:
            await self._listen_direct(handler)
            return
        await self.ensure_connected()
        async with self._listen_guard():
            if self._listen_driver is None:
                driver = await self._open_listen_driver()
                await driver.__aenter__()
                self._listen_driver = driver
            try:
                await initialize_notice_event_listener(
                    self._listen_driver, Channel(self.installation.channel), handler
                )
            except BaseException:
                # Not listening after all: `listener_alive()` must say so, or no one retries.
                await self.stop_listening()
                raise

    async def _listen_direct(self, handler: EventHandler) -> None:
        """LISTEN on a connection of its own, opened from `listen_dsn` (past the pooler)."""
        from pgqueuer.db import AsyncpgDriver, PsycopgDriver

        if self._listen_driver is None:
            dsn = self.listen_dsn or ""
            if self.kind is DriverKind.PSYCOPG:
                import psycopg

                connection: Any = await psycopg.AsyncConnection.connect(
                    dsn,
                    autocommit=True,
                    application_name=f"{APPLICATION_NAME}-listen",
                    connect_timeout=int(CONNECT_TIMEOUT_S),
                )
                driver: Any = PsycopgDriver(connection)
            else:
                try:
                    connection = await _asyncpg_connect(dsn, False, DIRECT)
                except Exception as exc:
                    if not startup_refused(exc):
                        raise
                    # listen_dsn through a session pooler: application_name only.
                    connection = await _asyncpg_connect(dsn, False, ConnectOptions(False))
                driver = AsyncpgDriver(connection)
            self._direct_listen = connection
            self._listen_driver = driver
        try:
            await initialize_notice_event_listener(
                self._listen_driver, Channel(self.installation.channel), handler
            )
        except BaseException:
            await self._stop_direct_listen()
            raise

    async def _stop_direct_listen(self) -> None:
        connection, self._direct_listen = self._direct_listen, None
        self._listen_driver = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    def _listen_guard(self) -> contextlib.AbstractAsyncContextManager[object]:
        """What LISTEN must hold: nothing when it has a connection of its own."""
        return contextlib.nullcontext()

    async def _open_listen_driver(self) -> Any:
        return self._make_listen_driver()

    async def stop_listening(self) -> None:
        if self._direct_listen is not None:
            await self._stop_direct_listen()
            return
        driver, self._listen_driver = self._listen_driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                await driver.__aexit__(None, None, None)

    async def close(self) -> None:
        await self.stop_listening()
        await self._close_replica()

    def _preamble_args(self) -> tuple[str, str]:
        return _timeout_setting(self.statement_timeout), APPLICATION_NAME


# set_config(..., true) is transaction-local: a handed-in connection's session is left as it was.
_PREAMBLE = (
    "SELECT set_config('statement_timeout', $1, true), set_config('application_name', $2, true)"
)


class SerialisedDriver:
    """pgqueuer's Driver over a connection the console shares between screens and writes.

    Every statement takes the backend's one lock (the same one `read` and `transaction` hold),
    so pgqueuer's own queries (an enqueue, LISTEN) never run inside another screen's read-only
    transaction nor while asyncpg is busy with another statement. The listeners it adds are
    remembered so that exactly those, and no one else's, are removed on exit.
    """

    def __init__(self, inner: Any, lock: Callable[[], asyncio.Lock]) -> None:
        self.inner = inner
        self._lock = lock
        self.listeners: list[tuple[str, Any]] = []

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        async with self._lock():
            result: list[dict[str, object]] = await self.inner.fetch(query, *args)
            return result

    async def execute(self, query: str, *args: object) -> str:
        async with self._lock():
            return str(await self.inner.execute(query, *args))

    async def notify(self, channel: str, payload: str) -> None:
        async with self._lock():
            await self.inner.notify(channel, payload)

    async def add_listener(self, channel: str, callback: Any) -> None:
        async with self._lock():
            await self.inner.add_listener(channel, callback)
        self.listeners.append((channel, callback))

    async def remove_listener(self, channel: str, callback: Any) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove((channel, callback))
        async with self._lock():
            await self.inner.remove_listener(channel, callback)

    async def remove_all_listeners(self) -> None:
        """Remove what this driver added (UNLISTEN when it was the channel's last callback)."""
        for channel, callback in list(self.listeners):
            await self.remove_listener(channel, callback)

    @property
    def shutdown(self) -> asyncio.Event:
        event: asyncio.Event = self.inner.shutdown
        return event

    @property
    def tm(self) -> Any:
        return self.inner.tm

    async def __aenter__(self) -> SerialisedDriver:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)


class _AsyncpgTx:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._connection.fetch(sql, *args)]

    async def execute(self, sql: str, *args: object) -> str:
        return str(await self._connection.execute(sql, *args))


class _PsycopgTx:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        from psycopg import AsyncRawCursor
        from psycopg.rows import dict_row

        cursor = AsyncRawCursor(self._connection, row_factory=dict_row)
        await cursor.execute(sql, args or None)
        return list(await cursor.fetchall()) if cursor.description else []

    async def execute(self, sql: str, *args: object) -> str:
        from psycopg import AsyncRawCursor

        cursor = AsyncRawCursor(self._connection)
        await cursor.execute(sql, args or None)
        return cursor.statusmessage or ""


async def _asyncpg_connect(
    dsn: str | None, read_only: bool, options: ConnectOptions = DIRECT, **params: Any
) -> Any:
    import asyncpg

    if not options.prepared_statements:
        params["statement_cache_size"] = 0
    return await asyncpg.connect(
        dsn or None,
        server_settings=_server_settings(read_only, options),
        timeout=CONNECT_TIMEOUT_S,
        **params,
    )


def _server_settings(read_only: bool, options: ConnectOptions = DIRECT) -> dict[str, str]:
    settings = {"application_name": APPLICATION_NAME}
    if not options.startup_settings:
        # Reads set the timeout per transaction; read-only is then enforced by the console.
        return settings
    settings["statement_timeout"] = _timeout_setting(DEFAULT_STATEMENT_TIMEOUT)
    if read_only:
        settings["default_transaction_read_only"] = "on"
    return settings


async def _psycopg_connect(dsn: str, **params: Any) -> Any:
    """psycopg's AsyncConnection.connect, once more when the socket "closed" at once: right after
    a refused attempt, asyncio's selector may still hold the reused file descriptor."""
    import psycopg

    try:
        return await psycopg.AsyncConnection.connect(dsn, **params)
    except psycopg.OperationalError as exc:
        if "connection socket closed" not in str(exc):
            raise
        return await psycopg.AsyncConnection.connect(dsn, **params)


def _psycopg_params(read_only: bool, options: ConnectOptions) -> dict[str, Any]:
    """psycopg connect arguments: settings via libpq `options` unless a pooler refuses it."""
    params: dict[str, Any] = {"connect_timeout": int(CONNECT_TIMEOUT_S)}
    if options.startup_settings:
        settings = _server_settings(read_only, options)
        params["options"] = " ".join(f"-c {k}={v}" for k, v in settings.items())
    else:
        params["application_name"] = APPLICATION_NAME
    if not options.prepared_statements:
        params["prepare_threshold"] = None
    return params


class AsyncpgBackend(Backend):
    """One asyncpg connection: reads, pgqueuer queries and LISTEN share it, serialised."""

    kind = DriverKind.ASYNCPG

    def __init__(
        self,
        connection: asyncpg.Connection,
        installation: Installation,
        label: str,
        *,
        owned: bool = False,
    ) -> None:
        from pgqueuer.db import AsyncpgDriver

        super().__init__(installation, label)
        self.connection = connection
        self._lock = asyncio.Lock()
        self._driver = SerialisedDriver(AsyncpgDriver(connection), lambda: self._lock)
        self._queries = installation.queries(self._driver)
        self._owned = owned
        self._reconnect_lock = asyncio.Lock()
        # Kept: a dead connection forgets where it was connected.
        self._connect_params: dict[str, Any] | None = None
        with contextlib.suppress(Exception):
            self._connect_params = _asyncpg_params(connection)

    @property
    def queries(self) -> Queries:
        return self._queries

    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        async with self._lock, self.connection.transaction(readonly=True):
            await self.connection.execute(_PREAMBLE, *self._preamble_args())
            return [dict(row) for row in await self.connection.fetch(sql, *args)]

    async def ensure_connected(self) -> None:
        if not self.connection.is_closed():
            return
        async with self._reconnect_lock:
            if not self.connection.is_closed():
                return
            from pgqueuer.db import AsyncpgDriver

            # A handed-in connection died: the console continues on one of its own.
            self.connection = await self._open_like_handed_in()
            self._lock = asyncio.Lock()
            self._driver = SerialisedDriver(AsyncpgDriver(self.connection), lambda: self._lock)
            self._queries = self.installation.queries(self._driver)
            self._owned = True
            self._listen_driver = None  # the LISTEN died with the old connection

    async def _abort_in_flight(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.terminate()

    def listener_alive(self) -> bool:
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        return self._listen_driver is not None and not self.connection.is_closed()

    def _make_listen_driver(self) -> Any:
        # LISTEN shares the query connection: the serialised driver holds the one lock for it.
        return self._driver

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        async with self._lock, self.connection.transaction():
            yield _AsyncpgTx(self.connection)

    async def new_connection(self) -> Any:
        connection = await self._open_like_handed_in()
        if self._dsn is None:
            await self._check_same_search_path(connection, _asyncpg_fetchval)
        return connection

    async def _open_like_handed_in(self) -> Any:
        if self._dsn is not None:
            return await _asyncpg_connect(self._dsn, self.read_only, self.connect_options)
        params = dict(self._connect_params or _asyncpg_params(self.connection))
        # The handed-in connection's own startup settings (search_path...) come first; the
        # console's only name the session and bound its statements.
        settings = {
            **params.pop("server_settings", {}),
            **_server_settings(self.read_only, self.connect_options),
        }
        if not self.connect_options.prepared_statements:
            params["statement_cache_size"] = 0
        return await asyncio.wait_for(
            _asyncpg_module().connect(server_settings=settings, **params), CONNECT_TIMEOUT_S
        )

    async def stop_listening(self) -> None:
        if self._direct_listen is not None:
            await self._stop_direct_listen()
            return
        # The shared driver is also the query driver: only drop the console's own callbacks
        # (and UNLISTEN its channel unless the owner listens there too).
        self._listen_driver = None
        driver = self._driver
        if self.connection.is_closed():
            driver.listeners.clear()
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(driver.remove_all_listeners(), 5)

    async def close(self) -> None:
        await self.stop_listening()
        await self._close_replica()
        if self._owned:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 5)


class AsyncpgPoolBackend(Backend):
    """An asyncpg pool; the pool driver keeps one of its connections for LISTEN."""

    kind = DriverKind.ASYNCPG_POOL

    def __init__(
        self, pool: asyncpg.Pool, installation: Installation, label: str, *, owned: bool = False
    ) -> None:
        from pgqueuer.db import AsyncpgPoolDriver

        super().__init__(installation, label)
        self.pool = pool
        self._driver = AsyncpgPoolDriver(pool)
        self._queries = installation.queries(self._driver)
        self._owned = owned
        self._in_flight: set[Any] = set()

    @property
    def queries(self) -> Queries:
        return self._queries

    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        # The pool replaces connections it finds closed when they are acquired.
        async with self.pool.acquire() as connection:
            self._in_flight.add(connection)
            try:
                async with connection.transaction(readonly=True):
                    await connection.execute(_PREAMBLE, *self._preamble_args())
                    return [dict(row) for row in await connection.fetch(sql, *args)]
            finally:
                self._in_flight.discard(connection)

    async def _abort_in_flight(self) -> None:
        for connection in list(self._in_flight):
            with contextlib.suppress(Exception):
                connection.terminate()

    def listener_alive(self) -> bool:
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        driver = self._listen_driver
        connection = getattr(driver, "_listener_connection", None) if driver else None
        try:
            return connection is not None and not connection.is_closed()
        except Exception:  # asyncpg: a proxy already released to the pool
            return False

    def _make_listen_driver(self) -> Any:
        from pgqueuer.db import AsyncpgPoolDriver

        # A driver of its own per LISTEN: after a drop the old one still holds the dead connection.
        return AsyncpgPoolDriver(self.pool)

    @staticmethod
    def _is_open(connection: Any) -> bool:
        try:
            return not connection.is_closed()
        except Exception:  # released to the pool already
            return False

    async def stop_listening(self) -> None:
        if self._direct_listen is not None:
            await self._stop_direct_listen()
            return
        driver, self._listen_driver = self._listen_driver, None
        connection = getattr(driver, "_listener_connection", None) if driver else None
        if connection is not None and not self._is_open(connection):
            # reset() would fail on a dead connection: hand it back to the pool as it is.
            driver._listener_connection = None
            with contextlib.suppress(Exception):
                await self.pool.release(connection)
            return
        if driver is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(driver.__aexit__(None, None, None), 5)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield _AsyncpgTx(connection)

    async def discard_connections(self) -> None:
        await self._abort_in_flight()
        with contextlib.suppress(Exception):
            await self.pool.expire_connections()

    async def new_connection(self) -> Any:
        if self._dsn is not None:
            return await _asyncpg_connect(self._dsn, self.read_only, self.connect_options)
        # A handed-in pool: connect the way the pool connects (its own arguments).
        # Not acquired from the pool: a consumer or listener holds its connection for the whole
        # session, which would starve the program's own pool. A new connection made by the
        # pool's own factory (its `connect=` function, arguments and `init=`) is the same thing.
        make = getattr(self.pool, "_get_new_connection", None)
        if make is None:
            raise ConsoleError(
                "this asyncpg version does not say how its pool connects, so the console cannot "
                "open a connection like the pool's (for consumers and listening)"
            )
        connection = await asyncio.wait_for(make(), CONNECT_TIMEOUT_S)
        try:
            setup = getattr(self.pool, "_setup", None)
            if setup is not None:
                await setup(connection)
            if self.read_only:
                await connection.execute("SET default_transaction_read_only = on")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        return connection

    async def close(self) -> None:
        await self.stop_listening()
        await self._close_replica()
        if self._owned:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)


class PsycopgBackend(Backend):
    """An async psycopg connection for queries, and a second one of the console's for LISTEN."""

    kind = DriverKind.PSYCOPG

    def __init__(
        self,
        connection: psycopg.AsyncConnection[Any],
        installation: Installation,
        label: str,
        *,
        owned: bool = False,
    ) -> None:
        super().__init__(installation, label)
        self.connection = connection
        self._owned = owned
        self._lock = asyncio.Lock()
        self._queries_cache: Queries | None = None
        self._listen_connection: psycopg.AsyncConnection[Any] | None = None
        self._reconnect_lock = asyncio.Lock()
        # Kept: a broken connection can no longer tell how it was opened.
        self._conninfo = (connection.info.dsn, connection.info.password or None)

    @property
    def autocommit_problem(self) -> str | None:
        if self.connection.autocommit:
            return None
        return (
            "this psycopg connection is not in autocommit mode, which PgQueuer requires: "
            "live statistics, listening and consumers are off"
        )

    async def enable_autocommit(self) -> str | None:
        from psycopg.pq import TransactionStatus

        if self.connection.autocommit:
            return None
        status = self.connection.info.transaction_status
        if status != TransactionStatus.IDLE:
            return (
                f"the connection is inside a transaction ({status.name.lower()}): "
                "commit or roll it back first, then press the key again"
            )
        await self.connection.set_autocommit(True)
        return None

    @property
    def queries(self) -> Queries:
        # PsycopgDriver refuses a connection without autocommit, so build it on first use.
        if self._queries_cache is None:
            if self.autocommit_problem:
                raise ConsoleError(self.autocommit_problem)
            from pgqueuer.db import PsycopgDriver

            driver = SerialisedDriver(PsycopgDriver(self.connection), lambda: self._lock)
            self._queries_cache = self.installation.queries(driver)
        return self._queries_cache

    async def ensure_connected(self) -> None:
        if not (self.connection.closed or self.connection.broken):
            return
        async with self._reconnect_lock:
            if not (self.connection.closed or self.connection.broken):
                return
            self.connection = await self._open_like_handed_in()
            self._queries_cache = None
            self._owned = True
            self._lock = asyncio.Lock()

    async def _abort_in_flight(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.pgconn.finish()  # no round trip: the network may be gone

    def listener_alive(self) -> bool:
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        connection = self._listen_connection
        return (
            self._listen_driver is not None
            and connection is not None
            and not (connection.closed or connection.broken)
        )

    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        from psycopg import AsyncRawCursor
        from psycopg.rows import dict_row

        if self.autocommit_problem:
            raise ConsoleError(self.autocommit_problem)
        async with self._lock, self.connection.transaction():
            cursor = AsyncRawCursor(self.connection, row_factory=dict_row)
            await cursor.execute("SET TRANSACTION READ ONLY")
            await cursor.execute(_PREAMBLE, self._preamble_args())
            await cursor.execute(sql, args or None)
            return list(await cursor.fetchall())

    def _make_listen_driver(self) -> Any:  # pragma: no cover - replaced by the async opener
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Tx]:
        async with self._lock, self.connection.transaction():
            yield _PsycopgTx(self.connection)

    async def new_connection(self) -> Any:
        connection = await self._open_like_handed_in()
        if self._dsn is None:
            await self._check_same_search_path(connection, _psycopg_fetchval)
        return connection

    async def _open_like_handed_in(self) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        dsn, password = self._conninfo
        if self._dsn is not None:
            dsn, password = self._dsn, None
        params = _psycopg_params(self.read_only, self.connect_options)
        # The connection's own options (search_path...) are kept, after the console's.
        own_options = str(conninfo_to_dict(dsn).get("options") or "")
        if own_options:
            params["options"] = f"{params.get('options', '')} {own_options}".strip()
        return await psycopg.AsyncConnection.connect(
            dsn,
            password=password,
            autocommit=True,
            **params,
        )

    async def _open_listen_driver(self) -> Any:
        import psycopg
        from pgqueuer.db import PsycopgDriver

        if self.autocommit_problem:
            raise ConsoleError(self.autocommit_problem)
        dsn, password = self._conninfo
        listen_connection = await psycopg.AsyncConnection.connect(
            self._dsn if self._dsn is not None else dsn,
            password=None if self._dsn is not None else password,
            autocommit=True,
            application_name=f"{APPLICATION_NAME}-listen",
            connect_timeout=int(CONNECT_TIMEOUT_S),
            prepare_threshold=None if not self.connect_options.prepared_statements else 5,
        )
        self._listen_connection = listen_connection
        return PsycopgDriver(listen_connection)

    async def stop_listening(self) -> None:
        await super().stop_listening()
        if self.listen_dsn is not None:
            return
        connection, self._listen_connection = self._listen_connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def close(self) -> None:
        await self.stop_listening()
        await self._close_replica()
        if self._owned:
            with contextlib.suppress(Exception):
                await self.connection.close()


class SyncPsycopgBackend:
    """The contract's enqueue-only driver: a blocking psycopg connection used from a thread."""

    kind = DriverKind.PSYCOPG_SYNC

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        installation: Installation,
        label: str,
        *,
        owned: bool = False,
    ) -> None:
        self.connection = connection
        self.installation = installation
        self.label = label
        self._owned = owned
        self._lock = asyncio.Lock()

    @property
    def autocommit_problem(self) -> str | None:
        if self.connection.autocommit:
            return None
        return "this psycopg connection is not in autocommit mode, which PgQueuer requires"

    async def enable_autocommit(self) -> str | None:
        from psycopg.pq import TransactionStatus

        if self.connection.autocommit:
            return None
        status = self.connection.info.transaction_status
        if status != TransactionStatus.IDLE:
            return (
                f"the connection is inside a transaction ({status.name.lower()}): "
                "commit or roll it back first"
            )
        self.connection.autocommit = True
        return None

    def sync_queries(self) -> Any:
        """pgqueuer's SyncQueries (enqueue and queue_size); call from a worker thread."""
        from pgqueuer.adapters.persistence import qb
        from pgqueuer.db import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        return SyncQueries(
            SyncPsycopgDriver(self.connection), qbq=qb.QueryQueueBuilder(self.installation.settings)
        )

    async def enqueue(self, *arguments: Any) -> list[int]:
        """pgqueuer's batch enqueue in a worker thread, under the lock every statement on this
        connection takes (the depth refresh reads from it meanwhile)."""
        async with self._lock:
            ids = await asyncio.to_thread(lambda: self.sync_queries().enqueue(*arguments))
            return [int(i) for i in ids]

    async def queue_size(self) -> list[pgq_models.QueueStatistics]:
        """Current depth per entrypoint/status, without blocking the event loop."""
        if self.autocommit_problem:
            raise ConsoleError(self.autocommit_problem)
        async with self._lock:
            result: list[pgq_models.QueueStatistics] = await asyncio.to_thread(
                lambda: self.sync_queries().queue_size()
            )
            return result

    async def close(self) -> None:
        if self._owned:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.connection.close)


AnyBackend = Backend | SyncPsycopgBackend


def _asyncpg_module() -> Any:
    import asyncpg

    return asyncpg


async def _asyncpg_fetchval(connection: Any, query: str) -> Any:
    return await connection.fetchval(query)


async def _psycopg_fetchval(connection: Any, query: str) -> Any:
    cursor = await connection.execute(query)
    row = await cursor.fetchone()
    return row[0] if row else None


def _asyncpg_params(connection: Any) -> dict[str, Any]:
    """How to open another connection like a handed-in asyncpg one: its address, startup
    parameters (server_settings too), TLS and client configuration. asyncpg keeps them private,
    so anything missing is refused with the reason rather than guessed."""
    try:
        params = connection._params
        address = connection._addr
        config = connection._config
        record_class = connection._protocol.get_record_class()
    except AttributeError:
        raise ConsoleError(
            "this asyncpg version does not say how the connection was opened, so the console "
            "cannot open another like it (for consumers and listening)"
        ) from None
    if isinstance(address, str):  # a unix socket path: /dir/.s.PGSQL.<port>
        directory, _, name = address.rpartition("/")
        host, port = directory, int(name.rsplit(".", 1)[-1])
    else:
        host, port = address[0], address[1]
    sslmode: Any = getattr(params, "sslmode", None)
    level = int(sslmode) if sslmode is not None else 0
    # A context means "require" to asyncpg; below that, the mode's name keeps its leniency.
    ssl: Any = params.ssl if level >= 3 and params.ssl else (sslmode.name if level else False)
    extra = {
        name: value
        for name in ("target_session_attrs", "krbsrvname", "gsslib")
        if (value := getattr(params, name, None)) is not None
    }
    if str(getattr(params, "ssl_negotiation", "")) == "direct":
        extra["direct_tls"] = True
    return {
        **extra,
        "host": host,
        "port": port,
        "user": params.user,
        "password": params.password,
        "database": params.database,
        "ssl": ssl,
        "server_settings": dict(params.server_settings or {}),
        "command_timeout": config.command_timeout,
        "statement_cache_size": config.statement_cache_size,
        "max_cached_statement_lifetime": config.max_cached_statement_lifetime,
        "max_cacheable_statement_size": config.max_cacheable_statement_size,
        "connection_class": (
            type(connection)
            if isinstance(connection, _asyncpg_module().Connection)
            else _asyncpg_module().Connection
        ),
        "record_class": record_class,
    }


async def open_backend(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    secrets: tuple[str, ...],
    *,
    read_only: bool = False,
    pooler: Pooler = Pooler.AUTO,
    listen_dsn: str | None = None,
) -> AnyBackend:
    """Connect with the chosen driver; ConsoleError with a one-line message on failure.

    `pooler` AUTO probes the path (see `probe_live_path`); any other value is taken as said.
    """
    try:
        options, resolved = await asyncio.wait_for(
            resolve_connect_options(kind, dsn, pooler), 2 * CONNECT_TIMEOUT_S + PROBE_WAIT_S + 1
        )
        try:
            backend = await asyncio.wait_for(
                _connect(kind, dsn, installation, label, read_only, options),
                CONNECT_TIMEOUT_S + 1,
            )
        except Exception as exc:
            if not (options.startup_settings and startup_refused(exc)):
                raise
            # `pooler = none` set, yet something in front refuses the startup settings.
            options = ConnectOptions(False, options.prepared_statements)
            backend = await asyncio.wait_for(
                _connect(kind, dsn, installation, label, read_only, options),
                CONNECT_TIMEOUT_S + 1,
            )
        if isinstance(backend, Backend):
            backend._dsn = dsn
            backend.read_only = read_only
            backend.connect_options = options
            backend.pooler = resolved
            backend.listen_dsn = listen_dsn or None
        return backend
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(describe_connect_error(exc, label=label, secrets=secrets)) from None


async def _connect(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    read_only: bool,
    options: ConnectOptions = DIRECT,
) -> AnyBackend:
    settings = _server_settings(read_only, options)
    if kind is DriverKind.ASYNCPG:
        connection = await _asyncpg_connect(dsn, read_only, options)
        return AsyncpgBackend(connection, installation, label, owned=True)
    if kind is DriverKind.ASYNCPG_POOL:
        import asyncpg

        # max_size >= 2: the pool driver keeps one connection for LISTEN. Three stay open
        # (LISTEN, the overview, the screen on view) so that switching screens never waits for
        # a connection to be made; idle ones are not closed for the same reason.
        pool = await asyncpg.create_pool(
            dsn or None,
            min_size=3,
            max_size=4,
            max_inactive_connection_lifetime=0,
            server_settings=settings,
            timeout=CONNECT_TIMEOUT_S,
            statement_cache_size=100 if options.prepared_statements else 0,
        )
        return AsyncpgPoolBackend(pool, installation, label, owned=True)
    import psycopg

    params = _psycopg_params(read_only, options)
    if kind is DriverKind.PSYCOPG:
        async_connection = await _psycopg_connect(dsn, autocommit=True, **params)
        return PsycopgBackend(async_connection, installation, label, owned=True)
    sync_connection: psycopg.Connection[Any] = await asyncio.to_thread(
        lambda: psycopg.connect(dsn, autocommit=True, **params)
    )
    return SyncPsycopgBackend(sync_connection, installation, label, owned=True)


async def check_schema(backend: AnyBackend) -> None:
    """ConsoleError when the PgQueuer schema is missing or older than the installed pgqueuer."""
    from importlib.metadata import version

    if isinstance(backend, SyncPsycopgBackend) or backend.autocommit_problem:
        return  # checked once an async, autocommit connection is available
    settings = backend.installation.settings
    where = f"schema {settings.db_schema}" if settings.db_schema else "the search_path schema"
    flags = ""
    if settings.db_schema:
        flags += f" --schema {settings.db_schema}"
    if settings.prefix:
        flags += f" --prefix {settings.prefix}"
    try:
        installed = await backend.queries.schema_is_installed()
        plan = await backend.queries.plan_upgrade() if installed else None
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(
            f"cannot inspect the PgQueuer schema on {backend.label}: {' '.join(str(exc).split())}"
        ) from None
    if not installed:
        raise ConsoleError(
            f"PgQueuer is not installed in {where} of {backend.label}: "
            f"install it with `pgq{flags} install`"
        )
    if plan is not None and plan.statements:
        raise ConsoleError(
            f"the PgQueuer schema on {backend.label} is older than pgqueuer {version('pgqueuer')} "
            f"needs ({len(plan.statements)} changes): review with `pgq{flags} upgrade --plan`, "
            f"then run `pgq{flags} upgrade`"
        )
