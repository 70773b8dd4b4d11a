"""Persistent banners at the top of a screen: a problem the operator must know about."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Banner(Static):
    """Hidden until `show`; `variant` picks the warning or error style from the stylesheet."""

    def show(self, message: str, *, variant: str = "warning") -> None:
        self.set_class(variant == "warning", "-warning")
        self.set_class(variant == "error", "-error")
        self.update(Text(message))
        self.display = True

    def hide(self) -> None:
        self.display = False
