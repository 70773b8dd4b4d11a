"""The keyboard model: j/k g/G, esc never quits, number keys, `:` commands, palette, quit,
and no repaint of header lines whose text did not change."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pgq_console import navigation
from pgq_console.app import PgqConsole
from pgq_console.commands import CommandLine, console_commands, find_command
from pgq_console.context import ConsumersGuard, QuitQuestion
from pgq_console.core.clock import FixedClock
from pgq_console.core.models import RefreshStatus
from pgq_console.messages import StatusChanged
from pgq_console.screens.help import HelpScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.status_line import LiveLine, QuietStatic
from tests.conftest import drop_database, make_database
from tests.helpers import (
    backend_for,
    enqueue,
    notifications_of,
    overview_of,
    table_of,
    wait_until,
)
from tests.test_snapshots import FIXED_NOW

ENTRYPOINTS = ["ep_a", "ep_b", "ep_c", "ep_d", "ep_e"]


@pytest.fixture(scope="module")
def keys_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "keys")

    async def seed() -> None:
        for entrypoint in ENTRYPOINTS:
            await enqueue(dsn, entrypoint, 2)

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def make(dsn: str) -> PgqConsole:
    async def opener() -> Any:
        return await backend_for(dsn)

    app = PgqConsole(opener, clock=FixedClock(FIXED_NOW))
    app.animation_level = "none"
    return app


async def ready(pilot: Any) -> None:
    app = pilot.app
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, OverviewScreen) and table_of(app).row_count == 5,
        what="five rows",
    )


async def test_j_k_g_and_G_move_the_table_cursor(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        table = table_of(app)
        assert table.cursor_row == 0
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == 4
        await pilot.press("g")
        assert table.cursor_row == 0


async def test_escape_never_quits_and_closes_overlays(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        await pilot.press("escape", "escape")
        assert app.is_running and isinstance(app.screen, OverviewScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("colon")
        assert isinstance(app.screen, CommandLine)
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen) and app.is_running


async def test_number_keys_jump_and_close_help_first(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        if len(navigation.SCREENS) < 2:
            pytest.skip("only one screen registered")
        second = navigation.SCREENS[1]
        await pilot.press("question_mark")
        await pilot.press(second.key)
        await pilot.pause()
        assert app.current_mode == second.mode
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("1")
        assert app.current_mode == "overview"


async def test_command_line_runs_screen_actions_and_jumps(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        overview = overview_of(app)
        await wait_until(pilot, lambda: overview.refresher is not None)
        assert overview.refresher is not None

        await pilot.press("colon", *"pause", "enter")
        refresher = overview.refresher
        await wait_until(pilot, lambda: refresher.status.paused, what="paused")
        await pilot.press("colon", *"theme pgq-light", "enter")
        await wait_until(pilot, lambda: app.theme == "pgq-light", what="theme")
        # History: up recalls the last command.
        await pilot.press("colon", "up")
        assert app.screen.query_one("#command-input").value == "theme pgq-light"  # type: ignore[attr-defined]
        await pilot.press("escape")

        await pilot.press("colon", *"nonsense", "enter")
        await pilot.pause()
        assert any("unknown command 'nonsense'" in n.message for n in app._notifications)
        assert app.is_running


async def test_palette_and_command_line_share_one_registry(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        commands = console_commands(app, app.screen)
        names = {command.name for command in commands}
        # Screens from the registry, the overview's own keys, themes, help and quit.
        assert {spec.mode for spec in navigation.SCREENS} <= names
        assert {"refresh", "pause", "faster", "slower", "help", "quit"} <= names
        assert "theme pgq-monochrome" in names
        found = find_command(commands, "fast")
        assert not isinstance(found, str) and found.name == "faster"
        assert find_command(commands, "q") == next(c for c in commands if c.name == "quit")
        assert "ambiguous" in str(find_command(commands, "theme pgq"))

        from pgq_console.commands import ConsoleCommandsProvider

        provider = ConsoleCommandsProvider(app.screen)
        titles = [str(hit.text) async for hit in provider.search("pause")]
        assert any("Pause" in title for title in titles)


async def palette_titles(app: PgqConsole, query: str) -> list[str]:
    """What the palette finds for `query`, over every provider it runs."""
    titles: list[str] = []
    for source in [*app.COMMANDS, *app.screen.COMMANDS]:
        provider_type = source if isinstance(source, type) else source()
        provider = provider_type(app.screen)
        titles += [str(hit.text) async for hit in provider.search(query)]
    return titles


async def test_palette_shows_one_hit_per_action_quit_theme_screenshot(keys_dsn: str) -> None:
    """One provider: Textual's system commands do not show a second `Quit` or `Theme`; what the
    console needs of them (screenshot) is in the console's registry, once."""
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        assert await palette_titles(app, "quit") == ["Quit  (q)  :quit"]
        themes = await palette_titles(app, "theme")
        assert themes and all(title.startswith("Theme: ") for title in themes), themes
        assert len(themes) == len(set(themes))
        assert any("pgq-monochrome" in title for title in themes)
        assert len(await palette_titles(app, "screenshot")) == 1
        assert len(await palette_titles(app, "help")) == 1


async def test_read_only_hides_write_commands(keys_dsn: str) -> None:
    async def opener() -> Any:
        return await backend_for(keys_dsn)

    app = PgqConsole(opener, clock=FixedClock(FIXED_NOW), read_only=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        for command in console_commands(app, app.screen):
            assert not command.name.startswith(("requeue", "cancel", "delete")), command


async def test_q_quits_and_asks_when_a_guard_says_so(keys_dsn: str) -> None:
    from pgq_console.screens.confirm import ConfirmDialog

    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        app.quit_guards.append(lambda: "2 in-process consumer(s) running")
        assert app.context.quit_reason() == "2 in-process consumer(s) running"
        # The one quit flow: asks, `n` stays, `y` quits.
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="question")
        assert "2 in-process consumer(s) running" in str(
            app.screen.query_one("#yesno-detail").render()
        )
        await pilot.press("n")
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
        assert app.is_running
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="again")
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert not app.is_running
    assert app.return_code == 0


class SlowWork:
    """A registered draining guard, as the in-process consumers are: asked about, then
    drained before the exit."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.drained = False
        self.release = release

    def __call__(self) -> str | None:
        return None if self.drained else "slow work running"

    def quit_question(self) -> QuitQuestion:
        return QuitQuestion("Slow work is running. Quit?", "it finishes first", "Drain", "…")

    async def drain(self) -> None:
        if self.release is not None:
            await self.release.wait()
        await asyncio.sleep(0.05)
        self.drained = True


async def test_q_asks_a_registered_draining_guard_and_drains_it_before_the_exit(
    keys_dsn: str,
) -> None:
    from pgq_console.screens.confirm import ConfirmDialog

    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        work = SlowWork()
        app.context.quit_guards.append(work)
        assert app.context.reason_to_stay() == "slow work running"  # a switch cannot wait
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="question")
        assert "Slow work is running" in str(app.screen.query_one("#yesno-question").render())
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert work.drained


async def test_q_again_while_draining_says_the_quit_is_under_way(keys_dsn: str) -> None:
    from pgq_console.screens.confirm import ConfirmDialog

    app = make(keys_dsn)
    said = notifications_of(app)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        release = asyncio.Event()
        app.context.quit_guards.append(SlowWork(release))
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "…" in said, what="the drain's notice")
        await pilot.press("q")  # an operator pressing q again: told, not ignored
        await wait_until(pilot, lambda: "Already quitting: …" in said, what="the answer")
        assert app.is_running
        release.set()
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert app.return_code == 0


async def test_the_consumers_register_their_quit_guard_with_their_supervisor(
    keys_dsn: str,
) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        assert not app.context.has_consumers and list(app.quit_guards) == []
        supervisor = app.context.consumers
        [guard] = app.quit_guards
        assert isinstance(guard, ConsumersGuard) and guard.supervisor is supervisor
        assert app.context.quit_reason() is None  # none running: nothing to ask


async def test_q_without_a_guard_quits_at_once(keys_dsn: str) -> None:
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        assert app.context.quit_reason() is None
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, what="the exit")
    assert app.return_code == 0


async def test_unchanged_header_lines_are_not_repainted(
    keys_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    updates: list[str] = []
    original = QuietStatic.update

    def counting(self: QuietStatic, *args: Any, **kwargs: Any) -> None:
        updates.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(QuietStatic, "update", counting)
    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        overview = overview_of(app)
        assert overview.refresher is not None
        overview.refresher.set_paused(True)  # no live updates in between
        await pilot.pause(0.2)
        status = RefreshStatus(channel="ch_pgqueuer", listening=True, paused=True)
        overview.post_message(StatusChanged(status))
        await pilot.pause()
        before = updates.count("LiveLine")
        for _ in range(5):
            overview.post_message(StatusChanged(status))
            await pilot.pause()
        assert updates.count("LiveLine") == before
        overview.post_message(StatusChanged(RefreshStatus(channel="ch_pgqueuer", paused=False)))
        await pilot.pause()
        assert updates.count("LiveLine") == before + 1
        assert "not listening" in str(overview.query_one(LiveLine).render())


def test_palette_text_is_literal() -> None:
    from textual.content import Content

    from pgq_console.commands import escape

    for text in ("Connect to profile prod [PROD]", "a [b]c[/] d", "[@click=app.quit]x"):
        assert Content.from_markup(escape(text)).plain == text


async def test_a_focused_field_keeps_a_steady_cursor(keys_dsn: str) -> None:
    """No blinking cursor: it would repaint its field twice a second over the SSH link (and
    make a screenshot depend on the moment it was taken)."""
    from textual.widgets import Input

    app = make(keys_dsn)
    async with app.run_test(size=(100, 24)) as pilot:
        await ready(pilot)
        await pilot.press("colon")
        field = app.screen.query_one("#command-input", Input)
        await wait_until(pilot, lambda: field.has_focus and not field.cursor_blink)
