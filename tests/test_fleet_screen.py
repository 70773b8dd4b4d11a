"""The fleet screen (key 0): rows sorted by trouble, Enter into an installation, esc back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.config import Environment, Target
from pgq_console.console_bundle import FLEET_BUNDLE
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import Clock, FixedClock, SystemClock
from pgq_console.core.errors import ConsoleError
from pgq_console.core.fleet import DEFAULT_INTERVAL_S, Member
from pgq_console.core.target import DriverKind, Installation
from pgq_console.fleet_console import FLEET_JUMP, FLEET_MODE, FleetHost
from pgq_console.screens.fleet import FleetScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.live_table import LiveTable
from tests.conftest import drop_database, make_database
from tests.helpers import has_row
from tests.screens_support import FIXED_NOW, seed, until

# Port 1 on the loopback: nothing listens there, and the message names the same port every run.
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"
LATE_SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint, execute_after)
SELECT 0, 'queued', 'send_email', $1::timestamptz - interval '10 minutes'
FROM generate_series(1, 10);
INSERT INTO pgqueuer (priority, status, entrypoint) SELECT 0, 'failed', 'charge_card'
FROM generate_series(1, 3)
"""
CALM_SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint, execute_after)
SELECT 0, 'queued', 'resize_image', $1::timestamptz - interval '30 seconds'
FROM generate_series(1, 2)
"""


@pytest.fixture(scope="module")
def databases(server_dsn: str) -> Iterator[tuple[str, str]]:
    late = make_database(server_dsn, "fleet_screen_late")
    calm = make_database(server_dsn, "fleet_screen_calm")
    try:
        seed(late, LATE_SEED, FIXED_NOW)
        seed(calm, CALM_SEED, FIXED_NOW)
        yield late, calm
    finally:
        drop_database(server_dsn, late)
        drop_database(server_dsn, calm)


def _member(key: str, dsn: str, environment: str | None, color: str | None) -> Member:
    async def open_() -> Backend:
        backend = await open_backend(DriverKind.ASYNCPG, dsn, Installation(), key, ())
        assert isinstance(backend, Backend)
        return backend

    return Member(key=key, label=key, open=open_, environment=environment, color=color)


def fleet_console(databases: tuple[str, str], clock: Clock) -> PgqConsole:
    late, calm = databases

    async def nothing_open() -> Any:
        raise ConsoleError("no installation is open")

    installations = [
        ("search", calm, Environment("staging")),
        ("billing", late, Environment("PROD", "red")),
        ("legacy", UNREACHABLE, None),
    ]
    members = [
        _member(key, dsn, env.label if env else None, env.color if env else None)
        for key, dsn, env in installations
    ]
    targets = {
        key: Target(dsn=dsn, profile=key, environment=env) for key, dsn, env in installations
    }
    app = PgqConsole(nothing_open, clock=clock)
    app.animation_level = "none"
    app.fleet_host = FleetHost(
        members=tuple(members), targets=targets, stale_after=timedelta(seconds=90)
    )
    return app


def fleet_screen(app: PgqConsole) -> FleetScreen:
    screen = app.screen
    assert isinstance(screen, FleetScreen)
    return screen


async def _until_read(pilot: Pilot[Any]) -> None:
    """Every installation read once (or found down)."""
    app = pilot.app
    assert isinstance(app, PgqConsole)
    await until(pilot, lambda: isinstance(app.screen, FleetScreen))
    fleet = fleet_screen(app).fleet
    await until(
        pilot,
        lambda: all(row.read_at is not None or row.down for row in fleet.rows.values()),
    )
    table = app.screen.query_one("#fleet-table", LiveTable)
    await until(
        pilot, lambda: table.row_count == 3 and table.get_cell("billing", "ready").plain == "10"
    )
    await pilot.pause()


def test_fleet_snapshot_80x24(snap_compare: Any, databases: tuple[str, str]) -> None:
    app = fleet_console(databases, FixedClock(FIXED_NOW))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_until_read)


def test_fleet_snapshot_160x48(snap_compare: Any, databases: tuple[str, str]) -> None:
    app = fleet_console(databases, FixedClock(FIXED_NOW))
    assert snap_compare(app, terminal_size=(160, 48), run_before=_until_read)


async def test_rows_sorted_by_trouble_enter_opens_esc_and_0_come_back(
    databases: tuple[str, str],
) -> None:
    app = fleet_console(databases, SystemClock())
    async with app.run_test(size=(140, 30)) as pilot:
        await _until_read(pilot)
        fleet = fleet_screen(app).fleet
        table = app.screen.query_one("#fleet-table", LiveTable)
        # Down first, then the one whose oldest ready job is over its threshold, then calm.
        order = sorted(["search", "billing", "legacy"], key=table.get_row_index)
        assert order == ["legacy", "billing", "search"]
        assert table.get_cell("legacy", "state").plain.startswith("down since ")
        assert table.get_cell("legacy", "ready").plain == "–"
        assert table.get_cell("billing", "held").plain == "3"
        assert table.get_cell("billing", "env").plain == "PROD"
        assert table.get_cell("billing", "state").plain == "up · live"
        assert table.get_cell("search", "ready").plain == "2"
        summary = str(app.screen.query_one("#fleet-summary").render())
        assert "3 installations" in summary and "1 down" in summary
        detail = str(app.screen.query_one("#fleet-detail").render())
        assert "connection refused" in detail  # the selected (down) row's error

        # Enter on billing: its full console, on its own connection.
        await pilot.press("down")
        await until(pilot, lambda: table.selected_key == "billing")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        assert app.profile == "billing" and app.environment == Environment("PROD", "red")
        await until(pilot, lambda: has_row(app, "send_email"))
        # Nobody sees the fleet: its reads rest (an interval passes without one).
        assert not fleet.visible()
        read_at = fleet.rows["billing"].read_at
        await pilot.pause(DEFAULT_INTERVAL_S + 0.5)
        assert fleet.rows["billing"].read_at == read_at
        # esc returns to the fleet, which kept its rows, and reads again at once.
        await pilot.press("escape")
        await until(pilot, lambda: app.current_mode == FLEET_MODE)
        assert table.row_count == 3
        await until(pilot, lambda: fleet.rows["billing"].read_at != read_at, within=5)
        # Enter on the open one again: straight back to it; `0` from there: the fleet.
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("0")
        await until(pilot, lambda: app.current_mode == FLEET_MODE)
        # On the fleet, `e` does not enqueue into the installation opened last.
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        # Nor does `I` bundle the installation opened last: it says to open one.
        said: list[str] = []
        notify = app.notify

        def capture(message: str, **options: Any) -> None:
            said.append(message)
            notify(message, **options)

        app.notify = capture  # type: ignore[method-assign]
        await pilot.press("I")
        await until(pilot, lambda: FLEET_BUNDLE in said)
        assert app.bundle_path is None
        # Nor do number keys show the installation opened last (billing) while the cursor is
        # on another row: its Jobs screen names no database, and a requeue there hits billing.
        await pilot.press("down")
        await until(pilot, lambda: table.selected_key == "search")
        await pilot.press("2")
        await until(pilot, lambda: FLEET_JUMP in said)
        await pilot.pause()
        assert app.current_mode == FLEET_MODE and isinstance(app.screen, FleetScreen)


async def test_an_unreachable_installation_cannot_be_opened(databases: tuple[str, str]) -> None:
    app = fleet_console(databases, SystemClock())
    async with app.run_test(size=(140, 30)) as pilot:
        await _until_read(pilot)
        table = app.screen.query_one("#fleet-table", LiveTable)
        await until(pilot, lambda: table.selected_key == "legacy")
        said: list[str] = []
        notify = app.notify

        def capture(message: str, **options: Any) -> None:
            said.append(message)
            notify(message, **options)

        app.notify = capture  # type: ignore[method-assign]
        await pilot.press("enter")
        await until(pilot, lambda: any("connection refused" in line for line in said))
        assert app.current_mode == FLEET_MODE and app.backend is None


def test_long_labels_are_cut_in_the_middle_so_databases_stay_apart() -> None:
    from pgq_console.screens.fleet import _middle

    one = _middle("postgres@127.0.0.1:5432/qa_lead_db", 32)
    two = _middle("postgres@127.0.0.1:5432/qa_lead_db2", 32)
    assert one != two and len(one) == len(two) == 32
    assert one.endswith("qa_lead_db") and two.endswith("qa_lead_db2")
    assert _middle("billing", 32) == "billing"


async def test_a_console_given_several_installations_starts_on_the_fleet(
    databases: tuple[str, str],
) -> None:
    """`pgq-console --dsn A --dsn B --dsn C` (the plain console): the fleet screen with all
    three, Enter opens one, `0` comes back. It used to open C alone. Enter on the unreachable
    one says why, naming it once."""
    from pgq_console.cli import build_parser
    from pgq_console.cli.dispatch import starts_as_fleet
    from pgq_console.fleet_cli import fleet_app

    late, calm = databases
    line = ["--dsn", calm, "--refresh", "1", "--dsn", late, "--dsn", UNREACHABLE]
    args = build_parser().parse_args(line)
    assert starts_as_fleet(args)
    app = fleet_app(args)
    app.animation_level = "none"
    said: list[str] = []
    notify = app.notify

    def capture(message: str, **options: Any) -> None:
        said.append(message)
        notify(message, **options)

    app.notify = capture  # type: ignore[method-assign]
    async with app.run_test(size=(140, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        table = app.screen.query_one("#fleet-table", LiveTable)
        await until(pilot, lambda: table.row_count == 3)
        await until(
            pilot,
            lambda: (
                table.get_cell("dsn-1", "ready").plain == "2"
                and table.get_cell("dsn-2", "ready").plain == "10"
                and table.get_cell("dsn-3", "state").plain.startswith("down")
            ),
        )
        labels = [table.get_cell(key, "installation").plain for key in ("dsn-1", "dsn-2")]
        assert "calm" in labels[0] and "late" in labels[1], labels
        # Down on top: Enter says why, the installation named once.
        assert table.selected_key == "dsn-3"
        await pilot.press("enter")
        await until(pilot, lambda: any("connection refused" in text for text in said))
        (refused,) = [text for text in said if "connection refused" in text]
        assert refused.count("nobody@127.0.0.1:1/nothing") == 1, refused
        # The one over its threshold next; Enter opens it, `0` comes back.
        await pilot.press("down")
        await until(pilot, lambda: table.selected_key == "dsn-2")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await until(pilot, lambda: has_row(app, "send_email"))
        await pilot.press("0")
        await until(pilot, lambda: app.current_mode == FLEET_MODE)
        assert table.row_count == 3


async def test_the_summary_fits_80_columns_with_every_kind_of_trouble(
    databases: tuple[str, str],
) -> None:
    """Down, waiting too long and held growing at once: one line at 80 columns (it wrapped
    mid-phrase, "1 held / growing", and pushed the table down)."""
    from dataclasses import replace

    app = fleet_console(databases, FixedClock(FIXED_NOW))
    async with app.run_test(size=(80, 24)) as pilot:
        await _until_read(pilot)
        screen = fleet_screen(app)
        watch = screen.fleet.watches["search"]
        watch.row = replace(watch.row, held_growth=12)
        screen._show()
        await pilot.pause()
        summary = app.screen.query_one("#fleet-summary")
        text = str(summary.render())
        assert "1 down" in text and "1 waiting too long" in text and "1 held growing" in text
        assert summary.size.height == 1, text


@pytest.fixture
def bare_database(server_dsn: str) -> Iterator[str]:
    """A database without PgQueuer's schema."""
    bare = make_database(server_dsn, "fleet_screen_bare", install=False)
    try:
        yield bare
    finally:
        drop_database(server_dsn, bare)


async def test_an_installation_without_the_schema_counts_in_error_not_down(
    bare_database: str, databases: tuple[str, str]
) -> None:
    """The summary line says what the rows say: a server that answers without PgQueuer's schema
    is 'in error', not 'down' (which sends the reader to check the network)."""
    _, calm = databases
    app = PgqConsole(_nothing_open, clock=SystemClock())
    app.animation_level = "none"
    pairs = (("calm", calm), ("bare", bare_database))
    app.fleet_host = FleetHost(
        members=tuple(_member(key, dsn, None, None) for key, dsn in pairs),
        targets={key: Target(dsn=dsn, profile=key) for key, dsn in pairs},
        stale_after=timedelta(seconds=90),
    )
    async with app.run_test(size=(100, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FleetScreen))
        table = app.screen.query_one("#fleet-table", LiveTable)
        await until(
            pilot,
            lambda: (
                table.row_count == 2
                and table.get_cell("bare", "state").plain.startswith("error since ")
            ),
        )
        summary = app.screen.query_one("#fleet-summary")
        await until(pilot, lambda: "1 in error" in str(summary.render()))
        assert "down" not in str(summary.render())


async def _nothing_open() -> Any:
    raise ConsoleError("no installation is open")
