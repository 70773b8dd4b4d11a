"""Whether the held-failures index (the Database screen's `f`) exists, read now and then.

PgQueuer has no index on `status = 'failed'`; without this one a `status:failed` page is
bounded to the newest rows (`JobFilter.scope`). Knowing costs a catalog read, so the answer is
kept (core/index_cache.py) and read again aside after `HELD_INDEX_TTL_S`, and forgotten when
the console builds the index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgq_console.core.index_cache import INDEX_TTL_S, forget_index, index_usable

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

HELD_INDEX_SUFFIX = "_held_ep_id_idx"
HELD_INDEX_TTL_S = INDEX_TTL_S


def held_index_name(backend: Backend) -> str:
    return f"{backend.installation.settings.queue_table}{HELD_INDEX_SUFFIX}"


async def held_index_usable(backend: Backend, *, now: float | None = None) -> bool:
    """Whether `status:failed` can be read exactly through the held-failures index (known
    answers at once, `index_cache.index_usable`)."""
    table = backend.installation.settings.queue_table
    return await index_usable(backend, table, held_index_name(backend), now=now)


def forget_held_index(backend: Backend) -> None:
    """The index was built or dropped: read the catalog again on the next page."""
    forget_index(backend, held_index_name(backend))
