"""One-line, password-free messages for everything that can go wrong while connecting."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import TYPE_CHECKING
from urllib.parse import quote

from pgq_console.core.text import one_line

if TYPE_CHECKING:
    from pgq_console.core.backend.driver_errors import DriverErrors


class ConsoleError(Exception):
    """An error whose message is fit to show the operator as it is (one line, no secrets)."""


def describe_connect_error(
    exc: BaseException,
    *,
    label: str,
    secrets: tuple[str, ...] = (),
    errors: DriverErrors | None = None,
) -> str:
    """Turn a driver's connection failure into one line that names the target, never a password.

    `errors`: the driver's classification (`Backend.errors`); by default every driver's.
    """
    from pgq_console.core.backend.driver_errors import ConnectFailure

    if errors is None:
        from pgq_console.core.backend import ANY_DRIVER_ERRORS

        errors = ANY_DRIVER_ERRORS
    failure = errors.connect_failure(exc)
    text = one_line(str(exc))
    lowered = text.lower()
    if failure is ConnectFailure.PASSWORD or "password authentication failed" in lowered:
        message = (
            f"authentication failed for {label}: check the user and password (.pgpass, PGPASSWORD)"
        )
    elif "no password supplied" in lowered or "password is required" in lowered:
        message = f"authentication failed for {label}: the server wants a password, none was given"
    elif failure is ConnectFailure.DATABASE or (
        "database" in lowered and "does not exist" in lowered
    ):
        message = f"database does not exist: {label}"
    elif failure is ConnectFailure.ROLE or (
        "role" in lowered and "does not exist" in lowered
    ):
        message = f"cannot connect to {label}: {text}"
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        message = f"timed out connecting to {label}"
    elif isinstance(exc, socket.gaierror):
        message = f"cannot resolve the host of {label}: {text}"
    elif isinstance(exc, ConnectionRefusedError) or "connection refused" in lowered:
        message = f"cannot reach {label}: connection refused (is PostgreSQL running there?)"
    elif isinstance(exc, OSError) and failure is not ConnectFailure.SERVER_ERROR:
        message = f"cannot reach {label}: {exc.strerror or text}"
    elif failure is ConnectFailure.INVALID_DSN or "invalid dsn" in lowered:
        message = f"invalid connection string: {text}"
    elif isinstance(exc, ValueError):
        # asyncpg's own DSN parser quotes pieces of the DSN (`bad query field: 'rest-of-pw@...'`
        # for a `?` in a password): not echoed.
        message = (
            "invalid connection string: asyncpg cannot parse it (write / ? # @ in a URI's user "
            "or password as %2F %3F %23 %40, or use --driver psycopg)"
        )
    elif failure is ConnectFailure.FAILED and "failed" in lowered:
        message = f"cannot connect to {label}: {text}"
    else:
        message = f"cannot connect to {label}: {type(exc).__name__}: {text}"
    return scrub(message, secrets)


# A password by its place, for DSNs too broken to parse (so their password is not known):
# the userinfo of a URI (`scheme://user:PASSWORD@`, up to the last `@` before the host) and a
# key=value `password=...` (quoted or not).
_URI_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/?#@\s\"']*):[^\s\"']*@")
_KEYWORD_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s\"']+)")


def scrub_dsn_passwords(text: str) -> str:
    """Every password-looking part of a connection string in `text` replaced by ***."""
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _KEYWORD_PASSWORD.sub(r"\1***", text)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret that leaked into a driver message, known or by its place."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(quote(secret, safe=""), "***")
    return scrub_dsn_passwords(text)
