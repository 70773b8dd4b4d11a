"""The keys of a console started by `pgq-console fleet`: `0` to the fleet screen, esc back to it
from an installation's screen, and no `e` on the fleet screen (fleet_console.py does the work).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgq_console.keyboard import KeyboardApp

if TYPE_CHECKING:
    from pgq_console.fleet_console import FleetHost


class FleetModeApp(KeyboardApp):
    """The fleet as one more mode, when `fleet_host` is set before the app runs."""

    # Set by `pgq-console fleet` before the app runs (see fleet_console.py).
    fleet_host: FleetHost | None = None

    def show_fleet(self) -> None:
        """Start the fleet and show its screen (the console opens on it)."""
        from pgq_console.fleet_console import show_fleet

        assert self.fleet_host is not None
        show_fleet(self, self.fleet_host)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.fleet_host is None:
            # A console on one installation (`fleet_hides` without a fleet): only `0` is hidden,
            # and the fleet's module (core.fleet, the workers' and actions' queries) is not
            # imported for it: the footer asks before the first numbers are painted.
            if action == "fleet":
                return False
            return super().check_action(action, parameters)
        from pgq_console.fleet_console import fleet_hides

        if fleet_hides(self.fleet_host, self.current_mode, action):
            return False
        return super().check_action(action, parameters)

    def action_jump(self, key: str) -> None:
        """Number keys on the fleet screen would show the installation opened last, not the
        highlighted row (a requeue there acts on another database): they say to open one."""
        from pgq_console.fleet_console import FLEET_JUMP, on_fleet_screen

        if on_fleet_screen(self.fleet_host, self.current_mode):
            self.notify(FLEET_JUMP, severity="warning", markup=False)
            return
        super().action_jump(key)

    def action_fleet(self) -> None:
        """`0`: the fleet screen, in a console started on several installations."""
        from pgq_console.fleet_console import to_fleet

        self._dismiss_overlays()
        to_fleet(self, self.fleet_host)

    async def action_back(self) -> None:
        """esc: back to the fleet from an installation's screen, else Textual's back."""
        from pgq_console.fleet_console import back_to_fleet

        if not back_to_fleet(self, self.fleet_host):
            await super().action_back()
