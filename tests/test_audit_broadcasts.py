"""Audit toasts name who really sent them; the listener survives any payload."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgq_console.core import actions, audit
from pgq_console.core.actions import ids_predicate
from pgq_console.core.audit import AUDIT_EVENT_TYPE, AuditAnnouncement, AuditListener
from pgq_console.core.backend import Backend
from pgq_console.core.target import DriverKind, Installation
from tests.conftest import examples
from tests.helpers import LIVENESS_STRETCH, backend_for

FORGED = {
    "type": AUDIT_EVENT_TYPE,
    "console": "f" * 32,
    "action": "cancel",
    "count": 50000,
    "previewed": 50000,
    "user": "dba-alice",
    "host": "bastion-1",
    "db_user": "postgres",
    "reason": None,
    "time": "2026-01-01T00:00:00+00:00",
}

CHANNEL = audit.audit_channel(Installation().channel)

HOSTILE_PAYLOADS = [
    json.dumps({**FORGED, "count": 1}).replace('"count": 1', '"count": 1e400'),
    "[" * 3900 + "]" * 3900,
    '{"type": "pgq_console_audit", "x": ' + "[" * 3000 + "]" * 3000 + "}",
    "not json at all \x1b[2J",
    json.dumps({**FORGED, "count": True}),
    json.dumps({**FORGED, "count": -1}),
    json.dumps({**FORGED, "action": {"nested": [1, 2]}}),
    json.dumps({**FORGED, "user": "x" * 7000}),
    "NaN",
    "",
]


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )


def payloads() -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(
        {"type": st.just(AUDIT_EVENT_TYPE)},
        optional={
            key: json_values() | st.just(value) for key, value in FORGED.items() if key != "type"
        },
    )
    return (
        st.text(max_size=200)
        | st.binary(max_size=200)
        | fields.map(json.dumps)
        | json_values().map(json.dumps)
        | st.sampled_from(HOSTILE_PAYLOADS)
        | st.integers(1, 20000).map(lambda n: "[" * n + "]" * n)
        | st.just("1e400")
        | st.just(json.dumps(FORGED).replace("50000", "1e400", 1))
    )


@settings(max_examples=examples(1500), deadline=None)  # all under the full profile (CI)
@given(payload=payloads())
def test_parse_announcement_survives_any_payload(payload: Any) -> None:
    result = audit.parse_announcement(payload)
    if result is not None:
        assert isinstance(result.count, int) and isinstance(result.previewed, int)
        assert 0 <= result.count <= 10**12
        assert len(result.user) <= 200 and len(result.action) <= 200
        assert not result.verified  # parsing alone never verifies
        assert result.describe().startswith("UNVERIFIED")


async def _notify(dsn: str, payload: str, application_name: str | None = None) -> None:
    settings_ = {"application_name": application_name} if application_name else None
    connection = await asyncpg.connect(dsn, server_settings=settings_)
    try:
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    finally:
        await connection.close()


async def _notify_and_wait(
    dsn: str, payload: str, application_name: str, seen: list[AuditAnnouncement]
) -> AuditAnnouncement:
    """NOTIFY from a session that stays connected until the listener has looked it up."""
    before = len(seen)
    connection = await asyncpg.connect(dsn, server_settings={"application_name": application_name})
    try:
        await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
        await _until(lambda: len(seen) > before, "the announcement")
    finally:
        await connection.close()
    return seen[before]


async def _until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10 * LIVENESS_STRETCH
    while loop.time() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_forged_notify_is_unverified_and_a_real_write_is_verified(
    fresh_database: str, kind: DriverKind
) -> None:
    seen: list[AuditAnnouncement] = []
    backend = await backend_for(fresh_database, kind)
    writer = await backend_for(fresh_database)  # "another console" on the same database
    assert isinstance(backend, Backend) and isinstance(writer, Backend)
    listener = AuditListener(backend, seen.append)
    try:
        await listener.start()
        # A plain session (psql-like) claims a console's write.
        forged = await _notify_and_wait(fresh_database, json.dumps(FORGED), "psql", seen)
        assert not forged.verified and "'psql' session of role 'postgres'" in forged.sender
        assert forged.describe().startswith("UNVERIFIED")
        # Calling itself pgq-console does not help when the claimed role is not its own.
        claimed = json.dumps({**FORGED, "db_user": "dba_alice"})
        posing = await _notify_and_wait(fresh_database, claimed, "pgq-console", seen)
        assert not posing.verified and "not as claimed" in posing.sender
        # Hostile payloads: nothing shown, and the listener still works afterwards.
        for payload in HOSTILE_PAYLOADS:
            await _notify(fresh_database, payload, "psql")
        # A real write of another console is verified, with its real role.
        connection = await asyncpg.connect(fresh_database)
        [job] = await connection.fetch(
            "INSERT INTO pgqueuer (priority, entrypoint, status) VALUES (0, 'ep', 'queued') "
            "RETURNING id"
        )
        await connection.close()
        action = actions.cancel(writer, ids_predicate([int(job["id"])]))
        await actions.execute(writer, action, await action.preview(writer))
        await _until(lambda: any(a.verified for a in seen), "the real announcement")
        [real] = [a for a in seen if a.verified]
        assert real.db_user == "postgres" and real.action == "cancel" and real.count == 1
        assert real.describe().startswith("db role postgres (")
        # Of the hostile payloads only the well-formed one with a long user became an
        # announcement, clipped and unverified.
        others = [a for a in seen[2:] if not a.verified]
        assert [len(a.user) for a in others] in ([], [200])
    finally:
        await listener.stop()
        await writer.close()
        await backend.close()


async def test_forged_notify_toasts_as_unverified_in_the_console(fresh_database: str) -> None:
    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind
    from tests.helpers import wait_until

    async def open_() -> Backend:
        return await open_backend(
            DriverKind.ASYNCPG_POOL, fresh_database, Installation(), "test-db", ()
        )

    app = PgqConsole(open_, listen=True)
    app.animation_level = "none"
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.backend is not None and app.screen.id != "_default")
        sender = await asyncpg.connect(fresh_database, server_settings={"application_name": "psql"})
        try:
            # The listener may still be starting: repeat until a toast shows.
            for _ in range(100):
                await sender.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(FORGED))
                if any("dba-alice" in n.message for n in app._notifications):
                    break
                await pilot.pause(0.1)
        finally:
            await sender.close()
        toasts = [n for n in app._notifications if "dba-alice" in n.message]
        assert toasts, "no toast for the forged NOTIFY"
        assert all(n.title == "unverified audit NOTIFY" for n in toasts)
        assert all(n.message.startswith("UNVERIFIED") for n in toasts)
        assert all(n.severity == "warning" for n in toasts)
        # The incident bundle written by `I` lists what other sessions announced, unverified.
        await pilot.press("I")
        await wait_until(pilot, lambda: app.bundle_path is not None, what="the bundle")
        assert app.bundle_path is not None
        document = json.loads(app.bundle_path.with_suffix(".json").read_text())
    heard = [line for line in document["audit"]["other_consoles"] if "dba-alice" in line]
    assert heard and all(line.startswith("UNVERIFIED") for line in heard)
