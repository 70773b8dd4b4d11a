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
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

INDEX_TTL_S = 60.0
STATISTICS_INDEX_SUFFIX = "_created_idx"
# From this many rows on (the table's estimate) the statistics table is large: an hour of busy
# traffic is ~100,000 rows (a row per second per entrypoint, status and priority), so the hour
# reads then scan mostly history they do not need.
STATISTICS_LARGE_ROWS = 500_000


@dataclass(frozen=True)
class IndexPresence:
    usable: bool  # exists, valid and ready
    table_rows: int | None  # the table's row estimate (None: never analyzed, or no table)


# backend -> index name -> (monotonic time read, what was read)
_KNOWN: weakref.WeakKeyDictionary[Backend, dict[str, tuple[float, IndexPresence]]] = (
    weakref.WeakKeyDictionary()
)
# backend -> index name -> the read under way aside (`index_usable`)
_READING: weakref.WeakKeyDictionary[Backend, dict[str, asyncio.Task[IndexPresence]]] = (
    weakref.WeakKeyDictionary()
)


def statistics_index_name(backend: Backend) -> str:
    """The statistics table's index on created (core/indexes.py): named here, where the
    overview (which must not import the actions) asks whether it exists."""
    return f"{backend.installation.settings.statistics_table}{STATISTICS_INDEX_SUFFIX}"


def index_state_sql(table_param: int, name_param: int, schema_param: int) -> str:
    """The table's row estimate, and its index of that name if any: valid, ready, and how far
    a build has come (one row at most; none without the table)."""
    return (
        "SELECT t.reltuples::float8 AS table_rows, i.indexrelid IS NOT NULL AS present, "
        "coalesce(i.indisvalid, false) AS valid, coalesce(i.indisready, false) AS ready, "
        "p.phase::text AS phase, p.blocks_done, p.blocks_total "
        "FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace "
        f"LEFT JOIN pg_class c ON c.relname = ${name_param} AND c.relkind = 'i' "
        "AND c.relnamespace = t.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        "LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.indexrelid "
        f"WHERE t.relname = ${table_param} AND t.relkind IN ('r', 'p') "
        f"AND n.nspname = coalesce(nullif(${schema_param}::text, ''), current_schema())"
    )


def table_rows(row: dict[str, object] | None) -> int | None:
    """`index_state_sql`'s row estimate (reltuples is -1 for a table never vacuumed or
    analyzed, PostgreSQL 14+)."""
    value = float(row["table_rows"]) if row is not None else -1.0  # type: ignore[arg-type]
    return int(value) if value >= 0 else None


def reading_aside(backend: Backend, name: str) -> asyncio.Task[IndexPresence] | None:
    return _READING.get(backend, {}).get(name)


def known(backend: Backend, name: str) -> tuple[float, IndexPresence] | None:
    return _KNOWN.get(backend, {}).get(name)


async def index_usable(
    backend: Backend, table: str, name: str, *, now: float | None = None
) -> bool:
    """Whether the index `name` on `table` (in the installation's schema) is usable."""
    return (await index_presence(backend, table, name, now=now)).usable


async def index_presence(
    backend: Backend, table: str, name: str, *, now: float | None = None
) -> IndexPresence:
    """Whether the index `name` on `table` is usable, and the table's row estimate.

    Once known, the answer is given at once: past `INDEX_TTL_S` it is read again aside for the
    next caller, not before this one's read (a round trip before every page a minute apart,
    such as the Failures screen's on a key press: 50 ms more at 50 ms RTT)."""
    at = time.monotonic() if now is None else now
    was = known(backend, name)
    if was is not None:
        if at - was[0] >= INDEX_TTL_S and reading_aside(backend, name) is None:
            task = asyncio.ensure_future(_read(backend, table, name, at, aside=True))
            _READING.setdefault(backend, {})[name] = task
            task.add_done_callback(lambda done: _read_aside_done(backend, name, done))
        return was[1]
    return await _read(backend, table, name, at)


async def _read(
    backend: Backend, table: str, name: str, at: float, *, aside: bool = False
) -> IndexPresence:
    schema = backend.installation.settings.db_schema or ""
    rows = await backend.read_heavy(index_state_sql(1, 2, 3), table, name, schema)
    row = rows[0] if rows else None
    presence = IndexPresence(
        usable=bool(row and row["present"] and row["valid"] and row["ready"]),
        table_rows=table_rows(row),
    )
    # A read aside that `forget_index` overtook (the index built meanwhile) is dropped.
    if not aside or reading_aside(backend, name) is asyncio.current_task():
        _KNOWN.setdefault(backend, {})[name] = (at, presence)
    return presence


def _read_aside_done(backend: Backend, name: str, task: asyncio.Task[IndexPresence]) -> None:
    if reading_aside(backend, name) is task:
        del _READING[backend][name]
    if not task.cancelled():
        task.exception()  # failed: the known answer stays, read again on the next call


def forget_index(backend: Backend, name: str) -> None:
    """The index was built or dropped: read the catalog again on the next call."""
    _KNOWN.get(backend, {}).pop(name, None)
    _READING.get(backend, {}).pop(name, None)
