"""`status:failed` has no index in PgQueuer: without the held-failures index a page looks at the
newest rows only and says so; with it (the Database screen's `f`) the page is exact."""

from __future__ import annotations

import asyncpg
import pytest
from textual.widgets import Static

from pgq_console.core.backend import Backend
from pgq_console.core.jobs import HELD_FILTER, fetch_page, forget_held_index, parse_filter
from pgq_console.core.jobs import filter as filter_module
from pgq_console.screens.failures import FailuresScreen
from pgq_console.screens.jobs import JobsScreen
from tests.helpers import backend_for, wait_until
from tests.screens_support import console, run_sql

CAP = 50
ROWS = 200


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filter_module, "HELD_SCAN_CAP", CAP)


async def _seed(dsn: str) -> tuple[list[int], list[int]]:
    """ROWS queued jobs; two held failures among the oldest, two among the newest CAP rows."""
    await run_sql(
        dsn,
        "INSERT INTO pgqueuer (priority, entrypoint, status, payload) "
        "SELECT 0, 'held_' || (g % 2), 'queued', NULL FROM generate_series(1, $1) AS g",
        ROWS,
    )
    ids = [int(r["id"]) for r in await run_sql(dsn, "SELECT id FROM pgqueuer ORDER BY id")]
    old, new = ids[3:5], ids[-4:-2]
    await run_sql(dsn, "UPDATE pgqueuer SET status = 'failed' WHERE id = ANY($1)", old + new)
    return old, new


async def _create_index(dsn: str) -> None:
    await run_sql(
        dsn,
        "CREATE INDEX pgqueuer_held_ep_id_idx ON pgqueuer (entrypoint, id) WHERE status = 'failed'",
    )


async def test_failed_pages_are_bounded_without_the_index_and_exact_with_it(
    fresh_database: str, small_cap: None
) -> None:
    dsn = fresh_database
    old, new = await _seed(dsn)
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    try:
        for job_filter in (parse_filter("status:failed"), HELD_FILTER):
            page = await fetch_page(backend, job_filter)
            assert [r.id for r in page.rows] == sorted(new, reverse=True)
            assert page.scanned_cap and not page.held_index
            scope = job_filter.scope("pgqueuer")
            assert f"newest {CAP:,} jobs scanned" in scope.description
        # Oldest first is bounded the same way (the same newest rows).
        page = await fetch_page(backend, parse_filter("status:failed"), newest_first=False)
        assert [r.id for r in page.rows] == sorted(new)
        # Filters that do not ask for held failures are not bounded.
        for text in ("status:queued", "!status:failed", "ep:held_0"):
            page = await fetch_page(backend, parse_filter(text), limit=ROWS)
            assert not page.scanned_cap and not page.held_index, text
        queued = await fetch_page(backend, parse_filter("status:queued"), limit=ROWS)
        assert len(queued.rows) == ROWS - 4

        await _create_index(dsn)
        # The answer is kept for a minute; building the index from the console forgets it.
        forget_held_index(backend)
        for job_filter in (parse_filter("status:failed"), HELD_FILTER):
            page = await fetch_page(backend, job_filter)
            assert [r.id for r in page.rows] == sorted(old + new, reverse=True)
            assert page.held_index and not page.scanned_cap
        page = await fetch_page(backend, parse_filter("ep:held_1 status:failed,queued"))
        assert page.held_index and not page.scanned_cap
        # A content search stays bounded whatever the index.
        scope = parse_filter("status:failed payload:x").scope("pgqueuer", held_index=True)
        assert "jobs searched" in scope.description
    finally:
        await backend.close()


async def test_no_bound_is_claimed_when_the_table_is_smaller(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filter_module, "HELD_SCAN_CAP", ROWS + 50)
    dsn = fresh_database
    old, new = await _seed(dsn)
    backend = await backend_for(dsn)
    assert isinstance(backend, Backend)
    try:
        page = await fetch_page(backend, parse_filter("status:failed"))
        assert [r.id for r in page.rows] == sorted(old + new, reverse=True)
        assert not page.scanned_cap and page.scan_limit == 0 and not page.held_index
        # An empty page of a big table still says it was bounded.
        monkeypatch.setattr(filter_module, "HELD_SCAN_CAP", 2)
        page = await fetch_page(backend, parse_filter("status:failed"))
        assert page.rows == () and page.scanned_cap and page.scan_limit == 2
    finally:
        await backend.close()


async def test_a_status_word_can_use_the_partial_indexes(fresh_database: str) -> None:
    """`status = 'failed'` as PgQueuer and the held-failures index declare it: with seq scans
    off, the planner reaches for the partial index (a cast to text compared with ANY could not)."""
    dsn = fresh_database
    await _seed(dsn)
    await _create_index(dsn)
    where = parse_filter("ep:held_0 status:failed").scope("pgqueuer", held_index=True)
    sql = f"EXPLAIN SELECT count(*) FROM pgqueuer AS job WHERE {where.sql}"
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in await connection.fetch(sql, *where.args))
    finally:
        await connection.close()
    assert "pgqueuer_held_ep_id_idx" in plan, plan


async def test_screens_say_the_failed_list_is_bounded(fresh_database: str, small_cap: None) -> None:
    dsn = fresh_database
    _, new = await _seed(dsn)
    app = console(dsn, listen=False)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen))
        jobs = app.screen

        def header(selector: str) -> str:
            return str(app.screen.query_one(selector, Static).render())

        def jobs_ids() -> list[int]:
            return [int(k) for k in jobs.job_table().row_keys]  # type: ignore[attr-defined]

        # The first page on screen before typing: keys sent to a screen still mounting are lost.
        await wait_until(pilot, lambda: len(jobs_ids()) == 100, what="the first page")
        await pilot.press("slash", *"status:failed", "enter")

        await wait_until(pilot, lambda: jobs_ids() == sorted(new, reverse=True), what="held")
        assert f"status:failed: newest {CAP:,} rows scanned" in header("#jobs-header")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        await wait_until(
            pilot, lambda: f"newest {CAP:,} rows scanned" in header("#failures-header")
        )
        assert "2 held" in header("#failures-header")
