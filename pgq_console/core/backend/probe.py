"""How the console finds out what is in front of the database: the live-path probe (LISTEN,
NOTIFY from another connection, wait) and the connect options that follow from it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

from pgq_console.core.backend.classify import driver_errors
from pgq_console.core.backend.connect import _asyncpg_connect, _psycopg_connect, _psycopg_params
from pgq_console.core.pooler import DIRECT, PROBE_WAIT_S, ConnectOptions, startup_refused
from pgq_console.core.target import DriverKind, Pooler


async def resolve_connect_options(
    kind: DriverKind, dsn: str, pooler: Pooler
) -> tuple[ConnectOptions, Pooler]:
    """How to connect through what is in front of the database, and what that is."""
    if pooler is Pooler.NONE:
        return DIRECT, Pooler.NONE
    if pooler is Pooler.SESSION:
        return ConnectOptions(startup_settings=False), Pooler.SESSION
    if pooler is Pooler.TRANSACTION:
        return ConnectOptions(startup_settings=False, prepared_statements=False), pooler
    startup_settings = True
    try:
        try:
            delivered = await probe_live_path(kind, dsn, DIRECT)
        except Exception as exc:
            if not startup_refused(exc):
                raise
            startup_settings = False
            delivered = await probe_live_path(kind, dsn, ConnectOptions(startup_settings=False))
        if not delivered and startup_settings:
            # Nothing refused the startup settings: most likely a direct but busy server, so
            # one more chance before calling it transaction pooling.
            delivered = await probe_live_path(kind, dsn, DIRECT)
    except Exception as exc:
        if not driver_errors(kind).refused_after_connecting(exc):
            raise
        # Connected, but LISTEN/NOTIFY refused (a hot standby): nothing to learn from a probe.
        delivered = True
    if not delivered:
        return ConnectOptions(startup_settings=False, prepared_statements=False), Pooler.TRANSACTION
    if startup_settings:
        return DIRECT, Pooler.NONE
    return ConnectOptions(startup_settings=False), Pooler.SESSION


async def probe_live_path(kind: DriverKind, dsn: str, options: ConnectOptions) -> bool:
    """Whether a NOTIFY sent from one connection reaches a LISTEN on another, end to end.

    The only reliable test for transaction pooling (topologies.md): `pg_listening_channels()`
    may be answered by the very server connection that ran the LISTEN. Plain SQL without
    parameters, so nothing is prepared on a server connection the client does not keep.
    """
    token = secrets.token_hex(8)
    channel, payload = f"pgq_console_probe_{token}", token
    arrived = asyncio.Event()
    if kind in (DriverKind.PSYCOPG, DriverKind.PSYCOPG_SYNC):
        params = _psycopg_params(False, options)
        params["prepare_threshold"] = None
        listener: Any = await _psycopg_connect(dsn, autocommit=True, **params)
        try:
            await listener.execute(f"LISTEN {channel}")
            async with await _psycopg_connect(dsn, autocommit=True, **params) as notifier:
                await notifier.execute(f"NOTIFY {channel}, '{payload}'")

            # psycopg delivers notifications while a command runs or `notifies()` waits.
            async for notify in listener.notifies(timeout=PROBE_WAIT_S):
                if notify.payload == payload:
                    arrived.set()
                    break
            return arrived.is_set()
        finally:
            with contextlib.suppress(Exception):
                await listener.close()
    # Both connections are opened at once (over a remote link one connect less before the
    # answer); the first error is raised once both attempts ended, none left open.
    probe_options = ConnectOptions(options.startup_settings, prepared_statements=False)
    opened = await asyncio.gather(
        _asyncpg_connect(dsn, False, probe_options),
        _asyncpg_connect(dsn, False, probe_options),
        return_exceptions=True,
    )
    connections = [c for c in opened if not isinstance(c, BaseException)]
    try:
        for result in opened:
            if isinstance(result, BaseException):
                raise result
        listener, notifier = connections
        await listener.add_listener(
            channel, lambda *event: arrived.set() if event[3] == payload else None
        )
        await notifier.execute(f"NOTIFY {channel}, '{payload}'")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), PROBE_WAIT_S)
        return arrived.is_set()
    finally:
        for connection in connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
