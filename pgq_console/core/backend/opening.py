"""Opening a backend with the chosen driver, and checking the PgQueuer schema it finds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pgq_console.core.backend.asyncpg_drivers import (
    AsyncpgBackend,
    AsyncpgPoolBackend,
)
from pgq_console.core.backend.base import Backend
from pgq_console.core.backend.classify import (
    describe_connect_error,
    driver_errors,
)
from pgq_console.core.backend.connect import (
    CONNECT_TIMEOUT_S,
    _asyncpg_connect,
    _psycopg_connect,
    _psycopg_params,
    _server_settings,
)
from pgq_console.core.backend.probe import resolve_connect_options
from pgq_console.core.backend.psycopg_drivers import (
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.errors import ConsoleError, SchemaNotReady
from pgq_console.core.pooler import (
    DIRECT,
    PROBE_WAIT_S,
    ConnectOptions,
    startup_refused,
)
from pgq_console.core.target import DriverKind, Installation, Pooler
from pgq_console.core.text import one_line

if TYPE_CHECKING:
    import psycopg
    from pgqueuer.domain.schema.model import Plan

SchemaCheck = Callable[[Backend], Awaitable[None]]


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
    check: SchemaCheck | None = None,
) -> Backend:
    """Connect with the chosen driver; ConsoleError with a one-line message on failure.

    `pooler` AUTO probes the path (see `probe_live_path`); any other value is taken as said.
    `check` (the schema check) runs on the new backend before it is returned; its ConsoleError
    is raised as it is, the backend closed. With AUTO the connections are opened and checked
    as for a direct server while the probe runs (most servers are): over a 50 ms link the probe
    is ~0.3 s of round trips the check no longer waits for. Should the probe find a pooler, that
    backend is closed and another opened with the options the pooler allows.
    """
    try:
        if pooler is Pooler.AUTO:
            return await _open_probing(kind, dsn, installation, label, read_only, listen_dsn, check)
        options, resolved = await resolve_connect_options(kind, dsn, pooler)
        return await _open_with(
            kind, dsn, installation, label, read_only, options, resolved, listen_dsn, check
        )
    except ConsoleError:
        raise
    except Exception as exc:
        message = describe_connect_error(
            exc, label=label, secrets=secrets, errors=driver_errors(kind)
        )
        raise ConsoleError(message) from None


async def _open_probing(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    read_only: bool,
    listen_dsn: str | None,
    check: SchemaCheck | None,
) -> Backend:
    """The probe, and meanwhile the backend opened (and checked) as if it found no pooler."""
    probe = asyncio.ensure_future(
        asyncio.wait_for(
            resolve_connect_options(kind, dsn, Pooler.AUTO),
            2 * CONNECT_TIMEOUT_S + PROBE_WAIT_S + 1,
        )
    )
    early = asyncio.ensure_future(
        _connect_and_check(kind, dsn, installation, label, read_only, DIRECT, listen_dsn, check)
    )
    try:
        options, resolved = await probe
    except BaseException:
        probe.cancel()
        await _discard(early)  # the probe's error is the one to report (it connected first)
        raise
    if options == DIRECT and resolved is Pooler.NONE:
        outcome = await _outcome(early)
        if isinstance(outcome, Backend):
            return outcome
        if isinstance(outcome, _CheckFailed):
            raise outcome.error  # the schema check's own answer: connecting again changes nothing
        # Connecting failed although the probe connected: the usual path, with its fallback.
    else:
        await _discard(early)
    return await _open_with(
        kind, dsn, installation, label, read_only, options, resolved, listen_dsn, check
    )


class _CheckFailed:
    """The schema check's exception (the connection itself worked)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _connect_and_check(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    read_only: bool,
    options: ConnectOptions,
    listen_dsn: str | None,
    check: SchemaCheck | None,
) -> Backend | _CheckFailed:
    backend = await asyncio.wait_for(
        _connect(kind, dsn, installation, label, read_only, options), CONNECT_TIMEOUT_S + 1
    )
    _set_up(backend, dsn, read_only, options, Pooler.NONE, listen_dsn)
    if check is not None:
        try:
            await check(backend)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await backend.close()
            if not isinstance(exc, Exception):
                raise
            return _CheckFailed(exc)
    return backend


async def _outcome(task: asyncio.Future[Backend | _CheckFailed]) -> Backend | _CheckFailed | None:
    """What the early open came to; None when connecting failed."""
    try:
        return await task
    except Exception:
        return None


async def _discard(task: asyncio.Future[Backend | _CheckFailed]) -> None:
    """Let the early open finish (cancelling asyncpg's pool midway would leave its connections
    open) and close what it opened."""
    outcome = await _outcome(task)
    if isinstance(outcome, Backend):
        with contextlib.suppress(Exception):
            await outcome.close()


async def _open_with(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    read_only: bool,
    options: ConnectOptions,
    resolved: Pooler,
    listen_dsn: str | None,
    check: SchemaCheck | None,
) -> Backend:
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
    _set_up(backend, dsn, read_only, options, resolved, listen_dsn)
    if check is not None:
        try:
            await check(backend)
        except BaseException:
            with contextlib.suppress(Exception):
                await backend.close()
            raise
    return backend


def _set_up(
    backend: Backend,
    dsn: str,
    read_only: bool,
    options: ConnectOptions,
    resolved: Pooler,
    listen_dsn: str | None,
) -> None:
    if backend.capabilities.can_read:
        backend._dsn = dsn
        backend.read_only = read_only
        backend.connect_options = options
        backend.pooler = resolved
        backend.listen_dsn = listen_dsn or None


async def _connect(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    label: str,
    read_only: bool,
    options: ConnectOptions = DIRECT,
) -> Backend:
    settings = _server_settings(read_only, options)
    if kind is DriverKind.ASYNCPG:
        connection = await _asyncpg_connect(dsn, read_only, options)
        return AsyncpgBackend(connection, installation, label, owned=True)
    if kind is DriverKind.ASYNCPG_POOL:
        import asyncpg

        # max_size >= 2: the pool driver keeps one connection for LISTEN. Four are opened up
        # front (LISTEN, and the overview's first reading: its first look, exact count and
        # windows at once; then the overview and the screen on view) so that neither the
        # first numbers nor switching screens wait for a connection to be made; idle ones are
        # not closed for the same reason.
        # No `init`: the overview's first reading sends its integer arrays as text
        # (`stats.int_array`), so nothing needs asyncpg's catalog lookup of int8[] / int4[]
        # (6-7 round trips, 0.35 s at 50 ms RTT) before the first numbers; a statement that
        # needs them has asyncpg look them up on its connection, once.
        pool = await asyncpg.create_pool(
            dsn or None,
            min_size=0,  # opened below, side by side
            max_size=POOL_MAX_SIZE,
            max_inactive_connection_lifetime=0,
            server_settings=settings,
            timeout=CONNECT_TIMEOUT_S,
            statement_cache_size=100 if options.prepared_statements else 0,
        )
        try:
            await open_side_by_side(pool, POOL_OPEN_SIZE)
        except BaseException:
            pool.terminate()
            raise
        return AsyncpgPoolBackend(pool, installation, label, owned=True)
    import psycopg

    params = _psycopg_params(read_only, options)
    if kind is DriverKind.PSYCOPG:
        async_connection = await _psycopg_connect(dsn, autocommit=True, **params)
        return PsycopgBackend(async_connection, installation, label, owned=True)

    def connect_sync() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, autocommit=True, **params)

    sync_connection = await asyncio.to_thread(connect_sync)
    return SyncPsycopgBackend(sync_connection, installation, label, owned=True, reopen=connect_sync)


POOL_OPEN_SIZE = 4
POOL_MAX_SIZE = 5


async def open_side_by_side(pool: Any, size: int) -> None:
    """Open `size` connections of an asyncpg pool at once.

    asyncpg's own `min_size` opens the first connection alone (errors show early), then the
    others: two connects one after the other before the schema check. Here all are acquired
    at once; the first error is raised once every attempt ended (none left half open).
    """
    results = await asyncio.gather(*(pool.acquire() for _ in range(size)), return_exceptions=True)
    connections = [r for r in results if not isinstance(r, BaseException)]
    await asyncio.gather(*(pool.release(c) for c in connections), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _inspect_schema(backend: Backend) -> tuple[bool, Plan | None]:
    """Whether the schema is installed, and the upgrade plan when it is: PgQueuer's
    `schema_is_installed` and `plan_upgrade` from one reading of the catalog, in one statement
    (`catalog.read_schema`; PgQueuer's own reading is 7 statements one after another, 1.4 s
    over a 50 ms link)."""
    from pgqueuer.adapters.persistence import schema_plan
    from pgqueuer.domain.schema.declaration import target

    from pgq_console.core.backend.catalog import read_schema

    settings = backend.installation.settings
    live = await read_schema(backend, settings)
    if not (live.tables or live.enums):
        return False, None
    return True, schema_plan.plan(live, target(settings), settings)


async def check_schema(backend: Backend) -> None:
    """ConsoleError when the PgQueuer schema is missing or older than the installed pgqueuer."""
    from importlib.metadata import version

    if not backend.capabilities.can_read or backend.autocommit_problem:
        return  # checked once an async, autocommit connection is available
    settings = backend.installation.settings
    where = f"schema {settings.db_schema}" if settings.db_schema else "the search_path schema"
    flags = ""
    if settings.db_schema:
        flags += f" --schema {settings.db_schema}"
    if settings.prefix:
        flags += f" --prefix {settings.prefix}"
    try:
        installed, plan = await _inspect_schema(backend)
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(
            f"cannot inspect the PgQueuer schema on {backend.label}: {one_line(exc)}"
        ) from None
    if not installed:
        raise SchemaNotReady(
            f"PgQueuer is not installed in {where} of {backend.label}: "
            f"install it with `pgq{flags} install`"
        )
    if plan is not None and plan.statements:
        raise SchemaNotReady(
            f"the PgQueuer schema on {backend.label} is older than pgqueuer {version('pgqueuer')} "
            f"needs ({len(plan.statements)} changes): review with `pgq{flags} upgrade --plan`, "
            f"then run `pgq{flags} upgrade`"
        )
