"""Themes are TOML files in `themes/` (packaged into the wheel); each becomes a Textual Theme."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError
from textual.theme import Theme

DEFAULT_THEME = "pgq-dark"

# Concrete colours every stylesheet rule may rely on, whatever theme is active.
VARIABLE_DEFAULTS = {
    "status-ready": "#87d787",
    "status-deferred": "#8a8a8a",
    "status-picked": "#5fafff",
    "status-held": "#ff5f87",
    "status-exception": "#ffaf5f",
    "status-stale": "#ffd75f",
    "banner-warning-background": "#5f4b00",
    "banner-error-background": "#5f0020",
    "muted": "#8a8a8a",
}


class ThemeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dark: bool = True
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    foreground: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    variables: dict[str, str] = {}

    def to_theme(self) -> Theme:
        fields = self.model_dump(exclude={"variables"})
        return Theme(**fields, variables={**VARIABLE_DEFAULTS, **self.variables})


def builtin_theme_dirs() -> list[Path]:
    """The wheel's packaged copy first, then the checkout's `themes/` (editable installs)."""
    here = Path(__file__).resolve().parent
    return [path for path in (here / "themes", here.parent / "themes") if path.is_dir()]


def load_themes(directories: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Every valid theme file, and one message per broken one (never raises)."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = ThemeFile.model_validate(tomllib.loads(path.read_text())).to_theme()
            except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
                first = str(exc).splitlines()[0]
                problems.append(f"theme {path.name} ignored: {first}")
                continue
            themes.setdefault(theme.name, theme)
    return list(themes.values()), problems
