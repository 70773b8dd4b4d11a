"""Opening a connection with each driver: connect arguments, startup settings, timeouts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pgq_console.core.pooler import (
    DIRECT,
    ConnectOptions,
)
from pgq_console.core.target import APPLICATION_NAME

DEFAULT_STATEMENT_TIMEOUT = timedelta(seconds=5)
CONNECT_TIMEOUT_S = 10.0


def _timeout_setting(timeout: timedelta) -> str:
    return f"{int(timeout.total_seconds() * 1000)}ms"


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
