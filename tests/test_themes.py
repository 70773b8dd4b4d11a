"""Themes: every built-in one on the overview (snapshots), user themes, broken files, NO_COLOR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgq_console.app import PgqConsole
from pgq_console.config import user_theme_dir
from pgq_console.themes import builtin_theme_dirs, choose_theme, load_themes, theme_dirs
from pgq_console.widgets.status import STATUS_STYLES
from tests import test_snapshots
from tests.helpers import notifications_of
from tests.test_snapshots import console, opener_for, until_overview_ready

# The seeded, fixed-clock database of the overview snapshots (a module-scoped fixture).
snapshot_dsn = test_snapshots.snapshot_dsn
seeded_dsn = test_snapshots.seeded_dsn

BUILTIN = ["pgq-dark", "pgq-light", "pgq-high-contrast", "pgq-monochrome"]


def test_builtin_themes_load_cleanly() -> None:
    themes, problems = load_themes(builtin_theme_dirs())
    assert problems == []
    assert sorted(theme.name for theme in themes) == sorted(BUILTIN)
    for theme in themes:
        for style in STATUS_STYLES.values():
            assert style.variable in theme.variables, (theme.name, style.variable)


def test_monochrome_carries_no_status_colour() -> None:
    themes, _ = load_themes(builtin_theme_dirs())
    mono = next(theme for theme in themes if theme.name == "pgq-monochrome")
    status_colours = {mono.variables[s.variable] for s in STATUS_STYLES.values()}
    grey = {"#d0d0d0", "#ffffff", "#a8a8a8"}
    assert status_colours <= grey
    # ...so every state must be told apart by its glyph.
    by_glyph: dict[str, set[str]] = {}
    for name, style in STATUS_STYLES.items():
        by_glyph.setdefault(style.glyph, set()).add(name)
    synonyms = [{"queued", "ready"}, {"failed", "held"}]  # the same state, two names
    assert all(len(names) == 1 or names in synonyms for names in by_glyph.values()), by_glyph


def test_a_broken_user_theme_gives_one_message_and_the_default(tmp_path: Path) -> None:
    user_dir = user_theme_dir()
    user_dir.mkdir(parents=True)
    (user_dir / "night.toml").write_text('name = "night"\nprimary = "#123456"\n')
    (user_dir / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (user_dir / "garbage.toml").write_text("name = [")
    themes, problems = load_themes(theme_dirs(user_dir))
    assert "night" in {theme.name for theme in themes}
    assert len(problems) == 2
    name, message = choose_theme("broken", [t.name for t in themes], problems)
    assert name == "pgq-dark"
    assert message is not None and "broken.toml" in message and "primary" in message
    assert "using pgq-dark" in message and "garbage" not in message
    name, message = choose_theme("nope", [t.name for t in themes], [])
    assert (name, message) == ("pgq-dark", "unknown theme 'nope'; using pgq-dark")


def test_a_user_theme_cannot_replace_a_builtin(tmp_path: Path) -> None:
    user_dir = tmp_path / "themes"
    user_dir.mkdir()
    (user_dir / "mine.toml").write_text('name = "pgq-dark"\nprimary = "#ff00ff"\n')
    themes, _ = load_themes(theme_dirs(user_dir))
    dark = next(theme for theme in themes if theme.name == "pgq-dark")
    assert dark.primary == "#5fafff"


async def test_the_app_uses_a_user_theme_and_reports_a_broken_one(seeded_dsn: str) -> None:
    user_dir = user_theme_dir()
    user_dir.mkdir(parents=True)
    (user_dir / "night.toml").write_text('name = "night"\nprimary = "#123456"\n')
    (user_dir / "broken.toml").write_text('name = "broken"\nprimary = 7\n')
    app = console(opener_for(seeded_dsn), theme="broken")
    messages = notifications_of(app)  # every message of the run, not the toasts still up
    async with app.run_test(size=(100, 24)) as pilot:
        await until_overview_ready(pilot)
        assert len(messages) == 1 and "broken.toml" in messages[0], messages
        assert app.theme == "pgq-dark"
        assert "night" in app.available_themes


async def test_no_color_selects_monochrome(
    seeded_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = PgqConsole(opener_for(seeded_dsn))
    async with app.run_test(size=(100, 24)) as pilot:
        await until_overview_ready(pilot)
        assert app.theme == "pgq-monochrome"
        from tests.helpers import cell

        # Held failures and stale waits read without colour: glyph and number.
        assert cell(app, "charge_card", "held") == f"{STATUS_STYLES['held'].glyph} 4"
        assert cell(app, "build_report", "oldest").startswith(STATUS_STYLES["stale"].glyph)


@pytest.mark.parametrize("theme", BUILTIN)
def test_overview_in_each_theme(snap_compare: Any, seeded_dsn: str, theme: str) -> None:
    app = console(opener_for(seeded_dsn), theme=theme)
    assert snap_compare(app, terminal_size=(130, 24), run_before=until_overview_ready)
