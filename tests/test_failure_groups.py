"""Failure fingerprints (core/fingerprint.py), their SQL twin, and the Failures screen's groups."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.widgets import Static

from pgq_console.core import fingerprint as fp
from pgq_console.core.backend import Backend
from pgq_console.core.jobs import failures as failure_groups
from pgq_console.core.jobs import fetch_failure_groups
from pgq_console.screens import failures
from pgq_console.screens.action_confirm import ActionConfirmScreen
from pgq_console.screens.failures import FailuresScreen, GroupTable
from tests.helpers import backend_for, wait_until
from tests.jobs_seed import FIXED_NOW
from tests.test_jobs_screens import console, statuses, table

APP_FRAME = '  File "/srv/app/billing.py", line {line}, in charge\n    gateway.pay(card)\n'
LIB_FRAME = (
    '  File "/usr/lib/python3.11/site-packages/stripe/api.py", line 88, in pay\n'
    "    raise CardError(msg)\n"
)


def traceback_text(kind: str, message: str, *, line: int = 42, app: str = APP_FRAME) -> str:
    return (
        "Traceback (most recent call last):\n"
        + app.format(line=line)
        + LIB_FRAME
        + f"{kind}: {message}\n"
    )


# -- the pure fingerprint ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("card declined for job 6213", "card declined for job <n>"),
        ("user 3f2a5c1e-9d4b-4c1a-8e2f-0123456789ab not found", "user <uuid> not found"),
        ("object at 0x7f3a2b1c gone", "object at <hex> gone"),
        ("commit deadbeef1234 missing", "commit <hex> missing"),
        ("no such key 'order:42'", "no such key <str>"),
        ('bad value "abc"', "bad value <str>"),
        ("mail to bob.smith+x@mail.example.co.uk bounced", "mail to <email> bounced"),
        (
            "GET https://api.example.com/v1/pay?token=abc&n=3 failed",
            "GET https://api.example.com/v1/pay?<query> failed",
        ),
        ("expired at 2026-01-01T12:00:03.123+00:00", "expired at <ts>"),
        ("took 2.5s on ipv4 e2e", "took <n>s on ipv4 e2e"),
        ("user_42 over quota", "user_<n> over quota"),
        ("connection refused", "connection refused"),
    ],
)
def test_mask_message_replaces_variable_parts(message: str, masked: str) -> None:
    assert fp.mask_message(message) == masked


def test_culprit_is_the_innermost_frame_outside_libraries() -> None:
    text = traceback_text("CardError", "declined")
    assert fp.culprit_frame(text) == "/srv/app/billing.py:charge"
    # Only library frames: the innermost one still says where.
    assert fp.culprit_frame(LIB_FRAME) == "/usr/lib/python3.11/site-packages/stripe/api.py:pay"
    assert fp.culprit_frame("no traceback here") == ""
    # A different line of the same function is the same place; another function is not.
    assert fp.fingerprint("E", "m", traceback_text("E", "m", line=1)) == fp.fingerprint(
        "E", "m", traceback_text("E", "m", line=99)
    )
    other = APP_FRAME.replace("in charge", "in refund")
    assert fp.fingerprint("E", "m", text) != fp.fingerprint(
        "E", "m", traceback_text("E", "m", app=other)
    )


ids = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.uuids().map(str),
    st.integers(min_value=0x10000000, max_value=2**63).map(lambda n: f"0x{n:x}"),
    st.emails().filter(lambda e: "'" not in e),  # a quote starts a quoted string
    st.text(alphabet="abcdefghij klm:/", max_size=12).map(lambda s: f"'{s}'"),
)


@settings(max_examples=300, deadline=None)
@given(first=ids, second=ids, prefix=st.sampled_from(["job ", "card declined for ", "id="]))
def test_messages_differing_only_by_an_id_mask_alike(first: str, second: str, prefix: str) -> None:
    # Same-kind ids only: a number and an email are different shapes of message.
    def kind(value: str) -> str:
        return fp.mask_message(value)

    if kind(first) == kind(second):
        assert fp.mask_message(f"{prefix}{first} failed") == fp.mask_message(
            f"{prefix}{second} failed"
        )


@settings(max_examples=200, deadline=None)
@given(value=ids)
def test_an_id_never_survives_masking(value: str) -> None:
    assert value not in fp.mask_message(f"job {value} failed") or not any(
        c.isdigit() for c in value
    )


# -- the same rules in PostgreSQL --------------------------------------------------------------

SAMPLES = [
    "card declined for job 6213",
    "user 3f2a5c1e-9d4b-4c1a-8e2f-0123456789ab not found at 2026-01-01 12:00:03Z",
    "object at 0x7f3a2b1c gone; commit deadbeef1234 / cafe babe",
    "no such key 'order:42' or \"x\" in ipv4 e2e user_42 7.5",
    "mail to bob.smith+x@mail.example.co.uk bounced",
    "GET https://api.example.com:8443/v1/pay?token=abc&n=3#frag failed",
    "[bold]markup[/] \x1b[31m escape 12 \t tab",
    "",
]


@settings(max_examples=150, deadline=None)
@given(
    extra=st.lists(
        st.text(
            alphabet=st.sampled_from(list("ab9f0x-:.@'\" /?=&_TZ+Qé\n")), min_size=0, max_size=40
        ),
        min_size=1,
        max_size=5,
    )
)
def test_sql_masking_matches_python(database_dsn: str, extra: list[str]) -> None:
    messages = SAMPLES + extra
    expression, args = fp.sql_masked_message("m", 2)
    frame_sql, frame_args = fp.sql_culprit_frame("m", 2 + len(args))

    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_dsn)
        try:
            return list(
                await connection.fetch(
                    f"SELECT {expression} AS masked, {frame_sql} AS frame "
                    "FROM unnest($1::text[]) WITH ORDINALITY AS t(m, i) ORDER BY i",
                    messages,
                    *args,
                    *frame_args,
                )
            )
        finally:
            await connection.close()

    rows = asyncio.run(run())
    assert [r["masked"] for r in rows] == [fp.mask_message(m) for m in messages]
    assert [r["frame"] for r in rows] == [fp.culprit_frame(m) for m in messages]


def test_sql_culprit_matches_python(database_dsn: str) -> None:
    texts = [
        traceback_text("E", "m"),
        LIB_FRAME,
        traceback_text("E", "m", app=APP_FRAME.replace("/srv/app", "<frozen runpy>")),
        "During handling...\n" + traceback_text("E", "m") * 2,
        "",
    ]
    frame_sql, frame_args = fp.sql_culprit_frame("m", 2)

    async def run() -> list[str]:
        connection = await asyncpg.connect(database_dsn)
        try:
            rows = await connection.fetch(
                f"SELECT {frame_sql} AS frame FROM unnest($1::text[]) WITH ORDINALITY AS t(m, i) "
                "ORDER BY i",
                texts,
                *frame_args,
            )
            return [str(r["frame"]) for r in rows]
        finally:
            await connection.close()

    assert asyncio.run(run()) == [fp.culprit_frame(t) for t in texts]


# -- groups read from the log ------------------------------------------------------------------


async def log_failures(
    dsn: str,
    first_job: int,
    count: int,
    *,
    kind: str = "CardError",
    message: str = "card declined for job {id} ({uuid})",
    entrypoint: str = "charge_card",
    held: bool = True,
    minutes_ago: int = 30,
    app: str = APP_FRAME,
) -> list[int]:
    """`count` jobs that failed with messages differing only by ids; held ones stay 'failed'."""
    connection = await asyncpg.connect(dsn)
    job_ids = []
    try:
        for n in range(count):
            text = message.format(id=first_job + n, uuid=uuid.uuid4())
            job_id = await connection.fetchval(
                """INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated,
                    heartbeat, execute_after, attempts)
                VALUES (0, $1, $2, NULL, $3, $3, $3, $3, 1) RETURNING id""",
                "failed" if held else "queued",
                entrypoint,
                FIXED_NOW - timedelta(minutes=minutes_ago + 1),
            )
            job_ids.append(int(job_id))
            record = {
                "job_id": int(job_id),
                "timestamp": FIXED_NOW.isoformat(),
                "exception_type": kind,
                "exception_message": text,
                "traceback": traceback_text(kind, text, line=40 + n % 5, app=app),
                "additional_context": None,
            }
            await connection.execute(
                """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created,
                    traceback) VALUES ($1, $2, 0, $3, $4, $5::jsonb)""",
                job_id,
                "failed" if held else "exception",
                entrypoint,
                FIXED_NOW - timedelta(minutes=minutes_ago, seconds=n % 50),
                json.dumps(record),
            )
    finally:
        await connection.close()
    return job_ids


async def reset(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log RESTART IDENTITY")
    finally:
        await connection.close()


async def test_500_failures_differing_only_by_ids_form_one_group(database_dsn: str) -> None:
    await reset(database_dsn)
    await log_failures(database_dsn, 6000, 500)
    backend = await backend_for(database_dsn)
    assert isinstance(backend, Backend)
    try:
        result = await fetch_failure_groups(backend, FIXED_NOW)
    finally:
        await backend.close()
    assert result.total == 1
    [group] = result.groups
    assert (group.count, group.held) == (500, 500)
    assert group.fingerprint == fp.Fingerprint(
        "CardError", "card declined for job <n> (<uuid>)", "/srv/app/billing.py:charge"
    )
    assert group.entrypoints == ("charge_card",)
    assert sum(group.hourly) == 500 and group.hourly[-1] == 500
    assert group.sample_message.startswith("card declined for job 6")


@pytest.fixture
async def grouped(database_dsn: str) -> str:
    """60 held CardErrors (one group), 3 retried TimeoutErrors raised in another function."""
    await reset(database_dsn)
    await log_failures(database_dsn, 6000, 60, minutes_ago=50)
    await log_failures(
        database_dsn,
        9000,
        3,
        kind="TimeoutError",
        message="smtp timed out after {id}ms",
        entrypoint="send_email",
        held=False,
        minutes_ago=40,
        app=APP_FRAME.replace("billing.py", "mail.py").replace("in charge", "in send"),
    )
    return database_dsn


async def open_failures(pilot: Any, groups: int) -> GroupTable:
    app = pilot.app
    await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
    await pilot.press("3")
    await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
    table_: GroupTable = app.screen.query_one(GroupTable)
    await wait_until(pilot, lambda: table_.row_count == groups, what=f"{groups} groups")
    return table_


def header(app: Any) -> str:
    return str(app.screen.query_one("#failures-header", Static).render())


def sample(app: Any) -> str:
    return str(app.screen.query_one("#group-traceback", Static).render())


async def test_screen_groups_newest_first_sample_follows_cursor_and_requeues_a_group(
    grouped: str,
) -> None:
    app = console(grouped)
    async with app.run_test(size=(160, 48)) as pilot:
        groups = await open_failures(pilot, 2)
        rows = [groups.groups[key] for key in groups.row_keys]
        assert [(g.exception_type, g.count, g.held) for g in rows] == [
            ("TimeoutError", 3, 0),
            ("CardError", 60, 60),
        ]
        assert "60 held  2 failure groups in 24 h" in header(app)
        await pilot.press("tab")
        assert "TimeoutError: smtp timed out after <n>ms" in sample(app)
        assert "at /srv/app/mail.py:send" in sample(app)
        await pilot.press("j")
        assert "CardError: card declined for job <n> (<uuid>)" in sample(app)
        assert "60 in 24 h, 60 held" in sample(app)
        # A new failure of another kind goes to the top; the cursor stays on its group.
        await log_failures(grouped, 7000, 1, kind="KeyError", message="'sku-{id}'", minutes_ago=1)
        app.screen.request_refresh()  # type: ignore[attr-defined]
        await wait_until(pilot, lambda: groups.row_count == 3, what="the new group")
        assert groups.row_keys[0].startswith("KeyError")
        assert groups.current is not None and groups.current.exception_type == "CardError"
        assert "CardError" in sample(app)
        # Requeue the whole CardError group: the preview counts its 60 held jobs, no more.
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert modal.preview.count == 60  # type: ignore[attr-defined]
        modal.query_one("#confirm-reason").focus()
        await pilot.press(*"gateway fixed", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        state = await statuses(grouped)
        assert sum(1 for s in state.values() if s == "queued") == 60 + 3
        assert sum(1 for s in state.values() if s == "failed") == 1  # the new KeyError


async def test_cancel_a_group_cancels_its_retrying_jobs_only(grouped: str) -> None:
    app = console(grouped)
    async with app.run_test(size=(160, 48)) as pilot:
        groups = await open_failures(pilot, 2)
        await pilot.press("tab")
        assert groups.current is not None and groups.current.exception_type == "TimeoutError"
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ActionConfirmScreen))
        modal = app.screen
        await wait_until(pilot, lambda: modal.preview is not None)  # type: ignore[attr-defined]
        assert modal.preview.count == 3  # type: ignore[attr-defined]
        modal.query_one("#confirm-reason").focus()
        await pilot.press(*"smtp gone", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        connection = await asyncpg.connect(grouped)
        try:
            left = await connection.fetch("SELECT entrypoint, status::text FROM pgqueuer")
        finally:
            await connection.close()
        assert {r["entrypoint"] for r in left} == {"charge_card"}  # 3 send_email cancelled
        assert len(left) == 60


async def test_no_silent_cap_on_groups(grouped: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures, "GROUP_LIMIT", 1)
    app = console(grouped)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_failures(pilot, 1)
        await wait_until(pilot, lambda: "showing 1 of 2 failure groups" in header(app))


async def test_first_visit_shows_a_loading_state_not_zero(
    grouped: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    real = failure_groups.__dict__["fetch_failure_groups"]

    async def held_back(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await real(*args, **kwargs)

    # The screen reads through `fetch_held_and_groups` (the held page and the groups at once).
    monkeypatch.setattr(failure_groups, "fetch_failure_groups", held_back)
    app = console(grouped)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, FailuresScreen))
        await pilot.pause(0.2)
        assert "reading…" in header(app) and "0 held" not in header(app)
        assert table(app, "#held-table").loading and app.screen.query_one(GroupTable).loading
        gate.set()
        await wait_until(pilot, lambda: "60 held" in header(app), what="the first read")
        held = table(app, "#held-table")
        assert not held.loading and held.row_count == 60
        # Every id is shown whole on the first rows painted.
        ids = set(held.row_keys)
        assert {held.get_cell(key, "id").plain for key in ids} == ids
        assert held.column_widths()["id"] - 2 >= max(len(i) for i in ids)


async def test_grouping_scans_the_newest_rows_and_says_so(grouped: str) -> None:
    backend = await backend_for(grouped)
    assert isinstance(backend, Backend)
    try:
        whole = await fetch_failure_groups(backend, FIXED_NOW)
        part = await fetch_failure_groups(backend, FIXED_NOW, scan_limit=10)
    finally:
        await backend.close()
    assert not whole.partial and (whole.scanned, whole.exceptions) == (63, 63)
    assert part.partial and (part.scanned, part.exceptions) == (10, 63)
    # The newest 10 are the 3 TimeoutErrors (40 min ago) and 7 of the CardErrors (50 min ago).
    assert {(g.exception_type, g.count) for g in part.groups} == {
        ("TimeoutError", 3),
        ("CardError", 7),
    }
