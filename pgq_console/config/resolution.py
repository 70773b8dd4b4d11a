"""Resolving the settings: defaults < config file < variables < command line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgq_console.config.errors import ConfigError
from pgq_console.config.files import _load_env, default_config_path, load_file
from pgq_console.config.schema import (
    DEFAULT_DRIVER,
    DEFAULT_REFRESH_S,
    DEFAULT_SHUTDOWN_DRAIN_S,
    DEFAULT_THEME,
    ENV_PREFIX,
    NO_COLOR_THEME,
    EnvConfig,
    FileConfig,
    ProfileConfig,
    _check_driver,
    _check_pooler,
)
from pgq_console.config.secrets import _run_password_command, as_uri, build_uri, with_password
from pgq_console.core.target import display_dsn, dsn_parts, resolve_dsn, secrets_of


@dataclass(frozen=True)
class CliOptions:
    """What the command line said; None means "not given"."""

    config: str | None = None
    profile: str | None = None
    dsn: str | None = None
    driver: str | None = None
    schema: str | None = None
    prefix: str | None = None
    channel: str | None = None
    refresh: float | None = None
    theme: str | None = None
    read_only: bool = False
    pooler: str | None = None
    listen_dsn: str | None = field(default=None, repr=False)
    replica_dsn: str | None = field(default=None, repr=False)
    shutdown_drain: float | None = None
    consumer_reconnect_attempts: int | None = None


@dataclass(frozen=True)
class Environment:
    """The header badge of a profile, e.g. PROD in red."""

    label: str
    color: str | None = None


@dataclass(frozen=True)
class Target:
    """Where to connect and how; holds no password (that is fetched at connect time)."""

    dsn: str = ""
    driver: str = DEFAULT_DRIVER
    schema: str | None = None
    prefix: str | None = None
    channel: str | None = None
    read_only: bool = False
    profile: str | None = None
    environment: Environment | None = None
    password_env: str | None = field(default=None, repr=False)
    password_command: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    pooler: str = "auto"
    listen_dsn: str | None = field(default=None, repr=False)
    replica_dsn: str | None = field(default=None, repr=False)
    replica_max_lag: float | None = None

    def connect_dsn(
        self, environ: Mapping[str, str] = os.environ
    ) -> tuple[str, str, tuple[str, ...]]:
        """The DSN with its password, the header label, and the secrets to scrub from messages.

        Runs `password_command` (blocking: call it in a thread from async code).
        """
        dsn_parts(self.dsn)  # bad syntax: one line before any connection attempt
        label = display_dsn(self.dsn, environ)
        password = self.password
        if password is None and self.password_env:
            password = environ.get(self.password_env)
            if password is None:
                raise ConfigError(
                    f"profile {self.profile!r}: password variable {self.password_env} is not set"
                )
        if password is None and self.password_command:
            password = _run_password_command(self.password_command, self.profile)
        dsn = with_password(self.dsn, password) if password else self.dsn
        secrets = secrets_of(dsn, environ)
        return as_uri(dsn), label, secrets


@dataclass(frozen=True)
class Settings:
    """Everything resolved: the console's options and the profiles it can switch to."""

    config_path: Path
    config_found: bool
    theme: str
    refresh: float
    target: Target
    profiles: Mapping[str, ProfileConfig] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    # Kept so a profile switch re-applies the same layers (and a CLI --read-only sticks).
    file: FileConfig = field(default_factory=FileConfig)
    env: EnvConfig | None = None
    cli: CliOptions = field(default_factory=CliOptions)
    shutdown_drain: float = DEFAULT_SHUTDOWN_DRAIN_S
    # Reconnect attempts in a row before an in-process consumer gives up; None: unlimited.
    consumer_reconnect_attempts: int | None = None

    def target_for(self, name: str) -> Target:
        """The target of profile `name`, with the same variables and sticky --read-only."""
        if name not in self.profiles:
            raise ConfigError(_unknown_profile(name, self.profiles, self.config_path))
        cli = CliOptions(
            read_only=self.cli.read_only,
            pooler=self.cli.pooler,
            listen_dsn=self.cli.listen_dsn,
            replica_dsn=self.cli.replica_dsn,
        )
        return _build_target(name, self.profiles[name], self.file, self.env, cli, self.config_path)


def load_settings(cli: CliOptions, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve the layers; ConfigError (one line, naming file:line key or variable) on bad input."""
    environ = os.environ if environ is None else environ
    env = _load_env(environ)
    if cli.config:
        path, explicit = Path(cli.config).expanduser(), True
    elif env.config:
        path, explicit = env.config.expanduser(), True
    else:
        path, explicit = default_config_path(), False
    file_config, found, warnings = load_file(path, required=explicit)

    profile_name = cli.profile or env.profile
    if profile_name is None and not resolve_dsn(cli.dsn, environ):
        profile_name = file_config.profile  # a DSN given explicitly wins over the default
    if profile_name is not None and profile_name not in file_config.profiles:
        raise ConfigError(_unknown_profile(profile_name, file_config.profiles, path))
    profile = file_config.profiles.get(profile_name) if profile_name else None
    target = _build_target(profile_name, profile, file_config, env, cli, path, environ)

    theme = cli.theme or env.theme or file_config.theme
    if theme is None:
        theme = NO_COLOR_THEME if environ.get("NO_COLOR") else DEFAULT_THEME
    refresh = cli.refresh or env.refresh or file_config.refresh or DEFAULT_REFRESH_S
    for given, where in ((cli.refresh, "--refresh"), (env.refresh, f"{ENV_PREFIX}REFRESH")):
        if given is not None and not (0 < given <= MAX_REFRESH_S):  # also NaN and infinity
            raise ConfigError(f"{where}: a number of seconds from 0 to {MAX_REFRESH_S:g}")
    if not (0 < refresh <= MAX_REFRESH_S):
        raise ConfigError(f"{path}: refresh: a number of seconds from 0 to {MAX_REFRESH_S:g}")
    if cli.driver is not None:
        try:
            _check_driver(cli.driver)
        except ValueError as exc:
            raise ConfigError(f"--driver: {exc}") from None
    _check_installation(target, cli, path, environ)
    shutdown_drain = next(
        (
            value
            for value in (cli.shutdown_drain, env.shutdown_drain, file_config.shutdown_drain)
            if value is not None
        ),
        DEFAULT_SHUTDOWN_DRAIN_S,
    )
    if not 0 <= shutdown_drain <= 3600:
        raise ConfigError("--shutdown-drain is seconds from 0 to 3600")
    reconnects = (
        cli.consumer_reconnect_attempts
        or env.consumer_reconnect_attempts
        or file_config.consumer_reconnect_attempts
    )
    if cli.consumer_reconnect_attempts is not None and cli.consumer_reconnect_attempts < 1:
        raise ConfigError("--consumer-reconnects is a whole number of attempts, at least 1")
    return Settings(
        config_path=path,
        config_found=found,
        theme=theme,
        refresh=refresh,
        target=target,
        profiles=dict(file_config.profiles),
        warnings=tuple(warnings),
        file=file_config,
        env=env,
        cli=cli,
        shutdown_drain=shutdown_drain,
        consumer_reconnect_attempts=reconnects,
    )


MAX_REFRESH_S = 86_400.0
# PgQueuer's own rules (pgqueuer.domain.settings): names go into SQL unquoted.
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_INSTALLATION_RULES = {
    "schema": (re.compile(_IDENTIFIER), "a plain SQL identifier (letters, digits, _)"),
    "prefix": (re.compile(f"({_IDENTIFIER})?"), "empty or a plain SQL identifier"),
    "channel": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*"), "letters, digits, _ . -"),
}


def _check_installation(
    target: Target, cli: CliOptions, path: Path, environ: Mapping[str, str]
) -> None:
    """Schema, prefix and channel checked here, each named with where it was set."""
    from pgq_console.core.text import printable

    for name, (rule, wanted) in _INSTALLATION_RULES.items():
        value = getattr(target, name)
        if value:
            given_on_cli = getattr(cli, name) is not None
            where = f"--{name}" if given_on_cli else f"{path}: profiles.{target.profile}.{name}"
        else:
            where = f"PGQUEUER_{name.upper()}"
            value = environ.get(where)
        if value and not rule.fullmatch(value):
            raise ConfigError(f"{where} {printable(value)!r}: must be {wanted}")


def _build_target(
    name: str | None,
    profile: ProfileConfig | None,
    file_config: FileConfig,
    env: EnvConfig | None,
    cli: CliOptions,
    path: Path,
    environ: Mapping[str, str] = os.environ,
) -> Target:
    profile = profile or ProfileConfig()
    env = env or EnvConfig.model_construct()
    if profile.dsn and profile.has_parameters:
        raise ConfigError(
            f"{path}: profiles.{name}: give either dsn or host/port/user/dbname, not both"
        )
    if cli.dsn:
        dsn = cli.dsn
    elif profile.dsn:
        dsn = profile.dsn
    elif profile.has_parameters:
        dsn = build_uri(profile)
    else:
        dsn = resolve_dsn(None, environ)
    driver = cli.driver or env.driver or profile.driver or file_config.driver or DEFAULT_DRIVER
    # Read-only sticks: CLI or variable asking for it beats a profile that does not.
    own = profile.read_only if profile.read_only is not None else file_config.read_only
    read_only = bool(cli.read_only or env.read_only or own)
    environment = Environment(profile.label, profile.color) if profile.label else None
    pooler = cli.pooler or env.pooler or profile.pooler or "auto"
    _check_pooler_option(pooler)
    return Target(
        dsn=dsn,
        driver=driver,
        schema=cli.schema or profile.db_schema,
        prefix=cli.prefix or profile.prefix,
        channel=cli.channel or profile.channel,
        read_only=read_only,
        profile=name,
        environment=environment,
        password_env=profile.password_env,
        password_command=profile.password_command,
        password=profile.password,
        pooler=pooler,
        listen_dsn=cli.listen_dsn or env.listen_dsn or profile.listen_dsn,
        replica_dsn=cli.replica_dsn or env.replica_dsn or profile.replica_dsn,
        replica_max_lag=profile.replica_max_lag,
    )


def _check_pooler_option(value: str) -> None:
    try:
        _check_pooler(value)
    except ValueError as exc:
        raise ConfigError(f"--pooler: {exc}") from None


def _unknown_profile(name: str, profiles: Mapping[str, Any], path: Path) -> str:
    if not profiles:
        return f"unknown profile {name!r}: {path} defines no profiles"
    from pgq_console.core.text import printable

    return printable(f"unknown profile {name!r}: {path} defines {', '.join(sorted(profiles))}")
