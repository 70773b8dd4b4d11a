"""Profiles in the running console: `:db NAME` switches database without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from textual.pilot import Pilot

from pgq_console.cli import make_app
from pgq_console.config import CliOptions, Settings, load_settings, open_target
from pgq_console.core.backend import Backend
from pgq_console.widgets.status_line import ConnectionLine
from tests.conftest import drop_database, make_database
from tests.helpers import enqueue, has_row, wait_until


@pytest.fixture(scope="module")
def two_databases(server_dsn: str) -> Iterator[tuple[str, str]]:
    alpha = make_database(server_dsn, "profile_alpha")
    beta = make_database(server_dsn, "profile_beta")
    asyncio.run(enqueue(alpha, "alpha_job", 3))
    asyncio.run(enqueue(beta, "beta_job", 5))
    try:
        yield alpha, beta
    finally:
        drop_database(server_dsn, alpha)
        drop_database(server_dsn, beta)


def config_file(tmp_path: Path, alpha: str, beta: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""\
profile = "alpha"

[profiles.alpha]
dsn = "{alpha}"
label = "STAGING"
color = "yellow"

[profiles.beta]
dsn = "{beta}"
driver = "psycopg"
label = "PROD"
color = "red"
read_only = true

[profiles.down]
dsn = "postgresql://nobody@127.0.0.1:1/nothing"
"""
    )
    path.chmod(0o600)
    return path


def app_for(settings: Settings) -> Any:
    async def opener() -> Backend:
        return await open_target(settings.target)

    app = make_app(settings, opener)
    app.animation_level = "none"
    return app


async def run_command(pilot: Pilot[Any], text: str) -> None:
    await pilot.press("colon")
    await pilot.pause()
    await pilot.press(*text)
    await pilot.press("enter")


def header(app: Any) -> str:
    return str(app.screen.query_one(ConnectionLine).render())


async def console_connections(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE application_name = 'pgq-console' AND datname = current_database()"
            )
        )
    finally:
        await connection.close()


async def test_db_command_switches_profile_without_restart(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, beta = two_databases
    settings = load_settings(CliOptions(config=str(config_file(tmp_path, alpha, beta))), {})
    assert settings.target.profile == "alpha"
    app = app_for(settings)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_until(pilot, lambda: has_row(app, "alpha_job"), what="alpha's jobs")
        assert "STAGING" in header(app) and not app.read_only
        assert await console_connections(alpha) >= 1

        await run_command(pilot, "db beta")
        await wait_until(pilot, lambda: has_row(app, "beta_job"), what="beta's jobs")
        assert not has_row(app, "alpha_job")
        assert app.profile == "beta"
        assert "PROD" in header(app) and "read-only" in header(app)
        assert app.read_only and app.backend.read_only
        assert app.backend.kind.value == "psycopg"
        # The old profile's connections are closed, not leaked.
        for _ in range(50):
            if await console_connections(alpha) == 0:
                break
            await pilot.pause(0.1)
        assert await console_connections(alpha) == 0

        # Back again through the palette's command: same registry.
        from pgq_console.commands import console_commands

        names = [c.name for c in console_commands(app, app.screen)]
        assert {"db alpha", "db beta", "db down"} <= set(names)
        next(c for c in console_commands(app, app.screen) if c.name == "db alpha").run()
        await wait_until(pilot, lambda: has_row(app, "alpha_job"), what="alpha again")
        assert "STAGING" in header(app) and not app.read_only


async def test_a_failed_switch_keeps_the_current_database(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, beta = two_databases
    settings = load_settings(CliOptions(config=str(config_file(tmp_path, alpha, beta))), {})
    app = app_for(settings)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_until(pilot, lambda: has_row(app, "alpha_job"), what="alpha's jobs")
        await run_command(pilot, "db down")

        def said(text: str) -> bool:
            return any(text in n.message for n in app._notifications)

        await wait_until(pilot, lambda: said("cannot reach"), what="the connection error")
        assert said("still on alpha")
        assert app.profile == "alpha" and has_row(app, "alpha_job")

        await run_command(pilot, "db nowhere")
        await wait_until(pilot, lambda: said("unknown profile 'nowhere'"), what="refusal")
        assert app.profile == "alpha"


async def test_switching_is_refused_while_consumers_run(
    tmp_path: Path, two_databases: tuple[str, str]
) -> None:
    alpha, beta = two_databases
    settings = load_settings(CliOptions(config=str(config_file(tmp_path, alpha, beta))), {})
    app = app_for(settings)
    async with app.run_test(size=(110, 30)) as pilot:
        await wait_until(pilot, lambda: has_row(app, "alpha_job"), what="alpha's jobs")
        app.quit_guards.append(lambda: "2 in-process consumer(s) running")
        app.switch_profile("beta")
        await pilot.pause()
        assert any("not switching to beta" in n.message for n in app._notifications)
        assert app.profile == "alpha"
