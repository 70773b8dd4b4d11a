"""Settings: defaults < config file (TOML) < `PGQ_CONSOLE_*` variables < command line.

The config file lives in the platformdirs config directory (`pgq-console paths` prints it) and
holds named profiles. A profile says where to connect (a DSN or libpq parameters), with which
driver, which PgQueuer installation, whether read-only, and an environment label and colour
for the header. The console never writes a password anywhere: profiles take it from `.pgpass`,
a variable (`password_env`) or a command (`password_command`). Every error names the file, the
line and the key, or the variable.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import platformdirs
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import DriverKind, display_dsn, dsn_parts, resolve_dsn, secrets_of

if TYPE_CHECKING:
    from pgq_console.core.backend import AnyBackend
    from pgq_console.core.replica import ReplicaLink
    from pgq_console.core.target import Installation

APP_NAME = "pgq-console"
CONFIG_FILE_NAME = "config.toml"
DEFAULT_THEME = "pgq-dark"
NO_COLOR_THEME = "pgq-monochrome"
DEFAULT_DRIVER = DriverKind.ASYNCPG_POOL.value
DEFAULT_REFRESH_S = 2.0
# SIGHUP/SIGTERM: how long running consumer jobs get to finish before they go back to the queue.
DEFAULT_SHUTDOWN_DRAIN_S = 5.0
PASSWORD_COMMAND_TIMEOUT_S = 15.0


class ConfigError(ConsoleError):
    """A config file or variable the console cannot use; the message says where."""


def config_dir() -> Path:
    return platformdirs.user_config_path(APP_NAME)


def default_config_path() -> Path:
    return config_dir() / CONFIG_FILE_NAME


def user_theme_dir() -> Path:
    return config_dir() / "themes"


def _check_driver(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return DriverKind(value).value
    except ValueError:
        choices = ", ".join(kind.value for kind in DriverKind)
        raise ValueError(f"unknown driver {value!r}: choose one of {choices}") from None


def _check_color(value: str | None) -> str | None:
    if value is None:
        return None
    from textual.color import Color, ColorParseError

    try:
        Color.parse(value)
    except ColorParseError:
        raise ValueError(f"not a colour: {value!r} (a name like red, or #rrggbb)") from None
    return value


def _check_pooler(value: str | None) -> str | None:
    if value is None:
        return None
    from pgq_console.core.target import Pooler

    try:
        return Pooler(value).value
    except ValueError:
        choices = ", ".join(mode.value for mode in Pooler)
        raise ValueError(f"unknown pooler {value!r}: choose one of {choices}") from None


DriverName = Annotated[str | None, AfterValidator(_check_driver)]
PoolerName = Annotated[str | None, AfterValidator(_check_pooler)]
ColorName = Annotated[str | None, AfterValidator(_check_color)]


class ProfileConfig(BaseModel):
    """One `[profiles.NAME]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    dsn: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    dbname: str | None = None
    sslmode: str | None = None
    # Allowed, never written by the console; the file then gets a permission check.
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    password_command: str | None = None
    driver: DriverName = None
    db_schema: str | None = Field(default=None, alias="schema")
    prefix: str | None = None
    channel: str | None = None
    read_only: bool | None = None
    label: str | None = None
    color: ColorName = None
    # What sits in front of the database (auto probes), and a direct DSN for LISTEN behind it.
    pooler: PoolerName = None
    listen_dsn: str | None = Field(default=None, repr=False)
    # A hot standby for the heavy reads, used while its replay lag stays under replica_max_lag.
    replica_dsn: str | None = Field(default=None, repr=False)
    replica_max_lag: PositiveFloat | None = None

    @property
    def has_parameters(self) -> bool:
        return any(v is not None for v in (self.host, self.port, self.user, self.dbname))

    @property
    def holds_password(self) -> bool:
        return (
            bool(self.password)
            or bool(self.dsn and _dsn_password(self.dsn))
            or bool(self.listen_dsn and _dsn_password(self.listen_dsn))
            or bool(self.replica_dsn and _dsn_password(self.replica_dsn))
        )


class FileConfig(BaseModel):
    """The whole config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str | None = None  # the profile used when none is named and no DSN is given
    theme: str | None = None
    refresh: PositiveFloat | None = None
    shutdown_drain: NonNegativeFloat | None = None
    consumer_reconnect_attempts: PositiveInt | None = None
    driver: DriverName = None
    read_only: bool | None = None
    profiles: dict[str, ProfileConfig] = {}
    keymap: dict[str, str] = {}  # binding id -> keys; checked by pgq_console.keymap


ENV_PREFIX = "PGQ_CONSOLE_"


class EnvConfig(BaseSettings):
    """`PGQ_CONSOLE_*` variables (PGQ_CONSOLE_DSN is read by the DSN ladder in core.target)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    config: Path | None = None
    profile: str | None = None
    theme: str | None = None
    refresh: PositiveFloat | None = None
    shutdown_drain: NonNegativeFloat | None = None
    consumer_reconnect_attempts: PositiveInt | None = None
    driver: DriverName = None
    read_only: bool | None = None
    pooler: PoolerName = None
    listen_dsn: str | None = Field(default=None, repr=False)
    replica_dsn: str | None = Field(default=None, repr=False)


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


def _unknown_profile(name: str, profiles: Mapping[str, Any], path: Path) -> str:
    if not profiles:
        return f"unknown profile {name!r}: {path} defines no profiles"
    from pgq_console.core.text import printable

    return printable(f"unknown profile {name!r}: {path} defines {', '.join(sorted(profiles))}")


def _dsn_password(dsn: str) -> str:
    try:
        return dsn_parts(dsn).get("password", "")
    except ConsoleError:
        return ""


def build_uri(profile: ProfileConfig) -> str:
    """A postgresql:// URI from libpq parameters (every driver reads URIs; asyncpg only those)."""
    host = profile.host or ""
    query: dict[str, str] = {}
    netloc = quote(profile.user, safe="") + "@" if profile.user else ""
    if host.startswith("/"):  # a unix socket directory
        query["host"] = host
        if profile.port:
            query["port"] = str(profile.port)
    else:
        netloc += f"[{host}]" if ":" in host else host
        if profile.port:
            netloc += f":{profile.port}"
    if profile.sslmode:
        query["sslmode"] = profile.sslmode
    path = "/" + quote(profile.dbname, safe="") if profile.dbname else ""
    return urlunsplit(("postgresql", netloc, path, urlencode(query), ""))


def as_uri(dsn: str) -> str:
    """A key=value DSN as the equivalent URI: asyncpg (the default driver) reads only URIs."""
    if not dsn.strip() or "://" in dsn:
        return dsn
    parts = dsn_parts(dsn)
    user, password = parts.pop("user", ""), parts.pop("password", "")
    userinfo = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = userinfo + "@" if userinfo else ""
    host = parts.get("host", "")
    if host and not host.startswith("/") and "," not in host:
        del parts["host"]
        netloc += f"[{host}]" if ":" in host else host
        if "port" in parts and "," not in parts["port"]:
            netloc += f":{parts.pop('port')}"
    path = "/" + quote(parts.pop("dbname"), safe="") if "dbname" in parts else ""
    return urlunsplit(("postgresql", netloc, path, urlencode(parts), ""))


def with_password(dsn: str, password: str) -> str:
    """The DSN with `password` set (URI userinfo, or a key=value pair)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        userinfo, at, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0] if at else ""
        netloc = f"{user}:{quote(password, safe='')}@{hostinfo}"
        return urlunsplit(parts._replace(netloc=netloc))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(dsn, password=password)


def _run_password_command(command: str, profile: str | None) -> str:
    where = f"profile {profile!r}" if profile else "the profile"
    try:
        done = subprocess.run(
            shlex.split(command),
            capture_output=True,
            text=True,
            timeout=PASSWORD_COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"{where}: password_command failed: {type(exc).__name__}") from None
    if done.returncode != 0:
        raise ConfigError(f"{where}: password_command exited with {done.returncode}")
    password = done.stdout.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{where}: password_command printed no password")
    return password


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


async def open_target(target: Target, *, check: bool = True) -> AnyBackend:
    """Connect to `target` (password fetched off the event loop) and check its schema."""
    import asyncio

    from pgq_console.core.backend import Backend, check_schema, open_backend
    from pgq_console.core.target import Installation, parse_driver, parse_pooler

    kind = parse_driver(target.driver)
    installation = Installation.select(
        schema=target.schema, prefix=target.prefix, channel=target.channel
    )
    dsn, label, secrets = await asyncio.to_thread(target.connect_dsn)
    listen_dsn = _side_dsn(target.listen_dsn, target.password)
    replica_dsn = _side_dsn(target.replica_dsn, target.password)
    for side in (listen_dsn, replica_dsn):
        secrets = (*secrets, *secrets_of(side)) if side else secrets
    backend = await open_backend(
        kind,
        dsn,
        installation,
        label,
        secrets,
        read_only=target.read_only,
        pooler=parse_pooler(target.pooler),
        listen_dsn=listen_dsn,
    )
    if check:
        try:
            await check_schema(backend)
        except BaseException:
            await backend.close()
            raise
    if replica_dsn and isinstance(backend, Backend):
        backend.replica = replica_link(
            kind, replica_dsn, installation, secrets, target.replica_max_lag
        )
    return backend


def _side_dsn(dsn: str | None, password: str | None) -> str | None:
    """A listen or replica DSN, with the main password when it names none."""
    if not dsn:
        return None
    dsn_parts(dsn)  # bad syntax: one line
    if password and not _dsn_password(dsn):
        return with_password(dsn, password)
    return dsn


def replica_link(
    kind: DriverKind,
    dsn: str,
    installation: Installation,
    secrets: tuple[str, ...],
    max_lag_s: float | None = None,
) -> ReplicaLink:
    """The standby for heavy reads, connected on first use (a standby down at start is retried)."""
    from pgq_console.core.backend import Backend, open_backend
    from pgq_console.core.replica import DEFAULT_MAX_LAG_S, ReplicaLink
    from pgq_console.core.target import Pooler

    label = f"replica {display_dsn(dsn)}"

    async def connect() -> Backend:
        # No probe (a standby refuses NOTIFY): options that work through any pooler.
        backend = await open_backend(
            kind, dsn, installation, label, secrets, read_only=True, pooler=Pooler.TRANSACTION
        )
        assert isinstance(backend, Backend)
        return backend

    return ReplicaLink(connect, max_lag_s=max_lag_s or DEFAULT_MAX_LAG_S)
