"""What the config file and the `PGQ_CONSOLE_*` variables may say, with the defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pgq_console.config.secrets import _dsn_password
from pgq_console.core.target import DriverKind

APP_NAME = "pgq-console"
CONFIG_FILE_NAME = "config.toml"
DEFAULT_THEME = "pgq-dark"
NO_COLOR_THEME = "pgq-monochrome"
DEFAULT_DRIVER = DriverKind.ASYNCPG_POOL.value
DEFAULT_REFRESH_S = 2.0
# SIGHUP/SIGTERM: how long running consumer jobs get to finish before they go back to the queue.
DEFAULT_SHUTDOWN_DRAIN_S = 5.0


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
