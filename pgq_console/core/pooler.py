"""What a connection pooler in front of PostgreSQL allows (core/backend/probe.py finds out).

PgBouncer (topologies.md) refuses startup parameters other than a few (application_name is
accepted; statement_timeout, options and default_transaction_read_only are not), and in
transaction pooling hands each transaction any server connection: prepared statements and LISTEN
do not survive. The only reliable test for the latter is end to end: LISTEN, NOTIFY from another
connection, wait (`pg_listening_channels()` may be answered by the very server connection that
ran the LISTEN).
"""

from __future__ import annotations

from dataclasses import dataclass

# How long the live-path probe waits for its own NOTIFY (a direct connection: milliseconds).
PROBE_WAIT_S = 1.5


@dataclass(frozen=True)
class ConnectOptions:
    """What the console's connections may rely on; a pooler in front turns parts off."""

    # statement_timeout and default_transaction_read_only in the startup packet (PgBouncer
    # refuses both; application_name it accepts).
    startup_settings: bool = True
    # asyncpg's statement cache / psycopg's automatic prepares: named statements live on one
    # server connection, which transaction pooling does not keep for the client.
    prepared_statements: bool = True


DIRECT = ConnectOptions()


def startup_refused(exc: BaseException) -> bool:
    """PgBouncer's answer to a startup parameter it does not pass on."""
    return "unsupported startup parameter" in str(exc)
