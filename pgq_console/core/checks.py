"""Small reads for the one-shot modes (`snapshot`, `check`): the database's clock and stale jobs."""

from __future__ import annotations

from datetime import datetime, timedelta

from pgq_console.core.backend import Backend


async def database_now(backend: Backend) -> datetime:
    """The server's now(): ages in scripts do not depend on the client's clock."""
    rows = await backend.read("SELECT now() AS now")
    now = rows[0]["now"]
    assert isinstance(now, datetime)
    return now


async def count_stale(backend: Backend, older_than: timedelta) -> int:
    """Picked jobs whose heartbeat is older than `older_than` (as `pgq stale` counts them)."""
    table = backend.installation.settings.qualified.queue_table
    rows = await backend.read(
        f"SELECT count(*) AS n FROM {table} "
        "WHERE status = 'picked' AND heartbeat < now() - $1::interval",
        older_than,
    )
    return int(rows[0]["n"])
