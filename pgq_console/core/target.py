"""Where the console connects and which PgQueuer installation it watches."""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pgq_console.core import conninfo
from pgq_console.core.errors import ConsoleError, scrub
from pgq_console.core.text import one_line

if TYPE_CHECKING:
    # Imported when an installation is selected: importing pgqueuer imports all of it (its
    # package imports QueueManager, pydantic models, croniter: ~0.1 s of CPU on top of pydantic),
    # which the command line's own checks and errors do not need.
    from pgqueuer.domain.settings import DBSettings
    from pgqueuer.queries import Queries

APPLICATION_NAME = "pgq-console"

# The DSN ladder `pgq` uses, with the console's own variable first.
DSN_ENV_VARS = ("PGQ_CONSOLE_DSN", "PGDSN", "PGQUEUER_DSN")


class DriverKind(StrEnum):
    """The drivers of PgQueuer's driver contract, as `--driver` names them."""

    ASYNCPG = "asyncpg"
    ASYNCPG_POOL = "asyncpg-pool"
    PSYCOPG = "psycopg"
    PSYCOPG_SYNC = "psycopg-sync"

    @property
    def is_async(self) -> bool:
        return self is not DriverKind.PSYCOPG_SYNC


class Pooler(StrEnum):
    """What sits between the console and PostgreSQL (`pooler` setting; `auto` probes)."""

    AUTO = "auto"
    NONE = "none"
    TRANSACTION = "transaction"  # PgBouncer pool_mode=transaction: no LISTEN, no prepares
    SESSION = "session"


def parse_pooler(name: str) -> Pooler:
    try:
        return Pooler(name)
    except ValueError:
        choices = ", ".join(mode.value for mode in Pooler)
        raise ConsoleError(f"unknown pooler {name!r}: choose one of {choices}") from None


_MISSING_EQUALS = re.compile(r'(missing "=" after )"[^"]*"')


def parse_driver(name: str) -> DriverKind:
    try:
        return DriverKind(name)
    except ValueError:
        choices = ", ".join(kind.value for kind in DriverKind)
        raise ConsoleError(f"unknown driver {name!r}: choose one of {choices}") from None


def resolve_dsn(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """`--dsn`, then the DSN variables; empty means libpq's PGHOST/PGUSER/... and .pgpass."""
    if explicit:
        return explicit
    for name in DSN_ENV_VARS:
        if value := environ.get(name):
            return value
    return ""


def dsn_parts(dsn: str) -> dict[str, str]:
    """Parse a URI or key=value DSN; ConsoleError on bad syntax (message without the DSN)."""
    try:
        parsed = _conninfo_to_dict(dsn)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's own words
        # libpq echoes the DSN, whose password cannot be known when it does not parse.
        detail = scrub(one_line(exc), (_password_in(dsn), *_password_by_place(dsn)))
        # A DSN too broken to parse still has its password in libpq's message (URI userinfo).
        detail = _URI_PASSWORD.sub(r"\1***@", detail)
        detail = _KV_PASSWORD.sub("password=***", detail)
        # `password=two words`: libpq names the word it could not read, the password's tail.
        detail = _MISSING_EQUALS.sub(r'\1"***"', detail)
        raise ConsoleError(f"invalid connection string: {detail}") from None
    _, sep, rest = dsn.partition("://")
    authority, _, path = re.split(r"[?#]", rest, maxsplit=1)[0].partition("/")
    if sep and (authority.count("@") > 1 or "@" in path):
        # An `@` or `/` left unencoded in the password: libpq splits at the first `@` or `/`,
        # and the rest of the password became the host or database name, shown in every label.
        raise ConsoleError(
            "invalid connection string: more than one '@' before the host, or one after it; "
            "write / ? # @ in a URI's user or password as %2F %3F %23 %40"
        )
    ports = str(parsed.get("port") or "").split(",")
    if not all(port.isdigit() for port in ports if port):
        # `u:pa/ss@host`: libpq reads host `u`, port `pa`, database `ss@host`; every label would
        # show the password. Not echoed: the port may be part of it.
        raise ConsoleError(
            "invalid connection string: the port is not a number "
            "(write / ? # @ in a URI's user or password as %2F %3F %23 %40)"
        )
    return {key: str(value) for key, value in parsed.items() if value is not None}


def _password_by_place(dsn: str) -> tuple[str, ...]:
    """The password of a URI that does not parse: after the first `:` of the userinfo (as
    written, and percent-decoded)."""
    _, sep, rest = dsn.partition("://")
    if not sep:
        return ()
    userinfo = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[0]
    _, colon, password = userinfo.partition(":")
    if not colon or not password:
        return ()
    return (password, unquote(password))


_URI_PASSWORD = re.compile(r"(://[^:/@\s\"]*:)[^\s\"]*@")
_KV_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _conninfo_to_dict(dsn: str) -> dict[str, Any]:
    """psycopg's `conninfo_to_dict` (libpq's parser), without importing psycopg (0.1-0.2 s of
    CPU at every launch) for the plain strings `core.conninfo` parses the same way."""
    parsed = conninfo.parse(dsn)
    if parsed is not None:
        return dict(parsed)
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(dsn)


def _password_in(dsn: str) -> str:
    try:
        return str(_conninfo_to_dict(dsn).get("password") or "")
    except Exception:
        return ""


def display_dsn(dsn: str, environ: Mapping[str, str] = os.environ) -> str:
    """A label for headers and errors: user@host:port/db, never the password."""
    try:
        parts = dsn_parts(dsn)
    except ConsoleError:
        return "<invalid connection string>"
    user = parts.get("user") or environ.get("PGUSER") or getpass.getuser()
    host = parts.get("host") or environ.get("PGHOST") or "localhost"
    port = parts.get("port") or environ.get("PGPORT") or "5432"
    dbname = parts.get("dbname") or environ.get("PGDATABASE") or user
    where = f"[{host}]" if host.startswith("/") else host
    return f"{user}@{where}:{port}/{dbname}"


def secrets_of(dsn: str, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Every password the console knows of, so messages can be scrubbed of them."""
    found = [_password_in(dsn), *_password_by_place(dsn), environ.get("PGPASSWORD", "")]
    return tuple(secret for secret in found if secret)


def _db_settings(**overrides: Any) -> DBSettings:
    """PgQueuer's settings (PGQUEUER_* honoured) with `overrides`."""
    from pgqueuer.domain.settings import DBSettings

    return DBSettings(**overrides)


@dataclass(frozen=True)
class Installation:
    """A PgQueuer installation: schema, prefix and NOTIFY channel (PGQUEUER_* honoured)."""

    settings: DBSettings = field(default_factory=lambda: _db_settings())

    @classmethod
    def select(
        cls, *, schema: str | None = None, prefix: str | None = None, channel: str | None = None
    ) -> Installation:
        overrides: dict[str, Any] = {}
        if schema:
            overrides["db_schema"] = schema
        if prefix:
            overrides["prefix"] = prefix
        if channel:
            overrides["channel"] = channel
        try:
            return cls(_db_settings(**overrides))
        except ValueError as exc:
            first = str(exc).splitlines()
            raise ConsoleError(
                f"invalid PgQueuer installation settings: {first[-1] if first else exc}"
            ) from None

    @property
    def channel(self) -> str:
        return str(self.settings.channel)

    @property
    def label(self) -> str:
        schema = self.settings.db_schema or "search_path"
        prefix = self.settings.prefix or "-"
        return f"schema {schema} prefix {prefix}"

    def queries(self, driver: object) -> Queries:
        """pgqueuer's Queries bound to this installation's names (as `pgq` builds them)."""
        from pgqueuer.adapters.persistence import qb
        from pgqueuer.queries import Queries

        return Queries(
            driver,  # type: ignore[arg-type]
            qbe=qb.QueryBuilderEnvironment(self.settings),
            qbq=qb.QueryQueueBuilder(self.settings),
            qbs=qb.QuerySchedulerBuilder(self.settings),
        )
