"""Defects found by hostile testing (filters, output, secrets), each on real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgq_console.cli import main
from pgq_console.core import audit
from pgq_console.core.audit import AuditAnnouncement, AuditListener
from pgq_console.core.backend import Backend
from pgq_console.core.target import DriverKind
from pgq_console.scripting import NagiosState
from tests.helpers import backend_for
from tests.lossy_proxy import LossyProxy
from tests.test_audit_broadcasts import CHANNEL, FORGED, _notify_and_wait
from tests.test_unknown_outcomes import _rows


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


def test_check_with_an_absurd_duration_is_a_one_line_unknown(
    capsys: pytest.CaptureFixture[str], fresh_database: str
) -> None:
    # Was "internal error (OverflowError: ...)": bad input deserves a message saying what is wrong.
    for duration in ["99999999999999999999d", "9" * 400 + "s"]:
        with pytest.raises(SystemExit) as exited:
            main(["check", "--dsn", fresh_database, "--max-age", f"a={duration}"])
        out, err = capsys.readouterr()
        assert exited.value.code == NagiosState.UNKNOWN
        assert len(out.strip().splitlines()) == 1 and err == ""
        assert out.startswith("PGQ UNKNOWN - ") and "internal error" not in out
        assert "duration" in out


def _limit_memory() -> None:
    import resource

    # Before the fix `--config /dev/zero` read until memory ran out: keep that contained.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_config_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ"))}
    env["XDG_STATE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pgq_console", "--config", "/dev/zero", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert done.returncode == NagiosState.UNKNOWN, done
    assert done.stdout.startswith("PGQ UNKNOWN - ") and len(done.stdout.splitlines()) == 1
    assert "internal error" not in done.stdout and "larger than" in done.stdout


async def test_enqueue_only_retry_on_a_lost_connection_reconnects_and_skips_what_was_written(
    fresh_database: str,
) -> None:
    # psycopg-sync reopens the console's own connection: after a lost reply, the retry of the
    # same submission skips the batches already written (their dedupe keys) and writes the rest,
    # as the async drivers do; one unknown outcome is audited, never a second one.
    from pgq_console.core.enqueue import Enqueuer, parse_enqueue_form

    request = parse_enqueue_form(
        {"entrypoint": "form_ep", "payload_kind": "text", "payload": "hi", "copies": "5"},
        datetime.now(UTC),
    )
    async with LossyProxy(fresh_database) as proxy:
        backend = await backend_for(proxy.dsn, DriverKind.PSYCOPG_SYNC)
        try:
            enqueuer = Enqueuer(backend, batch_size=2)
            proxy.arm("INSERT INTO")
            first = await enqueuer.enqueue(request, submission="s1")
            assert proxy.dropped == 1
            assert first.error is not None and "outcome is unknown" in first.error
            retry = await enqueuer.enqueue(request, submission="s1")
        finally:
            await backend.close()
    assert retry.error is None, retry
    assert retry.already_written == 2 and len(retry.ids) == 3, retry
    rows = await _rows(fresh_database)
    assert sum(1 for ep, _ in rows.values() if ep == "form_ep") == 5, rows
    unknown = [r for r in audit.read_records() if r.get("outcome") == "unknown"]
    assert len(unknown) == 1


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_headers_jsonb_cannot_hold_are_refused_by_the_form(
    fresh_database: str, number: str
) -> None:
    # They passed the form and failed at enqueue with the driver's "invalid input syntax for
    # type json" (the surrogate case, with numbers).
    from pgq_console.core.enqueue import Enqueuer, FormErrors, parse_enqueue_form

    fields = {"entrypoint": "ep", "payload_kind": "text", "payload": "hi", "copies": "1"}
    with pytest.raises(FormErrors) as refused:
        parse_enqueue_form({**fields, "headers": f'{{"a": {number}}}'}, datetime.now(UTC))
    assert "headers" in str(refused.value) and "jsonb" in str(refused.value)
    # A header jsonb holds still goes through, on the same database.
    backend = await backend_for(fresh_database)
    try:
        request = parse_enqueue_form({**fields, "headers": '{"a": 1e300}'}, datetime.now(UTC))
        result = await Enqueuer(backend).enqueue(request)
    finally:
        await backend.close()
    assert result.error is None and len(result.ids) == 1


@pytest.mark.parametrize("command", [["check"], ["snapshot"], ["snapshot", "--json"]])
@pytest.mark.parametrize("password", ["Pass@TailOfPw", "Pass/TailOfPw", "5432/TailOfPw"])
def test_an_unencoded_at_sign_in_the_password_is_refused_not_shown(
    capsys: pytest.CaptureFixture[str], server_dsn: str, command: list[str], password: str
) -> None:
    # libpq splits `u:Pass@Word@host` at the first `@`: the host became `Word@host`, and every
    # label showed `u@Word@host`, the rest of the password (to Nagios, too).
    port = urlsplit(server_dsn).port or 5432
    dsn = f"postgresql://u:{password}@127.0.0.1:{port}/d"
    with pytest.raises(SystemExit) as exited:
        main([*command, "--dsn", dsn])
    out, err = capsys.readouterr()
    assert "TailOfPw" not in out + err and "Pass" not in out + err
    assert exited.value.code in (2, NagiosState.UNKNOWN)
    assert "%40" in out + err  # says how to write it


@pytest.mark.parametrize("special", ["/", "?", "#"])
@pytest.mark.parametrize("driver", ["asyncpg-pool", "psycopg"])
def test_an_unencoded_special_character_in_the_password_is_not_shown(
    capsys: pytest.CaptureFixture[str], server_dsn: str, special: str, driver: str
) -> None:
    # `/`: libpq read host `u`, port `Head`, database `TailOfPw@host/d` (the label showed it all);
    # `?`: asyncpg's parser said "bad query field: 'TailOfPw@...'".
    port = urlsplit(server_dsn).port or 5432
    dsn = f"postgresql://u:HeadOfPw{special}TailOfPw@127.0.0.1:{port}/d"
    with pytest.raises(SystemExit):
        main(["check", "--driver", driver, "--dsn", dsn])
    out, err = capsys.readouterr()
    assert "TailOfPw" not in out + err and "HeadOfPw" not in out + err, out + err
    assert len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_the_audit_listener_comes_back_after_its_connection_is_lost(
    fresh_database: str, kind: DriverKind
) -> None:
    # A server restart, failover or idle-session kill silenced other consoles' announcements
    # for good: the listener's own connection was never replaced.
    import asyncio

    seen: list[AuditAnnouncement] = []
    backend = await backend_for(fresh_database, kind)
    assert isinstance(backend, Backend)
    listener = AuditListener(backend, seen.append)
    admin = await asyncpg.connect(fresh_database)
    try:
        await listener.start()
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN %console%'"
        )
        for _ in range(300):  # the listener reconnects in the background
            await admin.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(FORGED))
            if seen:
                break
            await asyncio.sleep(0.1)
        assert seen, "no announcement after the listener's connection was terminated"
    finally:
        await admin.close()
        await listener.stop()
        await backend.close()
