"""Connecting to a resolved target (and its replica, when one is configured)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgq_console.config.resolution import Target
from pgq_console.config.secrets import _dsn_password, with_password
from pgq_console.core.target import DriverKind, display_dsn, dsn_parts, secrets_of

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend
    from pgq_console.core.replica import ReplicaLink
    from pgq_console.core.target import Installation


async def open_target(target: Target, *, check: bool = True) -> Backend:
    """Connect to `target` (password fetched off the event loop) and check its schema."""
    import asyncio

    from pgq_console.core.backend import check_schema, open_backend
    from pgq_console.core.target import Installation, parse_driver, parse_pooler

    kind = parse_driver(target.driver)
    installation = Installation.select(
        schema=target.schema, prefix=target.prefix, channel=target.channel
    )
    dsn, label, secrets = await asyncio.to_thread(target.connect_dsn)
    listen_dsn = _side_dsn(target.listen_dsn, target.password)
    replica_dsn = _side_dsn(target.replica_dsn, target.password)
    for side in (listen_dsn, replica_dsn):
        secrets = (*secrets, *secrets_of(side)) if side else secrets
    backend = await open_backend(
        kind,
        dsn,
        installation,
        label,
        secrets,
        read_only=target.read_only,
        pooler=parse_pooler(target.pooler),
        listen_dsn=listen_dsn,
        # Checked while the pooler probe runs, on the connections that will be used.
        check=check_schema if check else None,
    )
    if replica_dsn and backend.capabilities.can_read:
        backend.replica = replica_link(
            kind, replica_dsn, installation, secrets, target.replica_max_lag
        )
    return backend


def _side_dsn(dsn: str | None, password: str | None) -> str | None:
    """A listen or replica DSN, with the main password when it names none."""
    if not dsn:
        return None
    dsn_parts(dsn)  # bad syntax: one line
    if password and not _dsn_password(dsn):
        return with_password(dsn, password)
    return dsn


def replica_link(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    secrets: tuple[str, ...],
    max_lag_s: float | None = None,
) -> ReplicaLink:
    """The standby for heavy reads, connected on first use (a standby down at start is retried)."""
    from pgq_console.core.backend import open_backend
    from pgq_console.core.replica import DEFAULT_MAX_LAG_S, ReplicaLink
    from pgq_console.core.target import Pooler

    label = f"replica {display_dsn(dsn)}"

    async def connect() -> Backend:
        # No probe (a standby refuses NOTIFY): options that work through any pooler.
        backend = await open_backend(
            kind, dsn, installation, label, secrets, read_only=True, pooler=Pooler.TRANSACTION
        )
        return backend

    return ReplicaLink(connect, max_lag_s=max_lag_s or DEFAULT_MAX_LAG_S)
