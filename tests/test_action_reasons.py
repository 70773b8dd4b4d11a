"""Issue 10 item 4 (dedupe conflicts named in preview and result) and issue 19 item 4 (reasons
recorded, schedule ids recorded as such, dialogs that say what they act on)."""

from __future__ import annotations

import asyncpg

from pgq_console.core import actions
from pgq_console.core.actions import Predicate
from pgq_console.core.backend import Backend
from tests.helpers import backend_for


async def test_requeue_names_dedupe_conflicts_in_preview_and_result(fresh_database: str) -> None:
    connection = await asyncpg.connect(fresh_database)
    rows = await connection.fetch(
        "INSERT INTO pgqueuer (priority, entrypoint, status, dedupe_key) VALUES "
        "(0, 'ep', 'failed', 'k1'), (0, 'ep', 'queued', 'k1'), (0, 'ep', 'failed', 'k2'), "
        "(0, 'ep', 'failed', NULL), (0, 'ep', 'failed', NULL) RETURNING id"
    )
    await connection.close()
    ids = [int(r["id"]) for r in rows]
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("TRUE", (), "everything"))
        preview = await action.preview(backend)
        assert preview.count == 4
        assert preview.blocked_by_dedupe == 1
        assert "4 held, 1 blocked by a live job with the same dedupe key" in preview.notes
        result = await actions.execute(backend, action, preview)
        assert result.ids == (ids[2], ids[3], ids[4])
        assert result.blocked_by_dedupe == 1
        assert "1 blocked by a live job with the same dedupe key" in result.summary
        assert "had changed" not in result.summary
    finally:
        await backend.close()


async def test_requeue_counts_a_sibling_holding_the_same_key_as_blocked(
    fresh_database: str,
) -> None:
    connection = await asyncpg.connect(fresh_database)
    await connection.execute(
        "INSERT INTO pgqueuer (priority, entrypoint, status, dedupe_key) VALUES "
        "(0, 'ep', 'failed', 'k2'), (0, 'ep', 'failed', 'k2'), (0, 'ep', 'failed', 'k2')"
    )
    await connection.close()
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    try:
        action = actions.requeue(backend, Predicate("TRUE", (), "everything"))
        preview = await action.preview(backend)
        assert (preview.count, preview.blocked_by_dedupe) == (3, 2)
        result = await actions.execute(backend, action, preview)
        assert (result.changed, result.blocked_by_dedupe) == (1, 2)
        assert result.summary == (
            "requeue: previewed 3, changed 1 (2 blocked by a live job with the same dedupe key)"
        )
    finally:
        await backend.close()
