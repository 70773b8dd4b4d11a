"""Hostile input inside the console: served consoles, payloads, themes, escapes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from textual.widgets import OptionList, Select

from pgq_console import app as app_module
from pgq_console.app import PgqConsole
from pgq_console.cli import build_parser
from pgq_console.config import CliOptions, load_settings
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.target import DriverKind, Installation
from pgq_console.scripting import serve_command
from tests.conftest import drop_database, make_database
from tests.helpers import wait_until
from tests.test_enqueue_form import error_text, fill, open_form


@pytest.fixture(scope="module")
def console_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "security_console")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', 'a')"
            )
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


class RecordingConsole(PgqConsole):
    """The console, keeping every notification's text for the test to read."""

    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")  # not beside this file

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.noted: list[str] = []

    def notify(self, message: str, *args: Any, **options: Any) -> None:
        self.noted.append(str(message))
        super().notify(message, *args, **options)


def console(dsn: str, **options: Any) -> RecordingConsole:
    async def open_() -> Backend:
        return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "test", ())

    app = RecordingConsole(open_, **options)
    app.animation_level = "none"
    return app


def test_served_consoles_are_started_without_file_payloads() -> None:
    import argparse

    settings = load_settings(CliOptions(dsn="postgresql://u@h/db"), {})
    command = serve_command(settings, argparse.Namespace())
    assert "--served" in command
    assert build_parser().parse_args(command[3:]).served is True


async def test_a_served_console_offers_and_accepts_no_file_payload(console_dsn: str) -> None:
    app = console(console_dsn)
    app.served = True
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_form(pilot)
        offered = form.query_one("#payload_kind", Select).query_one(OptionList).options
        kinds = [str(option.prompt) for option in offered]
        assert "json" in kinds
        assert "file" not in kinds
        # Even if the value got there some other way, it is refused.
        fill(form, entrypoint="a", payload="/etc/passwd")
        form.query_one("#payload_kind", Select).set_options([("file", "file"), ("json", "json")])
        form.query_one("#payload_kind", Select).value = "file"
        await pilot.pause()
        assert form.validate_fields() is None
        await wait_until(pilot, lambda: "served" in error_text(app, "payload"), what="refusal")


# -- job detail: hostile payloads ---------------------------------------------------------------

NESTED = b"[" * 1024 + b"]" * 1024  # 2 KB of nesting: deeper than Python's recursion limit


async def insert_job(dsn: str, payload: bytes, headers: str | None = None) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "INSERT INTO pgqueuer (priority, status, entrypoint, payload, headers) "
                "VALUES (0, 'queued', 'hostile', $1, $2::jsonb) RETURNING id",
                payload,
                headers,
            )
        )
    finally:
        await connection.close()


async def open_detail(pilot: Any, job_id: int) -> Any:
    from pgq_console.core.backend import Backend
    from pgq_console.screens.job_detail import JobDetailScreen
    from tests.test_enqueue_form import ready

    app = pilot.app
    await wait_until(pilot, lambda: ready(app), what="the first screen")
    assert isinstance(app.backend, Backend)
    screen = JobDetailScreen(app.backend, app.clock, job_id)
    app.push_screen(screen)
    await wait_until(pilot, lambda: screen.detail is not None, what="the job's detail")
    return screen


def shown(screen: Any, widget: str) -> str:
    from textual.widgets import Static

    return str(screen.query_one(f"#{widget}", Static).render())


async def test_a_deeply_nested_payload_and_headers_show_without_a_crash(console_dsn: str) -> None:
    nested_headers = '{"a": ' + "[" * 900 + "]" * 900 + "}"  # jsonb's own limit is higher
    job_id = await insert_job(console_dsn, NESTED, nested_headers)
    app = console(console_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, job_id)
        await pilot.pause()
        assert "[[[[" in shown(screen, "detail-payload")
        assert shown(screen, "detail-headers") != ""
        assert app.is_running


def test_deep_json_shows_as_its_text_whatever_the_recursion_limit() -> None:
    from pgq_console.core.jobs import render_payload
    from pgq_console.core.jobs.payload import MAX_PRETTY_DEPTH

    # Another library in the process may have raised the limit: JSON 1,024 levels deep then
    # parses, and pretty-printed it would be megabytes of indentation.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        deep = render_payload(NESTED)
    finally:
        sys.setrecursionlimit(limit)
    assert (deep.kind, deep.text) == ("text", NESTED.decode())
    shallow = b"[" * MAX_PRETTY_DEPTH + b"]" * MAX_PRETTY_DEPTH
    assert render_payload(shallow).kind == "json"
    assert render_payload(b'{"a": ' + shallow + b"}").kind == "text"


async def test_more_payload_stops_at_a_bound(console_dsn: str) -> None:
    from pgq_console.screens.job_detail import MAX_SHOWN_PAYLOAD_BYTES

    job_id = await insert_job(console_dsn, b"x" * (10 * 1024 * 1024))
    app = console(console_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, job_id)
        for _ in range(8):
            before = screen.payload_bytes
            await pilot.press("m")
            if screen.payload_bytes != before:
                await wait_until(
                    pilot,
                    lambda: (
                        screen.detail is not None
                        and len(screen.detail.payload or b"") == screen.payload_bytes
                    ),
                    within=30,
                    what="the next page",
                )
        assert screen.payload_bytes == MAX_SHOWN_PAYLOAD_BYTES
        assert screen.detail is not None and screen.detail.payload_truncated
        await wait_until(
            pilot,
            lambda: any("the most this screen shows" in note for note in app.noted),
            what="the bound's notice",
        )


async def test_copying_a_payload_drops_controls_and_says_when_partial(console_dsn: str) -> None:
    from pgq_console.core.jobs import PAYLOAD_PAGE_BYTES

    hostile = "line one\n\x1b]52;c;ZXZpbA==\x07\x1b[2Jtab\there\u2060".encode()
    job_id = await insert_job(console_dsn, hostile)
    big_id = await insert_job(console_dsn, b"y" * (PAYLOAD_PAGE_BYTES * 2))
    app = console(console_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, job_id)
        await pilot.press("Y")
        await wait_until(pilot, lambda: bool(app.clipboard), what="the copy")
        assert app.clipboard == "line one\n]52;c;ZXZpbA==[2Jtab\there"
        screen.dismiss(None)
        await open_detail(pilot, big_id)
        await pilot.press("Y")
        await wait_until(pilot, lambda: app.clipboard.startswith("yyy"), what="the big copy")
        assert any(
            f"copied the first {PAYLOAD_PAGE_BYTES:,} of {PAYLOAD_PAGE_BYTES * 2:,} bytes" in note
            for note in app.noted
        ), app.noted


# -- themes --------------------------------------------------------------------------------------


async def test_a_theme_with_a_bad_variable_is_refused_not_a_crash(console_dsn: str) -> None:
    from pgq_console.config import user_theme_dir

    user_dir = user_theme_dir()
    user_dir.mkdir(parents=True, exist_ok=True)
    (user_dir / "badvars.toml").write_text(
        'name = "badvars"\nprimary = "#123456"\n[variables]\nstatus-held = "not-a-colour"\n'
    )
    app = console(console_dsn, theme="badvars")
    async with app.run_test(size=(120, 40)) as pilot:
        from tests.test_enqueue_form import ready

        await wait_until(pilot, lambda: ready(app), what="the first screen")
        assert app.theme == "pgq-dark"
        assert "badvars" not in app.available_themes  # so `:theme badvars` cannot crash it
        assert any("status-held" in note and "not a colour" in note for note in app.noted)


async def test_a_fifo_as_the_file_payload_is_refused_and_the_form_stays_live(
    console_dsn: str, tmp_path: Path
) -> None:
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    app = console(console_dsn)
    async with app.run_test(size=(120, 40)) as pilot:
        form = await open_form(pilot)
        fill(form, entrypoint="a", payload_kind="file", payload=str(fifo))
        await pilot.pause()
        form.action_submit()
        await wait_until(
            pilot, lambda: "not a regular file" in error_text(app, "payload"), what="refusal"
        )
        assert not form.running
