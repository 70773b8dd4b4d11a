"""The psycopg backends: an async connection, or a sync one (enqueue only)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from pgqueuer.domain import models as pgq_models

from pgq_console.core.backend.base import (
    _PREAMBLE,
    ENQUEUE_ONLY,
    Backend,
    Capabilities,
    EventHandler,
    ListeningDriver,
    SerialisedDriver,
    Tx,
)
from pgq_console.core.backend.connect import CONNECT_TIMEOUT_S, _psycopg_connect, _psycopg_params
from pgq_console.core.backend.driver_errors import ConnectFailure, DriverErrors
from pgq_console.core.errors import ConsoleError
from pgq_console.core.pooler import ConnectOptions
from pgq_console.core.target import APPLICATION_NAME, DriverKind, Installation
from pgq_console.core.text import error_line

if TYPE_CHECKING:
    import psycopg
    from pgqueuer.queries import Queries, SyncQueries


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


class PsycopgErrors(DriverErrors):
    """What psycopg's exceptions mean (async and sync connections alike)."""

    def connect_failure(self, exc: BaseException) -> ConnectFailure | None:
        import psycopg

        if isinstance(exc, psycopg.ProgrammingError):
            return ConnectFailure.INVALID_DSN
        if isinstance(exc, psycopg.OperationalError):
            return ConnectFailure.FAILED
        return None

    def session_broken(self, exc: BaseException) -> bool:
        import psycopg

        return super().session_broken(exc) or isinstance(
            exc,
            psycopg.errors.DuplicatePreparedStatement
            | psycopg.errors.InvalidSqlStatementName
            | psycopg.errors.ProtocolViolation,
        )

    def connection_lost(self, exc: BaseException) -> bool:
        import psycopg

        return super().connection_lost(exc) or (
            isinstance(exc, psycopg.OperationalError)
            and not isinstance(exc, psycopg.errors.QueryCanceled)
        )

    def refused_after_connecting(self, exc: BaseException) -> bool:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return False
        return isinstance(exc, psycopg.DatabaseError)

    def server_refused(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.DatabaseError)

    def statement_cancelled(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.QueryCanceled)

    def permission_denied(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.InsufficientPrivilege)

    def connection_failed(self, exc: BaseException) -> bool:
        import psycopg

        return super().connection_failed(exc) or isinstance(exc, psycopg.OperationalError)


PSYCOPG_ERRORS = PsycopgErrors()


class PsycopgBackend(Backend):
    """An async psycopg connection for queries, and a second one of the console's for LISTEN."""

    kind = DriverKind.PSYCOPG
    errors: DriverErrors = PSYCOPG_ERRORS

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

    async def _abort_in_flight(self) -> bool:
        if not self._owned:
            return False  # the program's connection (see `Backend._abort_in_flight`)
        with contextlib.suppress(Exception):
            self.connection.pgconn.finish()  # no round trip: the network may be gone
        return True

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
        if self.one_statement_reads:  # autocommit: the statement is its own transaction
            async with self._lock:
                cursor = AsyncRawCursor(self.connection, row_factory=dict_row)
                await cursor.execute(sql, args or None)
                return list(await cursor.fetchall())
        async with self._lock, self.connection.transaction():
            cursor = AsyncRawCursor(self.connection, row_factory=dict_row)
            await cursor.execute("SET TRANSACTION READ ONLY")
            await cursor.execute(_PREAMBLE, self._preamble_args())
            await cursor.execute(sql, args or None)
            return list(await cursor.fetchall())

    def _make_listen_driver(self) -> ListeningDriver:  # pragma: no cover - the async opener
        raise NotImplementedError

    @staticmethod
    def _connection_open(connection: Any) -> bool:
        return not (connection.closed or connection.broken)

    def new_driver(self, connection: Any) -> ListeningDriver:
        from pgqueuer.db import PsycopgDriver

        return PsycopgDriver(connection)

    async def _connect_listen_dsn(self, dsn: str) -> Any:
        return await _psycopg_connect(
            dsn, autocommit=True, **_psycopg_params(False, ConnectOptions(False))
        )

    async def _connect_direct_listener(self, dsn: str) -> Any:
        import psycopg

        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=True,
            application_name=f"{APPLICATION_NAME}-listen",
            connect_timeout=int(CONNECT_TIMEOUT_S),
        )

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

    async def _open_listen_driver(self) -> ListeningDriver:
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


class SyncPsycopgBackend(Backend):
    """The contract's enqueue-only driver: a blocking psycopg connection used from a thread.

    It can enqueue and read the queue's depth (pgqueuer's SyncQueries); everything else (reads,
    LISTEN, consumers, guarded writes) it refuses, and `capabilities` says so up front.
    """

    kind = DriverKind.PSYCOPG_SYNC
    errors: DriverErrors = PSYCOPG_ERRORS

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        installation: Installation,
        label: str,
        *,
        owned: bool = False,
        reopen: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        super().__init__(installation, label)
        self.connection = connection
        self._owned = owned
        # Opens a connection like the first one (the console opened it from a DSN); None for a
        # connection the program handed in: that one is never replaced.
        self._reopen = reopen
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> Capabilities:
        return ENQUEUE_ONLY

    def _connection_lost(self) -> bool:
        return bool(self.connection.closed or self.connection.broken)

    async def _reopen_if_lost(self) -> None:
        """Under `_lock`: replace a closed or broken connection the console opened itself (a
        server restart). Raises the driver's error while the server is still away."""
        if self._reopen is None or not self._connection_lost():
            return
        fresh = await asyncio.to_thread(self._reopen)
        old, self.connection = self.connection, fresh
        with contextlib.suppress(Exception):
            await asyncio.to_thread(old.close)

    @property
    def can_listen(self) -> bool:
        return False

    @property
    def why_polling(self) -> str | None:
        return "psycopg-sync cannot LISTEN"

    async def listen(self, handler: EventHandler) -> None:
        raise self._refusal()

    def _refusal(self) -> ConsoleError:
        return ConsoleError(
            f"{self.kind.value} can only enqueue "
            "(restart with --driver asyncpg-pool, asyncpg or psycopg)"
        )

    @property
    def queries(self) -> Queries:
        raise self._refusal()

    async def _read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        raise self._refusal()

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]:
        raise self._refusal()

    def _make_listen_driver(self) -> ListeningDriver:
        raise self._refusal()

    async def new_connection(self) -> Any:
        raise self._refusal()

    def new_driver(self, connection: Any) -> ListeningDriver:
        raise self._refusal()

    async def _connect_listen_dsn(self, dsn: str) -> Any:
        raise self._refusal()

    async def _connect_direct_listener(self, dsn: str) -> Any:
        raise self._refusal()

    @staticmethod
    def _connection_open(connection: Any) -> bool:
        return not connection.closed

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

    def sync_queries(self) -> SyncQueries:
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
            if self._connection_lost():
                # Nothing can be sent on it, so the outcome is known (nothing written), unlike
                # a reply lost on the way back. The console's own connection is reopened first.
                if self._reopen is None:
                    raise ConsoleError(
                        "the connection to the database is lost: nothing was sent; "
                        "restart the console to reconnect"
                    )
                try:
                    await self._reopen_if_lost()
                except Exception as exc:
                    raise ConsoleError(
                        "the connection to the database is lost and reconnecting failed "
                        f"({error_line(exc)}): nothing was sent"
                    ) from exc
            ids = await asyncio.to_thread(lambda: self.sync_queries().enqueue(*arguments))
            return [int(i) for i in ids]

    async def queue_size(self) -> list[pgq_models.QueueStatistics]:
        """Current depth per entrypoint/status, without blocking the event loop."""
        if self.autocommit_problem:
            raise ConsoleError(self.autocommit_problem)
        async with self._lock:
            await self._reopen_if_lost()
            result: list[pgq_models.QueueStatistics] = await asyncio.to_thread(
                lambda: self.sync_queries().queue_size()
            )
            return result

    async def close(self) -> None:
        if self._owned:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.connection.close)


async def _psycopg_fetchval(connection: Any, query: str) -> Any:
    cursor = await connection.execute(query)
    row = await cursor.fetchone()
    return row[0] if row else None
