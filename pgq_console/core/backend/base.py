"""The backend contract every driver implements: one read-only transaction per read,
pgqueuer's Queries for writes, LISTEN, reconnecting."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from pgqueuer.core.listeners import initialize_notice_event_listener
from pgqueuer.domain import models as pgq_models
from pgqueuer.domain.types import Channel
from pgqueuer.ports.driver import Driver, ListenerRemover, NotifyCallback, TaskManagerPort

from pgq_console.core.backend.connect import DEFAULT_STATEMENT_TIMEOUT, _timeout_setting
from pgq_console.core.backend.driver_errors import DatabaseTimeout, DriverErrors
from pgq_console.core.errors import ConsoleError
from pgq_console.core.first_reading import FirstReading
from pgq_console.core.pooler import DIRECT
from pgq_console.core.target import APPLICATION_NAME, DriverKind, Installation, Pooler

if TYPE_CHECKING:
    from pgqueuer.queries import Queries

    from pgq_console.core.replica import ReplicaLink

EventHandler = Callable[[pgq_models.AnyEvent], None]
# Past the statement timeout the server should have cancelled the query itself; this much later
# the connection is presumed cut and is reset.
CLIENT_GRACE_S = 3.0


class Tx(Protocol):
    """One open transaction on one connection; `$1` placeholders for every driver."""

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, *args: object) -> str: ...


READ_ONLY_REFUSAL = "read-only mode: the console does not write to this database"


class ListeningDriver(Driver, ListenerRemover, Protocol):
    """pgqueuer's Driver port that can also take a listener back (every pgqueuer driver can)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend's driver can do: callers ask this, never which class the backend is."""

    # Reads in transactions: the live screens, previews and guarded writes.
    can_read: bool = True
    # LISTEN works (not through transaction pooling without a listen_dsn).
    can_listen: bool = True
    # In-process consumers: an async connection of their own per consumer.
    can_run_consumers: bool = True
    # Enqueue batches that may be in flight at once (a pool takes two: while the server
    # inserts one, the client encodes the next; one connection serialises anyway).
    parallel_enqueue: int = 1


# psycopg-sync: pgqueuer's SyncDriver enqueues and reads the depth, nothing else.
ENQUEUE_ONLY = Capabilities(can_read=False, can_listen=False, can_run_consumers=False)


class Backend(ABC):
    """What the console needs from a database connection, whatever the driver.

    Not every driver can do everything (psycopg-sync only enqueues): `capabilities` says what
    this one can; what it cannot do raises ConsoleError with the reason.
    """

    kind: DriverKind
    # What this driver's exceptions mean (reconnect, retry, report).
    errors: DriverErrors
    # Enqueue batches in flight at once (`Capabilities.parallel_enqueue`).
    PARALLEL_ENQUEUE = 1
    # Reads in flight at once go to different connections (a pool) instead of taking turns.
    PARALLEL_READS = False

    def __init__(self, installation: Installation, label: str, *, read_only: bool = False) -> None:
        self.installation = installation
        self.label = label
        self.statement_timeout = DEFAULT_STATEMENT_TIMEOUT
        # Connections the console opens itself are also read-only on the server when set.
        self.read_only = read_only
        self._listen_driver: ListeningDriver | None = None
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
        # The overview's first snapshot is read before the pulse's and the hidden screens'
        # first reads take the connections (core/first_reading.py).
        self.first_reading = FirstReading()
        # Resets of connections that gave no answer (`read`), and the last one's reason: reads
        # beside the hung one fail on the reset and say that reason, not "connection closed".
        self._hang_resets = 0
        self._hang_reason = ""

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(can_listen=self.can_listen, parallel_enqueue=self.PARALLEL_ENQUEUE)

    @property
    def can_listen(self) -> bool:
        """Whether LISTEN can work: not on a transaction-pooled connection without listen_dsn."""
        return self.pooler is not Pooler.TRANSACTION or self.listen_dsn is not None

    @property
    def one_statement_reads(self) -> bool:
        """Whether a read can be its one statement alone: one round trip instead of four
        (BEGIN READ ONLY, the preamble, the query, COMMIT).

        Only on connections the console opened itself straight to the server, where the
        startup packet already set statement_timeout and application_name for the session (and
        default_transaction_read_only in read-only mode). A handed-in connection's session is
        not the console's to set; behind PgBouncer startup settings are refused, and transaction
        pooling hands each transaction any server session: there the per-transaction form stays.
        The reads are the console's own SELECTs, so the READ ONLY transaction they lose was a
        second guard, not the only one (writes go through `transaction`).
        """
        return (
            self._dsn is not None
            and self.pooler is Pooler.NONE
            and self.connect_options.startup_settings
            and self.statement_timeout == DEFAULT_STATEMENT_TIMEOUT
            and _READ_TIMEOUT.get() is None
        )

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

    async def enqueue(self, *arguments: Any) -> list[int]:
        """pgqueuer's batch enqueue (`Queries.enqueue`'s list arguments); the job ids."""
        return [int(i) for i in await self.queries.enqueue(*arguments)]

    async def queue_size(self) -> list[pgq_models.QueueStatistics]:
        """Current depth per entrypoint and status (pgqueuer's `queue_size`)."""
        return await self.queries.queue_size()

    async def read(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """Run one SELECT with the console's statement timeout: in a read-only transaction that
        sets it, or alone where the session has it already (`one_statement_reads`).

        A dead connection is replaced first; no answer within the statement timeout plus
        `CLIENT_GRACE_S` raises DatabaseTimeout and resets the connection that hung; reads
        that fail on that reset (beside it, or waiting their turn on one connection) raise
        DatabaseTimeout too, saying so.
        """
        await self.ensure_connected()
        deadline = self.read_timeout.total_seconds() + CLIENT_GRACE_S
        resets = self._hang_resets
        task = asyncio.ensure_future(self._read(sql, *args))
        try:
            done, _ = await asyncio.wait({task}, timeout=deadline)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            exc = task.exception()
            if exc is not None and self.errors.session_broken(exc):
                await self.discard_connections()
            if exc is not None and self._hang_resets != resets and self.errors.connection_lost(exc):
                # Reset under this read (or while it waited its turn on one connection)
                # because another read got no answer: that is what happened, not "connection
                # is closed" (the overview said so when a windows read hung before its depth).
                raise DatabaseTimeout(f"{self._hang_reason}; the connection was reset") from exc
            return task.result()
        # Counted before the reset: the reads beside this one may fail on it at once.
        self._hang_resets += 1
        self._hang_reason = f"{self.label} did not answer within {deadline:g}s"
        reset = await self._abort_in_flight()
        task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 2)
        outcome = "the connection was reset" if reset else "the read was cancelled"
        raise DatabaseTimeout(f"{self.label} did not answer within {deadline:g}s; {outcome}")

    @property
    def read_timeout(self) -> timedelta:
        """The statement timeout of the read under way (`read_long`'s, else the console's)."""
        return _READ_TIMEOUT.get() or self.statement_timeout

    async def read_long(
        self, sql: str, *args: object, statement_timeout: timedelta
    ) -> list[dict[str, Any]]:
        """`read` allowed `statement_timeout` instead of the console's: for the few reads whose
        cost grows with the tables and that run aside, never in a key's way (the exact depth
        count: 3-5 s at 10M rows with no index on held jobs, over the 5 s on a busy server).
        Always the per-transaction form, which sets the timeout for its transaction only."""
        token = _READ_TIMEOUT.set(statement_timeout)
        try:
            return await self.read(sql, *args)
        finally:
            _READ_TIMEOUT.reset(token)

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

    async def _abort_in_flight(self) -> bool:
        """Terminate the connections of reads that hung (pools: the acquired ones); whether
        any was. A connection the program handed in is never terminated: it is the program's
        (its own queries, its LISTENs); the read is only cancelled."""
        return False

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
        return self._connection_open(connection)

    @staticmethod
    @abstractmethod
    def _connection_open(connection: Any) -> bool:
        """Whether a connection of this driver is open (not closed, not broken)."""

    @abstractmethod
    def _make_listen_driver(self) -> ListeningDriver: ...

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
            if self.errors.session_broken(exc):
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
        return await self._connect_listen_dsn(self.listen_dsn)

    @abstractmethod
    async def _connect_listen_dsn(self, dsn: str) -> Any:
        """A connection from `listen_dsn` for `new_listen_connection` (no startup settings:
        the DSN may go through a session pooler)."""

    @abstractmethod
    async def _connect_direct_listener(self, dsn: str) -> Any:
        """The connection the console's own LISTEN uses when `listen_dsn` is set."""

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

    @abstractmethod
    def new_driver(self, connection: Any) -> ListeningDriver:
        """pgqueuer's Driver over a connection from `new_connection`."""

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
        if self._listen_driver is None:
            connection = await self._connect_direct_listener(self.listen_dsn or "")
            driver = self.new_driver(connection)
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

    async def _open_listen_driver(self) -> ListeningDriver:
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

    def _preamble_args(self) -> tuple[str, str, str | None]:
        # `read_long`'s reads (the exact count) run aside and nobody waits for them: without
        # parallel workers. On the 10M bench the exact count took as long serial as with its 2
        # workers (2.1-2.2 s on 2 cores), and the three processes took both cores from
        # PgQueuer's workers and the console starting (first numbers 1.14-1.32 s, 0.92-1.03 s
        # serial). Other reads keep the server's setting (NULL: left as it is).
        serial = "0" if _READ_TIMEOUT.get() is not None else None
        return _timeout_setting(self.read_timeout), APPLICATION_NAME, serial


# `read_long`'s timeout, for the read it runs (the task `read` starts copies this context).
_READ_TIMEOUT: ContextVar[timedelta | None] = ContextVar("read_timeout", default=None)

# set_config(..., true) is transaction-local: a handed-in connection's session is left as it was.
_PREAMBLE = (
    "SELECT set_config('statement_timeout', $1, true), set_config('application_name', $2, true),"
    " set_config('max_parallel_workers_per_gather',"
    " coalesce($3::text, current_setting('max_parallel_workers_per_gather')), true)"
)


class SerialisedDriver:
    """pgqueuer's Driver over a connection the console shares between screens and writes.

    Every statement takes the backend's one lock (the same one `read` and `transaction` hold),
    so pgqueuer's own queries (an enqueue, LISTEN) never run inside another screen's read-only
    transaction nor while asyncpg is busy with another statement. The listeners it adds are
    remembered so that exactly those, and no one else's, are removed on exit.
    """

    def __init__(self, inner: ListeningDriver, lock: Callable[[], asyncio.Lock]) -> None:
        self.inner = inner
        self._lock = lock
        self.listeners: list[tuple[str, NotifyCallback]] = []

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

    async def add_listener(self, channel: str, callback: NotifyCallback) -> None:
        async with self._lock():
            await self.inner.add_listener(channel, callback)
        self.listeners.append((channel, callback))

    async def remove_listener(self, channel: str, callback: NotifyCallback) -> None:
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
    def tm(self) -> TaskManagerPort:
        return self.inner.tm

    async def __aenter__(self) -> SerialisedDriver:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)
