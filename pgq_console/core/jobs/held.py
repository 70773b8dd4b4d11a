"""Whether the held-failures index (the Database screen's `f`) exists, read now and then.

PgQueuer has no index on `status = 'failed'`; without this one a `status:failed` page is
bounded to the newest rows (`JobFilter.scope`). Knowing costs a catalog read, so the answer is
kept per backend and read again aside after `HELD_INDEX_TTL_S` (and forgotten when the console
builds the index).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

HELD_INDEX_SUFFIX = "_held_ep_id_idx"
HELD_INDEX_TTL_S = 60.0

# backend -> (monotonic time read, usable)
_KNOWN: weakref.WeakKeyDictionary[Backend, tuple[float, bool]] = weakref.WeakKeyDictionary()
# backend -> the read under way aside (`held_index_usable`)
_READING: weakref.WeakKeyDictionary[Backend, asyncio.Task[bool]] = weakref.WeakKeyDictionary()


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
    """Whether `status:failed` can be read exactly through the held-failures index.

    Once known, the answer is given at once: past `HELD_INDEX_TTL_S` it is read again aside
    for the next caller, not before this one's page (a round trip before every page a minute
    apart, such as the Failures screen's on a key press: 50 ms more at 50 ms RTT)."""
    at = time.monotonic() if now is None else now
    known = _KNOWN.get(backend)
    if known is not None:
        if at - known[0] >= HELD_INDEX_TTL_S and backend not in _READING:
            task = asyncio.ensure_future(_read_usable(backend, at, aside=True))
            _READING[backend] = task
            task.add_done_callback(lambda done: _read_aside_done(backend, done))
        return known[1]
    return await _read_usable(backend, at)


async def _read_usable(backend: Backend, at: float, *, aside: bool = False) -> bool:
    sql, args = held_index_probe(backend)
    rows = await backend.read_heavy(sql, *args)
    usable = bool(rows and rows[0]["usable"])
    # A read aside that `forget_held_index` overtook (the index built meanwhile) is dropped.
    if not aside or _READING.get(backend) is asyncio.current_task():
        _KNOWN[backend] = (at, usable)
    return usable


def _read_aside_done(backend: Backend, task: asyncio.Task[bool]) -> None:
    if _READING.get(backend) is task:
        del _READING[backend]
    if not task.cancelled():
        task.exception()  # failed: the known answer stays, read again on the next page


def forget_held_index(backend: Backend) -> None:
    """The index was built or dropped: read the catalog again on the next page."""
    _KNOWN.pop(backend, None)
    _READING.pop(backend, None)
