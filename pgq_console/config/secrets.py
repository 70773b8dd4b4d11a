"""Passwords: never written anywhere; taken from the DSN, a variable or a command."""

from __future__ import annotations

import shlex
import subprocess
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import dsn_parts

if TYPE_CHECKING:
    pass
from pgq_console.config.errors import ConfigError

if TYPE_CHECKING:
    from pgq_console.config.schema import ProfileConfig


PASSWORD_COMMAND_TIMEOUT_S = 15.0


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
