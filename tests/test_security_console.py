"""Hostile input inside the console (issue 11): served consoles, payloads, themes, escapes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from textual.widgets import OptionList, Select

from pgq_console.app import PgqConsole
from pgq_console.cli import build_parser
from pgq_console.config import CliOptions, load_settings
from pgq_console.core.backend import AnyBackend, open_backend
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


def console(dsn: str, **options: Any) -> PgqConsole:
    async def open_() -> AnyBackend:
        return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "test", ())

    app = PgqConsole(open_, **options)
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
