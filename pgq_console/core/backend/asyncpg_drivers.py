"""The asyncpg backends: one connection, or a pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pgq_console.core.backend.base import (
    _PREAMBLE,
    Backend,
    ListeningDriver,
    SerialisedDriver,
    Tx,
)
from pgq_console.core.backend.connect import CONNECT_TIMEOUT_S, _asyncpg_connect, _server_settings
from pgq_console.core.backend.driver_errors import ConnectFailure, DriverErrors
from pgq_console.core.errors import ConsoleError
from pgq_console.core.pooler import DIRECT, ConnectOptions, startup_refused
from pgq_console.core.target import DriverKind, Installation

if TYPE_CHECKING:
    import asyncpg
    from pgqueuer.queries import Queries


class _AsyncpgTx:
    def __init__(self, connection: Any) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._connection.fetch(sql, *args)]

    async def execute(self, sql: str, *args: object) -> str:
        return str(await self._connection.execute(sql, *args))


class AsyncpgErrors(DriverErrors):
    """What asyncpg's exceptions mean."""

    def connect_failure(self, exc: BaseException) -> ConnectFailure | None:
        import asyncpg

        if isinstance(exc, asyncpg.InvalidPasswordError):
            return ConnectFailure.PASSWORD
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return ConnectFailure.DATABASE
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
            return ConnectFailure.ROLE
        if isinstance(exc, asyncpg.PostgresError):
            return ConnectFailure.SERVER_ERROR
        return None

    def session_broken(self, exc: BaseException) -> bool:
        import asyncpg

        return super().session_broken(exc) or isinstance(
            exc,
            asyncpg.DuplicatePreparedStatementError
            | asyncpg.InvalidSQLStatementNameError
            | asyncpg.ProtocolViolationError,
        )

    def connection_lost(self, exc: BaseException) -> bool:
        import asyncpg

        return super().connection_lost(exc) or isinstance(
            exc,
            asyncpg.InterfaceError
            | asyncpg.PostgresConnectionError
            | asyncpg.AdminShutdownError
            | asyncpg.CannotConnectNowError
            | asyncpg.CrashShutdownError,
        )

    def refused_after_connecting(self, exc: BaseException) -> bool:
        import asyncpg

        if isinstance(
            exc,
            asyncpg.InvalidAuthorizationSpecificationError
            | asyncpg.PostgresConnectionError
            | asyncpg.InvalidCatalogNameError
            | asyncpg.ProtocolViolationError,
        ):
            return False
        return isinstance(exc, asyncpg.PostgresError)

    def server_refused(self, exc: BaseException) -> bool:
        import asyncpg

        return isinstance(exc, asyncpg.PostgresError)

    def statement_cancelled(self, exc: BaseException) -> bool:
        import asyncpg

        return isinstance(exc, asyncpg.QueryCanceledError)

    def permission_denied(self, exc: BaseException) -> bool:
        import asyncpg

        return isinstance(exc, asyncpg.InsufficientPrivilegeError)

    def connection_failed(self, exc: BaseException) -> bool:
        import asyncpg

        return super().connection_failed(exc) or isinstance(exc, asyncpg.InterfaceError)


ASYNCPG_ERRORS = AsyncpgErrors()


class _AsyncpgFamily(Backend):
    """What both asyncpg backends share: asyncpg connections and pgqueuer's AsyncpgDriver."""

    errors: DriverErrors = ASYNCPG_ERRORS

    @staticmethod
    def _connection_open(connection: Any) -> bool:
        return not connection.is_closed()

    def new_driver(self, connection: Any) -> ListeningDriver:
        from pgqueuer.db import AsyncpgDriver

        return AsyncpgDriver(connection)

    async def _connect_listen_dsn(self, dsn: str) -> Any:
        return await _asyncpg_connect(dsn, False, ConnectOptions(False))

    async def _connect_direct_listener(self, dsn: str) -> Any:
        try:
            return await _asyncpg_connect(dsn, False, DIRECT)
        except Exception as exc:
            if not startup_refused(exc):
                raise
            # listen_dsn through a session pooler: application_name only.
            return await _asyncpg_connect(dsn, False, ConnectOptions(False))


class AsyncpgBackend(_AsyncpgFamily):
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
        if self.one_statement_reads:
            async with self._lock:
                return [dict(row) for row in await self.connection.fetch(sql, *args)]
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

    async def _abort_in_flight(self) -> bool:
        if not self._owned:
            return False  # the program's connection (see `Backend._abort_in_flight`)
        with contextlib.suppress(Exception):
            self.connection.terminate()
        return True

    def listener_alive(self) -> bool:
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        return self._listen_driver is not None and not self.connection.is_closed()

    def _make_listen_driver(self) -> ListeningDriver:
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


class AsyncpgPoolBackend(_AsyncpgFamily):
    """An asyncpg pool; the pool driver keeps one of its connections for LISTEN."""

    kind = DriverKind.ASYNCPG_POOL
    PARALLEL_ENQUEUE = 2
    PARALLEL_READS = True

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
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def queries(self) -> Queries:
        return self._queries

    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        if self.one_statement_reads:
            return await self._read_alone(sql, *args)
        # The pool replaces connections it finds closed when they are acquired.
        async with self.pool.acquire() as connection:
            self._in_flight.add(connection)
            try:
                async with connection.transaction(readonly=True):
                    await connection.execute(_PREAMBLE, *self._preamble_args())
                    return [dict(row) for row in await connection.fetch(sql, *args)]
            finally:
                self._in_flight.discard(connection)

    async def _read_alone(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """One statement, one round trip; the pool's reset on release (UNLISTEN, RESET ALL...:
        one more round trip) runs aside, so the rows are back after one."""
        connection = await self.pool.acquire()
        self._in_flight.add(connection)
        try:
            return [dict(row) for row in await connection.fetch(sql, *args)]
        finally:
            self._in_flight.discard(connection)
            task = asyncio.ensure_future(self.pool.release(connection))
            self._releasing.add(task)
            task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled():
            task.exception()  # a failed reset terminated the connection: the pool replaces it

    async def _abort_in_flight(self) -> bool:
        # Also from a handed-in pool: the connection is out of the pool, held by this read
        # alone, and the pool replaces it.
        hung = list(self._in_flight)
        for connection in hung:
            with contextlib.suppress(Exception):
                connection.terminate()
        return bool(hung)

    def listener_alive(self) -> bool:
        if self.listen_dsn is not None:
            return self._direct_listen_alive()
        driver = self._listen_driver
        connection = getattr(driver, "_listener_connection", None) if driver else None
        try:
            return connection is not None and not connection.is_closed()
        except Exception:  # asyncpg: a proxy already released to the pool
            return False

    def _make_listen_driver(self) -> ListeningDriver:
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
        # pgqueuer's AsyncpgPoolDriver keeps its LISTEN connection in a private attribute.
        driver: Any
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
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=5)
        if self._owned:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)


def _asyncpg_module() -> Any:
    import asyncpg

    return asyncpg


async def _asyncpg_fetchval(connection: Any, query: str) -> Any:
    return await connection.fetchval(query)


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
