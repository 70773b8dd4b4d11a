"""The fleet inside the console: the fleet screen as a mode, Enter to an installation, `0` back.

A console started by `pgq-console fleet` has no installation open at first: it shows the fleet
screen. Enter opens the selected installation with the same swap a profile switch uses (every
screen rebuilt on the new connection, the switch audited); `0`, or esc on a screen with nothing
else to close, returns to the fleet, which kept refreshing meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING

from pgq_console.core.errors import ConsoleError
from pgq_console.core.fleet import DEFAULT_INTERVAL_S, Fleet, Member, without_label
from pgq_console.core.target import DriverKind
from pgq_console.core.text import printable
from pgq_console.core.workers import DEFAULT_STALE_AFTER

if TYPE_CHECKING:
    from pgq_console.config import Target
    from pgq_console.keyboard import KeyboardApp

FLEET_MODE = "fleet"


@dataclass
class FleetHost:
    """What a console started on a fleet knows: the installations and how to open each."""

    members: tuple[Member, ...]
    # The full console's target of each member (its own driver, pool, replica).
    targets: dict[str, Target] = field(default_factory=dict)
    interval_s: float = DEFAULT_INTERVAL_S
    stale_after: timedelta = DEFAULT_STALE_AFTER
    fleet: Fleet | None = None
    current: str | None = None  # the member whose console is open


def fleet_target(target: Target) -> Target:
    """The fleet's own connection to an installation: one plain connection (LISTEN shares it),
    psycopg when the profile asks for it, no replica."""
    driver = DriverKind.PSYCOPG if target.driver.startswith("psycopg") else DriverKind.ASYNCPG
    return replace(target, driver=driver.value, replica_dsn=None)


def show_fleet(app: KeyboardApp, host: FleetHost) -> None:
    """Add the fleet mode (its screen runs the fleet) and show it."""
    from pgq_console.screens.fleet import FleetScreen

    fleet = host.fleet = Fleet(
        host.members,
        app.clock,
        interval_s=host.interval_s,
        listen=app.listen,
        stale_after=host.stale_after,
    )
    app.add_mode(
        FLEET_MODE, lambda: FleetScreen(fleet, app.clock, lambda key: open_member(app, host, key))
    )
    app.switch_mode(FLEET_MODE)


FLEET_JUMP = "screens show one installation: open the highlighted one with enter first"


def fleet_hides(host: FleetHost | None, current_mode: str, action: str) -> bool:
    """`0` exists only in a console started on a fleet; on the fleet screen, `e` (which would
    enqueue into the installation opened last, not one the operator is looking at) does not."""
    if action == "fleet":
        return host is None
    if action == "enqueue":
        return host is not None and current_mode == FLEET_MODE
    return False


def on_fleet_screen(host: FleetHost | None, current_mode: str) -> bool:
    """Whether the fleet screen is the one shown (keys that act on one installation wait)."""
    return host is not None and current_mode == FLEET_MODE


def to_fleet(app: KeyboardApp, host: FleetHost | None) -> bool:
    """`0`: the fleet screen; False when the console was not started on a fleet."""
    if host is None or host.fleet is None:
        return False
    if app.current_mode != FLEET_MODE:
        app.switch_mode(FLEET_MODE)
    return True


def back_to_fleet(app: KeyboardApp, host: FleetHost | None) -> bool:
    """esc on an installation's screen with nothing of its own to close: the fleet."""
    if host is None or app.current_mode == FLEET_MODE or len(app.screen_stack) > 1:
        return False
    return to_fleet(app, host)


def open_member(app: KeyboardApp, host: FleetHost, key: str) -> None:
    """Enter on the fleet: that installation's console (the open one again, or a new one)."""
    if host.current == key and app.backend is not None:
        app.switch_mode("overview")
        return
    app.run_worker(
        _open_member(app, host, key), group="fleet-open", exclusive=True, exit_on_error=False
    )


async def _open_member(app: KeyboardApp, host: FleetHost, key: str) -> None:
    from pgq_console.config import open_target

    member = next(m for m in host.members if m.key == key)
    label = printable(member.label, limit=60)
    reason = app.context.reason_to_stay()
    if reason:
        app.notify(f"not opening {label}: {reason}", severity="warning", markup=False)
        return
    if not app.begin_switch():
        app.notify("already opening an installation", severity="warning", markup=False)
        return
    try:
        app.notify(f"connecting to {label}…", markup=False, timeout=3)
        try:
            backend = await open_target(host.targets[key])
        except ConsoleError as exc:
            # The installation named once ("x: cannot reach x: refused" said it twice).
            cause = without_label(str(exc), member.label)
            app.notify(f"{label}: {printable(cause)}", severity="error", markup=False)
            return
        if not backend.capabilities.can_read:  # the enqueue-only driver (psycopg-sync)
            await backend.close()
            app.notify(
                f"{label} uses the enqueue-only psycopg-sync driver: open it with --profile",
                severity="warning",
                markup=False,
            )
            return
        await app.use_backend(backend, host.targets[key])
        host.current = key
    finally:
        app.end_switch()
