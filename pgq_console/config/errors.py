"""Config errors that name the file, the line and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import (
    ValidationError,
)

from pgq_console.core.errors import ConsoleError


class ConfigError(ConsoleError):
    """A config file or variable the console cannot use; the message says where."""


def describe_toml_error(exc: tomllib.TOMLDecodeError, path: Path, text: str) -> str:
    """`FILE:LINE: not valid TOML: message (column N)`."""
    from pgq_console.core.text import printable

    message = printable(str(exc))
    found = re.search(r"\s*\(at line (\d+), column (\d+)\)", message)
    if found:
        detail = message[: found.start()]
        return f"{path}:{found.group(1)}: not valid TOML: {detail} (column {found.group(2)})"
    if "end of document" in message:
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
        detail = re.sub(r"\s*\(at end of document\)", "", message)
        return f"{path}:{line}: not valid TOML: {detail} (at the end of the file)"
    return f"{path}: not valid TOML: {message}"


def describe_validation_error(exc: ValidationError, path: Path, text: str) -> str:
    """The first problem as `FILE:LINE: KEY: message`."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    # Validators on a model (not a field) report "__root__"-like locations: drop non-keys.
    key = ".".join(loc)
    line = line_of(text, loc)
    where = f"{path}:{line}" if line else str(path)
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    message = message.removeprefix("Value error, ")
    from pgq_console.core.text import printable

    # Keys and values are the file's own text: a control character in one stays visible.
    return printable(f"{where}: {key}: {message}")


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _key_parts(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


def line_of(text: str, loc: list[str]) -> int | None:
    """The 1-based line where the key at `loc` is set (tables and plain keys; best effort)."""
    table: list[str] = []
    fallback = None
    for number, raw in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(raw)
        if header:
            table = _key_parts(header.group(1))
            if table == loc:
                fallback = number
            continue
        key, sep, _ = raw.partition("=")
        if not sep or raw.lstrip().startswith("#"):
            continue
        full = table + _key_parts(key)
        if full == loc:
            return number
        if fallback is None and full == loc[: len(full)] and len(full) < len(loc):
            fallback = number  # an inline table that holds the key
    if fallback is None and len(loc) > 1:
        return line_of(text, loc[:-1])  # e.g. a missing key: point at its table
    return fallback
