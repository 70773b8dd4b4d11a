"""Opening a backend with the chosen driver, and checking the PgQueuer schema it finds."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from pgq_console.core.backend.asyncpg_drivers import (
    ASYNCPG_ERRORS,
    AsyncpgBackend,
    AsyncpgPoolBackend,
)
from pgq_console.core.backend.base import Backend
from pgq_console.core.backend.connect import (
    CONNECT_TIMEOUT_S,
    _asyncpg_connect,
    _psycopg_connect,
    _psycopg_params,
    _server_settings,
)
from pgq_console.core.backend.driver_errors import AnyDriverErrors, DriverErrors
from pgq_console.core.backend.psycopg_drivers import (
    PSYCOPG_ERRORS,
    PsycopgBackend,
    SyncPsycopgBackend,
)
from pgq_console.core.errors import ConsoleError, SchemaNotReady, describe_connect_error
from pgq_console.core.pooler import (
    DIRECT,
    PROBE_WAIT_S,
    ConnectOptions,
    resolve_connect_options,
    startup_refused,
)
from pgq_console.core.target import DriverKind, Installation, Pooler

if TYPE_CHECKING:
    import psycopg
    from pgqueuer.domain.schema.model import Plan
    from pgqueuer.queries import Queries

# The rules of every driver family, for an exception whose driver is not known.
ANY_DRIVER_ERRORS = AnyDriverErrors(ASYNCPG_ERRORS, PSYCOPG_ERRORS)


def driver_errors(kind: DriverKind) -> DriverErrors:
    """What a driver's exceptions mean, before any backend of it exists (connecting)."""
    asyncpg = kind in (DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL)
    return ASYNCPG_ERRORS if asyncpg else PSYCOPG_ERRORS


# Every driver's backend is a `Backend` (`capabilities` says what it can do); the old name stays.
AnyBackend = Backend


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
) -> Backend:
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
        if backend.capabilities.can_read:
            backend._dsn = dsn
            backend.read_only = read_only
            backend.connect_options = options
            backend.pooler = resolved
            backend.listen_dsn = listen_dsn or None
        return backend
    except ConsoleError:
        raise
    except Exception as exc:
        message = describe_connect_error(
            exc, label=label, secrets=secrets, errors=driver_errors(kind)
        )
        raise ConsoleError(message) from None


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


async def _inspect_schema(queries: Queries) -> tuple[bool, Plan | None]:
    """Whether the schema is installed, and the upgrade plan when it is: PgQueuer's
    `schema_is_installed` and `plan_upgrade` from one reading of the catalog (each reads it
    whole, 7 statements: over 50 ms that was 2 s before the first paint, now half)."""
    from pgqueuer.adapters.persistence import schema_inspect, schema_plan
    from pgqueuer.domain.schema.declaration import target

    settings = queries.qbe.settings
    live = await schema_inspect.inspect(queries.driver, settings)
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
        installed, plan = await _inspect_schema(backend.queries)
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(
            f"cannot inspect the PgQueuer schema on {backend.label}: {' '.join(str(exc).split())}"
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
