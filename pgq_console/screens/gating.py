"""Read-only gating, written once: a screen's write actions are hidden (footer, help, `:` and
the palette all read `check_action`) and refused when its backend is read-only."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend


class ReadOnlyGate:
    """Mix in before the Screen class and list the write actions in `WRITE_ACTIONS`. A screen
    with more rules overrides `check_action` and ends with `super().check_action(...)`."""

    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset()
    backend: Backend

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.WRITE_ACTIONS and self.backend.read_only)
