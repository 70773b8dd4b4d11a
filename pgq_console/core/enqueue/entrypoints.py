"""Entrypoint suggestions for the form: the names the queue and its log have seen."""

from __future__ import annotations

from pgq_console.core.backend import (
    Backend,
)

# -- entrypoint suggestions -------------------------------------------------------------------


def known_entrypoints_sql(backend: Backend) -> str:
    """Entrypoints seen in the queue (skip scan over the queued index), recent log, statistics
    and schedules; cheap on a million-row queue."""
    names = backend.installation.settings.qualified
    return f"""
WITH RECURSIVE queued(entrypoint) AS (
    (SELECT entrypoint FROM {names.queue_table} WHERE status = 'queued'
        ORDER BY entrypoint LIMIT 1)
    UNION ALL
    SELECT (SELECT q.entrypoint FROM {names.queue_table} q
            WHERE q.status = 'queued' AND q.entrypoint > queued.entrypoint
            ORDER BY q.entrypoint LIMIT 1)
    FROM queued WHERE queued.entrypoint IS NOT NULL
)
SELECT entrypoint FROM queued WHERE entrypoint IS NOT NULL
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.queue_table}
    WHERE status <> 'queued' LIMIT 10000) others
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.queue_table_log}
    ORDER BY id DESC LIMIT 5000) recent
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.statistics_table}
    ORDER BY id DESC LIMIT 5000) stats
UNION SELECT entrypoint FROM {names.schedules_table}
ORDER BY 1 LIMIT 500
"""


async def read_known_entrypoints(backend: Backend) -> list[str]:
    """Entrypoint names the queue, its log and schedules have seen; raises what the read
    raised (a form must tell "no names yet" from "could not read them")."""
    if not backend.capabilities.can_read:
        if backend.autocommit_problem:
            return []
        stats = await backend.queue_size()
        return sorted({stat.entrypoint for stat in stats})
    if backend.autocommit_problem:
        return []
    rows = await backend.read(known_entrypoints_sql(backend))
    return [str(row["entrypoint"]) for row in rows]


async def known_entrypoints(backend: Backend) -> list[str]:
    """Entrypoint names for the form's suggestions; [] if they cannot be read."""
    try:
        return await read_known_entrypoints(backend)
    except Exception:  # suggestions are a nicety: the form works without them
        return []
