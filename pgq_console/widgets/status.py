"""Job states, defined once: the glyph, the theme variable for its colour, and the word.

Every screen that shows a state uses `status_text` (or `STATUS_STYLES`), so a state looks the
same everywhere, and still reads without colour (NO_COLOR, the monochrome theme): the glyph
and the word carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import App


@dataclass(frozen=True)
class StatusStyle:
    glyph: str
    variable: str  # theme variable holding the colour
    word: str


STATUS_STYLES: dict[str, StatusStyle] = {
    # Queue states (pgqueuer's `status` column, plus the console's derived ones).
    "queued": StatusStyle("○", "status-ready", "queued"),
    "ready": StatusStyle("○", "status-ready", "ready"),
    "deferred": StatusStyle("◷", "status-deferred", "deferred"),
    "picked": StatusStyle("▶", "status-picked", "picked"),
    "failed": StatusStyle("✖", "status-held", "held"),
    "held": StatusStyle("✖", "status-held", "held"),
    "stale": StatusStyle("⚠", "status-stale", "stale"),
    # Log states.
    "successful": StatusStyle("✔", "status-ready", "successful"),
    "exception": StatusStyle("!", "status-exception", "exception"),
    "canceled": StatusStyle("⊘", "status-deferred", "canceled"),
    "deleted": StatusStyle("−", "status-deferred", "deleted"),
}
UNKNOWN_STATUS = StatusStyle("?", "muted", "?")


def status_style(status: str) -> StatusStyle:
    return STATUS_STYLES.get(status, UNKNOWN_STATUS)


def status_colour(app: App[object], status: str) -> str:
    return app.theme_variables.get(status_style(status).variable, "")


def status_text(app: App[object], status: str, *, word: bool = True) -> Text:
    """`✖ held` in the held colour; unknown states are shown as they are, escaped."""
    style = STATUS_STYLES.get(status)
    if style is None:
        return Text(f"? {status}" if word else "?")
    label = f"{style.glyph} {style.word}" if word else style.glyph
    return Text(label, style=app.theme_variables.get(style.variable, ""))


def marked_count(app: App[object], status: str, value: str) -> Text:
    """A count that carries its state's glyph, e.g. `✖ 4` for held jobs."""
    style = status_style(status)
    return Text(
        f"{style.glyph} {value}",
        style=app.theme_variables.get(style.variable, ""),
        justify="right",
    )
