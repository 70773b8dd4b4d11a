"""The console's connection to one PgQueuer installation, through any driver of the contract.

Reads go through `Backend.read`: one read-only transaction with a transaction-local
statement_timeout and application_name, so the overview works on a read-only role and never
changes a handed-in connection's session. Writes and schema checks use pgqueuer's own
`Queries` (`Backend.queries`). LISTEN uses pgqueuer's listener helper on the driver the contract
prescribes; for psycopg it always runs on a separate connection, because a listening
PsycopgDriver holds the connection lock for up to a second per query.

Connections drop (server restart, pg_terminate_backend, network cut): every read and transaction
first replaces a connection that is known to be dead, and a read that outlives the statement
timeout by `CLIENT_GRACE_S` (a network cut: the server cannot cancel it) resets its connection, so
no caller ever waits forever. `listener_alive()` tells the live model when to LISTEN again.

Behind PgBouncer (topologies.md): only application_name goes in the startup packet when the
pooler refuses the others (every setting is transaction-local anyway), and `open_backend`
probes the live path end to end (LISTEN, NOTIFY from another connection, wait): no delivery
means transaction pooling, so prepared statements are off and the live model polls, unless a
`listen_dsn` gives LISTEN a direct connection of its own. Errors a pooler raises mid-session
(a prepared statement it lost, a closed server connection) discard the connections, so the
next read reconnects instead of failing the same way forever.
"""

from __future__ import annotations

from pgq_console.core.backend.asyncpg_drivers import AsyncpgBackend, AsyncpgPoolBackend
from pgq_console.core.backend.base import READ_ONLY_REFUSAL, Backend, Capabilities, Tx
from pgq_console.core.backend.classify import (
    ANY_DRIVER_ERRORS,
    describe_connect_error,
    driver_errors,
)
from pgq_console.core.backend.connect import CONNECT_TIMEOUT_S
from pgq_console.core.backend.driver_errors import DatabaseTimeout, DriverErrors
from pgq_console.core.backend.opening import check_schema, open_backend
from pgq_console.core.backend.psycopg_drivers import PsycopgBackend, SyncPsycopgBackend

__all__ = [
    "ANY_DRIVER_ERRORS",
    "Capabilities",
    "DriverErrors",
    "driver_errors",
    "describe_connect_error",
    "AsyncpgBackend",
    "AsyncpgPoolBackend",
    "Backend",
    "CONNECT_TIMEOUT_S",
    "DatabaseTimeout",
    "PsycopgBackend",
    "READ_ONLY_REFUSAL",
    "SyncPsycopgBackend",
    "Tx",
    "check_schema",
    "open_backend",
]
