"""Defects found by hostile testing of issues 10 and 11, each reproduced on real PostgreSQL."""

from __future__ import annotations

import json
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pgq_console.core.audit import AuditAnnouncement, AuditListener
from pgq_console.core.backend import Backend
from tests.helpers import backend_for
from tests.test_audit_broadcasts import FORGED, _notify_and_wait


def _as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}@" + parts.netloc.rsplit("@", 1)[-1]))


async def test_a_select_only_role_calling_itself_pgq_console_is_unverified(
    fresh_database: str,
) -> None:
    # A role that can only read the queue cannot have made a console write, whatever its
    # application_name (which any client sets) and however honestly it claims its own role.
    connection = await asyncpg.connect(fresh_database)
    try:
        await connection.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgqc_select_only') "
            "THEN CREATE ROLE pgqc_select_only LOGIN; END IF; END $$"
        )
        await connection.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgqc_select_only")
    finally:
        await connection.close()
    seen: list[AuditAnnouncement] = []
    backend = await backend_for(fresh_database)
    assert isinstance(backend, Backend)
    listener = AuditListener(backend, seen.append)
    try:
        await listener.start()
        claim = json.dumps({**FORGED, "db_user": "pgqc_select_only"})
        reader = _as_role(fresh_database, "pgqc_select_only")
        forged = await _notify_and_wait(reader, claim, "pgq-console", seen)
        assert not forged.verified
        assert "cannot write the queue" in forged.sender
        assert forged.describe().startswith("UNVERIFIED")
        # The same claim from a role that can write the queue is still verified.
        writer_claim = json.dumps({**FORGED, "db_user": "postgres"})
        real = await _notify_and_wait(fresh_database, writer_claim, "pgq-console", seen)
        assert real.verified
    finally:
        await listener.stop()
        await backend.close()
