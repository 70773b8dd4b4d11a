"""What a driver's exceptions mean before any backend of it exists (connecting), and the
one-line, password-free message for a failed connect."""

from __future__ import annotations

import asyncio
import socket

from pgq_console.core.backend.asyncpg_drivers import ASYNCPG_ERRORS
from pgq_console.core.backend.driver_errors import AnyDriverErrors, ConnectFailure, DriverErrors
from pgq_console.core.backend.psycopg_drivers import PSYCOPG_ERRORS
from pgq_console.core.errors import scrub
from pgq_console.core.target import DriverKind
from pgq_console.core.text import one_line

# The rules of every driver family, for an exception whose driver is not known.
ANY_DRIVER_ERRORS = AnyDriverErrors(ASYNCPG_ERRORS, PSYCOPG_ERRORS)


def driver_errors(kind: DriverKind) -> DriverErrors:
    """What a driver's exceptions mean, before any backend of it exists (connecting)."""
    asyncpg = kind in (DriverKind.ASYNCPG, DriverKind.ASYNCPG_POOL)
    return ASYNCPG_ERRORS if asyncpg else PSYCOPG_ERRORS


def describe_connect_error(
    exc: BaseException,
    *,
    label: str,
    secrets: tuple[str, ...] = (),
    errors: DriverErrors = ANY_DRIVER_ERRORS,
) -> str:
    """Turn a driver's connection failure into one line that names the target, never a password.

    `errors`: the driver's classification (`Backend.errors`); by default every driver's.
    """
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
    elif failure is ConnectFailure.ROLE or ("role" in lowered and "does not exist" in lowered):
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
    elif isinstance(exc, OverflowError) and "port" in lowered:
        message = f"invalid connection string: the port of {label} is not 0-65535"
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
