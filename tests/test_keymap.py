"""`[keymap]` in the config file remaps keys by binding id; an unknown id is a one-line error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pgq_console.app import PgqConsole, console_binding_ids, console_keymap_problem
from pgq_console.cli import make_app
from pgq_console.config import CliOptions, ConfigError, Settings, load_settings, open_target
from pgq_console.core.backend import Backend
from pgq_console.keymap import keymap_problem
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import enqueue, wait_until


@pytest.fixture(scope="module")
def keymap_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "keymap")
    asyncio.run(enqueue(dsn, "remapped", 2))
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def settings_with(tmp_path: Path, dsn: str, keymap: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(f'[profiles.main]\ndsn = "{dsn}"\n\n[keymap]\n{keymap}\n')
    path.chmod(0o600)
    return load_settings(CliOptions(config=str(path), profile="main"), {})


def app_for(settings: Settings) -> Any:
    async def opener() -> Backend:
        return await open_target(settings.target)

    app = make_app(settings, opener)
    app.animation_level = "none"
    return app


async def test_a_remapped_key_runs_its_action_and_the_old_key_does_not(
    tmp_path: Path, keymap_dsn: str
) -> None:
    settings = settings_with(
        tmp_path, keymap_dsn, '"screen.2" = "x"\n"overview.toggle-pause" = "z"'
    )
    app = app_for(settings)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="overview")
        overview = app.screen
        assert isinstance(overview, OverviewScreen)
        await pilot.press("p")  # the default key of pause: no longer bound
        await pilot.pause()
        assert overview.refresher is not None and not overview.refresher.status.paused
        await pilot.press("z")
        refresher = overview.refresher
        await wait_until(pilot, lambda: refresher.status.paused, what="paused by z")
        await pilot.press("2")  # the default key of the Jobs screen: no longer bound
        await pilot.pause()
        assert app.current_mode == "overview"
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen), what="jobs by x")


async def test_an_unknown_binding_id_ends_the_console_with_one_line(
    tmp_path: Path, keymap_dsn: str
) -> None:
    settings = settings_with(tmp_path, keymap_dsn, '"overview.toggle-paws" = "z"')
    app = app_for(settings)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert app.return_code == 2


def test_a_key_taken_from_another_binding_is_a_one_line_error() -> None:
    def conflict(keymap: dict[str, str]) -> str | None:
        return console_keymap_problem(keymap, PgqConsole, "c.toml")

    # q would open Jobs and quit no more: said, with both ids.
    assert conflict({"screen.2": "q"}) == (
        "c.toml: keymap: 'screen.2' takes key 'q', which 'quit' also uses: "
        "give one of them another key"
    )
    assert conflict({"quit": "ctrl+q", "screen.2": "q"}) is None  # q freed first
    assert conflict({"live-table.cursor-down": "n"}) is None
    found = conflict({"live-table.cursor-down": "enter"})  # the table's select
    assert found is not None and "'live-table.select'" in found
    # A screen's key over the app's is how Textual's defaults work: not a conflict.
    assert conflict({"job.requeue": "q"}) is None
    assert conflict({}) is None
    assert conflict({"screen.2": "x", "overview.toggle-pause": "z"}) is None
    # The README's example (x is also the Consumers screen's cancel: that screen's key wins
    # there, as screens' keys do); a dialog's own keys (n: no) shadow the app's likewise.
    example = {"quit": "ctrl+q", "screen.2": "x", "cursor.down": "j,down", "job.requeue": "ctrl+r"}
    assert conflict(example) is None
    assert conflict({"cursor.down": "n"}) is None


async def test_a_conflicting_keymap_ends_the_console_with_one_line(
    tmp_path: Path, keymap_dsn: str
) -> None:
    settings = settings_with(tmp_path, keymap_dsn, '"screen.2" = "q"')
    app = app_for(settings)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert app.return_code == 2


def test_unknown_ids_are_named_with_the_nearest_known_one() -> None:
    known = console_binding_ids()
    assert {"quit", "help", "screen.2", "cursor.down", "job.requeue", "refresh"} <= known
    assert keymap_problem({"quit": "ctrl+q"}, known, "c.toml") is None
    problem = keymap_problem({"job.reqeue": "R"}, known, "c.toml")
    assert problem == "c.toml: keymap: unknown binding id 'job.reqeue'; did you mean 'job.requeue'?"
    assert "\n" not in (keymap_problem({"nothing-like-it": "x"}, known, "c.toml") or "\n")
    assert keymap_problem({"quit": " , "}, known, "c.toml") == "c.toml: keymap: 'quit' has no keys"


def test_a_key_no_terminal_sends_is_a_one_line_error() -> None:
    # "ctrl+shift+banana" (or an escape sequence) was taken: the action it replaced was left
    # with no key at all, and the escape sequence reached the terminal through the footer.
    known = console_binding_ids()
    down = "live-table.cursor-down"
    assert keymap_problem({down: "ctrl+shift+banana"}, known, "c.toml") == (
        f"c.toml: keymap: {down!r}: key 'ctrl+shift+banana': no such key"
    )
    escape = keymap_problem({"help": "\x1b[31m"}, known, "c.toml")
    assert escape == "c.toml: keymap: 'help': key '\\x1b[31m': no such key"
    assert "unknown modifier 'cmd'" in (keymap_problem({"quit": "cmd+q"}, known, "c") or "")
    assert "no such key" in (keymap_problem({"quit": "ctrl+"}, known, "c") or "")
    fine = "j,down,ctrl+q,R,question_mark,full_stop,plus,f5,shift+tab,space,escape,é"
    assert keymap_problem({down: fine}, known, "c.toml") is None


def test_every_default_key_of_the_console_passes_the_key_check() -> None:
    from textual.binding import Binding
    from textual.dom import DOMNode

    from pgq_console.keymap import key_problem

    console_binding_ids()  # imports every screen
    keys: set[str] = set()
    pending: list[type] = [DOMNode]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if not cls.__module__.startswith("pgq_console."):
            continue
        for binding in cls.__dict__.get("BINDINGS", ()):
            key = binding.key if isinstance(binding, Binding) else binding[0]
            keys.update(k.strip() for k in key.split(",") if k.strip())
    assert len(keys) > 30
    assert {key: key_problem(key) for key in keys if key_problem(key)} == {}


def test_a_keymap_value_that_is_not_a_string_is_a_config_error(
    tmp_path: Path, keymap_dsn: str
) -> None:
    with pytest.raises(ConfigError, match="keymap"):
        settings_with(tmp_path, keymap_dsn, "quit = 3")


async def test_a_live_table_key_is_remapped_by_its_id(tmp_path: Path, keymap_dsn: str) -> None:
    settings = settings_with(tmp_path, keymap_dsn, '"live-table.cursor-down" = "n"')
    app = app_for(settings)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, OverviewScreen), what="overview")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, JobsScreen), what="jobs")
        table = app.screen.query_one("#jobs-table", LiveTable)
        await wait_until(pilot, lambda: table.row_count == 2, what="the two jobs")
        table.focus()
        await pilot.pause()
        assert table.cursor_row == 0
        await pilot.press("down")  # the default key: no longer bound
        await pilot.pause()
        assert table.cursor_row == 0
        await pilot.press("n")
        await wait_until(pilot, lambda: table.cursor_row == 1, what="the cursor moved by n")
