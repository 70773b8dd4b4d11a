"""Whether an index the console suggests (core/indexes.py) exists and is usable, read now and
then: knowing costs a catalog read, so the answer is kept per backend and index and read again
aside after `INDEX_TTL_S` (and forgotten when the console builds the index).

Used by the jobs pages (the held-failures index bounds or not a `status:failed` page) and the
overview (whether slow rates are the statistics table's missing index on created).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

INDEX_TTL_S = 60.0

# backend -> index name -> (monotonic time read, usable)
_KNOWN: weakref.WeakKeyDictionary[Backend, dict[str, tuple[float, bool]]] = (
    weakref.WeakKeyDictionary()
)
# backend -> index name -> the read under way aside (`index_usable`)
_READING: weakref.WeakKeyDictionary[Backend, dict[str, asyncio.Task[bool]]] = (
    weakref.WeakKeyDictionary()
)


def index_probe(backend: Backend, name: str) -> tuple[str, tuple[object, ...]]:
    """The catalog read: one row, `usable` (exists, valid and ready)."""
    return (
        "SELECT coalesce(bool_or(i.indisvalid AND i.indisready), false) AS usable "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = $1 AND n.nspname = coalesce(nullif($2::text, ''), current_schema())",
        (name, backend.installation.settings.db_schema or ""),
    )


def reading_aside(backend: Backend, name: str) -> asyncio.Task[bool] | None:
    return _READING.get(backend, {}).get(name)


def known(backend: Backend, name: str) -> tuple[float, bool] | None:
    return _KNOWN.get(backend, {}).get(name)


async def index_usable(backend: Backend, name: str, *, now: float | None = None) -> bool:
    """Whether the index `name` (in the installation's schema) exists and is usable.

    Once known, the answer is given at once: past `INDEX_TTL_S` it is read again aside for the
    next caller, not before this one's read (a round trip before every page a minute apart,
    such as the Failures screen's on a key press: 50 ms more at 50 ms RTT)."""
    at = time.monotonic() if now is None else now
    was = known(backend, name)
    if was is not None:
        if at - was[0] >= INDEX_TTL_S and reading_aside(backend, name) is None:
            task = asyncio.ensure_future(_read_usable(backend, name, at, aside=True))
            _READING.setdefault(backend, {})[name] = task
            task.add_done_callback(lambda done: _read_aside_done(backend, name, done))
        return was[1]
    return await _read_usable(backend, name, at)


async def _read_usable(backend: Backend, name: str, at: float, *, aside: bool = False) -> bool:
    sql, args = index_probe(backend, name)
    rows = await backend.read_heavy(sql, *args)
    usable = bool(rows and rows[0]["usable"])
    # A read aside that `forget_index` overtook (the index built meanwhile) is dropped.
    if not aside or reading_aside(backend, name) is asyncio.current_task():
        _KNOWN.setdefault(backend, {})[name] = (at, usable)
    return usable


def _read_aside_done(backend: Backend, name: str, task: asyncio.Task[bool]) -> None:
    if reading_aside(backend, name) is task:
        del _READING[backend][name]
    if not task.cancelled():
        task.exception()  # failed: the known answer stays, read again on the next call


def forget_index(backend: Backend, name: str) -> None:
    """The index was built or dropped: read the catalog again on the next call."""
    _KNOWN.get(backend, {}).pop(name, None)
    _READING.get(backend, {}).pop(name, None)
