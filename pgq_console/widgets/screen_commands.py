"""What a screen adds to the command registry (`commands.py`: `:` and the palette).

A screen implements `palette_commands()`, returning (title, help, callback) for what it can do
right now (write actions left out when read-only). A callback that is one of the screen's own
bound actions is listed once, from its key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class HasPaletteCommands(Protocol):
    def palette_commands(self) -> list[tuple[str, str, Callable[[], object]]]: ...
