"""How a driver's exceptions read: what each means for the console (reconnect, retry, report).

`DriverErrors` holds the rules every driver shares (OS-level failures, the words PgBouncer
uses); each driver family's backend carries a subclass that adds its own exception classes
(`Backend.errors`), so no caller has to know which driver raised.
"""

from __future__ import annotations

from enum import StrEnum

from pgq_console.core.errors import ConsoleError

# PgBouncer's words for a server connection it dropped or could not hand out.
_POOLER_MARKERS = ("query_wait_timeout", "server conn crashed", "server closed the connection")


class DatabaseTimeout(ConsoleError):
    """The database did not answer in time (no reply at all, not a cancelled statement)."""


class ConnectFailure(StrEnum):
    """What a failed connect was, by the driver's own exception classes."""

    PASSWORD = "password"  # the password was wrong
    DATABASE = "database"  # no such database
    ROLE = "role"  # the role may not log in (or does not exist)
    SERVER_ERROR = "server error"  # the server answered with an error: it was reached
    INVALID_DSN = "invalid dsn"  # the connection string does not parse
    FAILED = "failed"  # the driver's generic "connection failed"


class DriverErrors:
    """The rules every driver shares; a driver family overrides what its classes add."""

    def connect_failure(self, exc: BaseException) -> ConnectFailure | None:
        """What a failed connect was, when the driver's classes say (see describe_connect_error)."""
        return None

    def session_broken(self, exc: BaseException) -> bool:
        """The session state the driver relied on is gone (a pooler swapped the server
        connection, or dropped it): the connections must be replaced, not reused."""
        text = str(exc)
        return any(marker in text for marker in _POOLER_MARKERS)

    def connection_lost(self, exc: BaseException) -> bool:
        """The connection (not the query) failed: retry after reconnecting."""
        if self.session_broken(exc):  # the backend discarded its connections: as after a drop
            return True
        return isinstance(exc, OSError | TimeoutError | DatabaseTimeout)

    def refused_after_connecting(self, exc: BaseException) -> bool:
        """An SQL error from a server that let the client in (not a failed login or connect)."""
        return False

    def server_refused(self, exc: BaseException) -> bool:
        """The server refused a statement (a privilege, a missing table): its message says it
        all, no traceback needed."""
        return False

    def statement_cancelled(self, exc: BaseException) -> bool:
        """The server cancelled the statement (statement_timeout)."""
        return False

    def permission_denied(self, exc: BaseException) -> bool:
        return False

    def connection_failed(self, exc: BaseException) -> bool:
        """The driver's own word for a broken connection (for the refresh error's wording)."""
        return isinstance(exc, OSError)


class AnyDriverErrors(DriverErrors):
    """Every family's rules at once, for an exception whose driver is not known."""

    def __init__(self, *families: DriverErrors) -> None:
        self.families = families

    def connect_failure(self, exc: BaseException) -> ConnectFailure | None:
        for family in self.families:
            failure = family.connect_failure(exc)
            if failure is not None:
                return failure
        return None

    def session_broken(self, exc: BaseException) -> bool:
        return any(family.session_broken(exc) for family in self.families)

    def connection_lost(self, exc: BaseException) -> bool:
        return any(family.connection_lost(exc) for family in self.families)

    def refused_after_connecting(self, exc: BaseException) -> bool:
        return any(family.refused_after_connecting(exc) for family in self.families)

    def server_refused(self, exc: BaseException) -> bool:
        return any(family.server_refused(exc) for family in self.families)

    def statement_cancelled(self, exc: BaseException) -> bool:
        return any(family.statement_cancelled(exc) for family in self.families)

    def permission_denied(self, exc: BaseException) -> bool:
        return any(family.permission_denied(exc) for family in self.families)

    def connection_failed(self, exc: BaseException) -> bool:
        return any(family.connection_failed(exc) for family in self.families)
