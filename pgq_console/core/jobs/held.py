"""Whether the held-failures index (the Database screen's `f`) exists, read now and then.

PgQueuer has no index on `status = 'failed'`; without this one a `status:failed` page is
bounded to the newest rows (`JobFilter.scope`). Knowing costs a catalog read, so the answer is
kept per backend for `HELD_INDEX_TTL_S` (and forgotten when the console builds the index).
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

HELD_INDEX_SUFFIX = "_held_ep_id_idx"
HELD_INDEX_TTL_S = 60.0

# backend -> (monotonic time read, usable)
_KNOWN: weakref.WeakKeyDictionary[Backend, tuple[float, bool]] = weakref.WeakKeyDictionary()


def held_index_name(backend: Backend) -> str:
    return f"{backend.installation.settings.queue_table}{HELD_INDEX_SUFFIX}"


def held_index_probe(backend: Backend) -> tuple[str, tuple[object, ...]]:
    """The catalog read: one row, `usable` (exists, valid and ready)."""
    return (
        "SELECT coalesce(bool_or(i.indisvalid AND i.indisready), false) AS usable "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = $1 AND n.nspname = coalesce(nullif($2::text, ''), current_schema())",
        (held_index_name(backend), backend.installation.settings.db_schema or ""),
    )


async def held_index_usable(backend: Backend, *, now: float | None = None) -> bool:
    """Whether `status:failed` can be read exactly through the held-failures index."""
    at = time.monotonic() if now is None else now
    known = _KNOWN.get(backend)
    if known is not None and at - known[0] < HELD_INDEX_TTL_S:
        return known[1]
    sql, args = held_index_probe(backend)
    rows = await backend.read_heavy(sql, *args)
    usable = bool(rows and rows[0]["usable"])
    _KNOWN[backend] = (at, usable)
    return usable


def forget_held_index(backend: Backend) -> None:
    """The index was built or dropped: read the catalog again on the next page."""
    _KNOWN.pop(backend, None)
