"""Themes are TOML files: the built-in ones in `themes/` (packaged into the wheel as
`pgq_console/themes`) and the user's in the config directory's `themes/`; each becomes a Textual
Theme. A broken file never stops the console: it is reported once and the default theme is used.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

from pgq_console.core.text import one_line

DEFAULT_THEME = "pgq-dark"
MONOCHROME_THEME = "pgq-monochrome"

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


_VARIABLE_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_TEXT_STYLES = frozenset(
    {
        "none",
        "not",
        "bold",
        "dim",
        "italic",
        "underline",
        "underline2",
        "reverse",
        "strike",
        "blink",
        "overline",
    }
)


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

    @field_validator(
        "primary",
        "secondary",
        "accent",
        "warning",
        "error",
        "success",
        "foreground",
        "background",
        "surface",
        "panel",
    )
    @classmethod
    def _is_colour(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                Color.parse(value)
            except ColorParseError:
                raise ValueError(f"not a colour: {value!r}") from None
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        """A bad value would reach the stylesheet and stop the console (at start or on
        `:theme`): every variable is a colour, or text styles for `*-text-style`."""
        for name, setting in value.items():
            if not _VARIABLE_NAME.fullmatch(name):
                raise ValueError(f"variable name {name!r}: use lower-case words and '-'")
            if name.endswith("-text-style"):
                if not set(setting.split()) <= _TEXT_STYLES:
                    raise ValueError(f"{name}: not text styles: {setting!r}")
                continue
            try:
                Color.parse(setting)
            except ColorParseError:
                raise ValueError(f"{name}: not a colour: {setting!r}") from None
        return value

    def to_theme(self) -> Theme:
        fields = self.model_dump(exclude={"variables"})
        return Theme(**fields, variables={**VARIABLE_DEFAULTS, **self.variables})


def builtin_theme_dirs() -> list[Path]:
    """The package's own `themes/` (the wheel's copy), else the source checkout's `themes/`.

    Never a bare `themes/` beside the package: installed, that is site-packages/themes, where any
    other distribution could put "built-in" themes.
    """
    packaged = importlib.resources.files("pgq_console") / "themes"
    if packaged.is_dir():
        return [Path(str(packaged))]  # wheels install as plain directories
    checkout = Path(__file__).resolve().parent.parent
    if _is_source_checkout(checkout) and (checkout / "themes").is_dir():
        return [checkout / "themes"]  # an editable install or a run from the checkout
    return []


def _is_source_checkout(root: Path) -> bool:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        return bool(project["name"] == "pgq-console")
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return False


def default_theme() -> str:
    """pgq-dark, or the monochrome theme when NO_COLOR is set (https://no-color.org)."""
    return MONOCHROME_THEME if os.environ.get("NO_COLOR") else DEFAULT_THEME


def theme_dirs(user_dir: Path | None = None) -> list[Path]:
    """Built-in themes first (their names cannot be taken over), then the user's."""
    dirs = builtin_theme_dirs()
    if user_dir is not None and user_dir.is_dir():
        dirs.append(user_dir)
    return dirs


def load_themes(directories: Iterable[Path]) -> tuple[list[Theme], list[str]]:
    """Every valid theme file, and one message per broken one (never raises)."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in directories:
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = ThemeFile.model_validate(tomllib.loads(path.read_text())).to_theme()
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                problems.append(f"theme file {path} ignored: {one_line(str(exc))}")
                continue
            except ValidationError as exc:
                error = exc.errors()[0]
                key = ".".join(str(part) for part in error["loc"]) or "?"
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(f"theme file {path} ignored: {key}: {message}")
                continue
            except ValueError as exc:  # Textual's own colour parsing
                problems.append(f"theme file {path} ignored: {one_line(str(exc))}")
                continue
            themes.setdefault(theme.name, theme)
    return list(themes.values()), problems


def choose_theme(
    requested: str, available: Iterable[str], problems: list[str]
) -> tuple[str, str | None]:
    """The theme to use and at most one message: a broken or unknown theme means the default."""
    names = set(available)
    if requested in names:
        return requested, "; ".join(problems) if problems else None
    broken = [p for p in problems if Path(p.split(" ignored:")[0]).stem == requested]
    detail = broken[0] if broken else "; ".join([f"unknown theme {requested!r}", *problems])
    return DEFAULT_THEME, f"{detail}; using {DEFAULT_THEME}"
