"""Where the config lives, and reading it (size, permissions, TOML, validation)."""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

import platformdirs
from pydantic import (
    ValidationError,
)

from pgq_console.config.errors import ConfigError, describe_toml_error, describe_validation_error
from pgq_console.config.schema import APP_NAME, CONFIG_FILE_NAME, ENV_PREFIX, EnvConfig, FileConfig


def config_dir() -> Path:
    return platformdirs.user_config_path(APP_NAME)


def default_config_path() -> Path:
    return config_dir() / CONFIG_FILE_NAME


def user_theme_dir() -> Path:
    return config_dir() / "themes"


MAX_CONFIG_BYTES = 1 << 20


def load_file(path: Path, *, required: bool) -> tuple[FileConfig, bool, list[str]]:
    """The parsed file, whether it exists, and warnings (a password readable by others)."""
    try:
        with path.open("rb") as handle:  # bounded: `--config /dev/zero` never ends
            raw = handle.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES:,} bytes")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file not found: {path}") from None
        return FileConfig(), False, []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(describe_toml_error(exc, path, text)) from None
    try:
        config = FileConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path, text)) from None
    warnings = []
    holders = [name for name, p in config.profiles.items() if p.holds_password]
    if holders and _readable_by_others(path):
        warnings.append(
            f"{path} holds a password (profile {', '.join(holders)}) and is readable by other "
            f"users: run `chmod 600 {path}`, or use .pgpass, password_env or password_command"
        )
    return config, True, warnings


def _load_env(environ: Mapping[str, str]) -> EnvConfig:
    names = {name: f"{ENV_PREFIX}{name.upper()}" for name in EnvConfig.model_fields}
    values = {
        field_name: environ[var]
        for field_name, var in names.items()
        if environ.get(var) not in (None, "")
    }
    try:
        return EnvConfig.model_validate(values) if values else EnvConfig.model_construct()
    except ValidationError as exc:
        error = exc.errors()[0]
        var = names.get(str(error["loc"][0]), str(error["loc"][0]))
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{var}: {message}") from None


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def describe_paths() -> list[tuple[str, Path]]:
    """What `pgq-console paths` prints."""
    from pgq_console.core.audit import audit_log_path
    from pgq_console.themes import builtin_theme_dirs

    paths = [
        ("config file", default_config_path()),
        ("user themes", user_theme_dir()),
        ("log file", platformdirs.user_log_path(APP_NAME) / "console.log"),
        ("audit file", audit_log_path()),
    ]
    paths += [("built-in themes", path) for path in builtin_theme_dirs()]
    return paths
