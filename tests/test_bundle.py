"""The incident bundle from a scripted incident (real PgQueuer workers: one holding failures,
one killed mid-job): the right top fingerprint, the dead worker and its stale job, an audit
record, and none of the planted secrets (a password in the DSN, one in a traceback, a payload,
a header value) unless payloads are asked for."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg
import pytest
from pgqueuer.queries import Queries

from pgq_console.cli import main
from pgq_console.core.audit import AuditRecord, append
from pgq_console.core.bundle import collect, render_markdown
from pgq_console.core.workers import WorkerRow
from tests.conftest import drop_database, make_database
from tests.helpers import backend_for, enqueue
from tests.incident_support import eventually, status_of, worker
from tests.screens_support import run_sql

SECRETS = ("PLANTED-PW", "TB-SECRET", "PAYLOAD-SECRET", "HEADER-SECRET", "QUERY-SECRET")


def with_password(dsn: str, password: str) -> str:
    """The same URI with a password (trust authentication ignores it)."""
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def script_incident(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(connection)
    try:
        async with worker(dsn, "charge", on_failure="hold"):
            held = []
            for n in range(3):
                (job,) = await queries.enqueue(
                    "charge",
                    f"fail {n} PAYLOAD-SECRET".encode(),
                    headers={"authorization": "Bearer HEADER-SECRET"},
                )
                held.append(job)
            (other,) = await queries.enqueue("charge", b"key")
            for job in [*held, other]:
                await eventually(partial(status_of, dsn, job), lambda s: s == "failed", "hold")
        async with worker(dsn, "export", 3600) as process:
            (stuck,) = await enqueue(dsn, "export", 1)
            await eventually(lambda: status_of(dsn, stuck), lambda s: s == "picked", "the pick")
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()

        async def stale() -> bool:
            rows = await run_sql(
                dsn,
                "SELECT heartbeat < now() - interval '3 seconds' AS old FROM pgqueuer "
                "WHERE status = 'picked'",
            )
            return bool(rows and rows[0]["old"])

        await eventually(stale, bool, "the dead worker's heartbeat to go stale")
    finally:
        await connection.close()


async def idle_in_transaction(dsn: str) -> bool:
    rows = await run_sql(
        dsn,
        "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
        "AND state = 'idle in transaction' AND state_change < now() - interval '6 seconds'",
    )
    return bool(rows)


@pytest.fixture(scope="module")
def incident_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "bundle")
    asyncio.run(script_incident(dsn))
    # A session left idle in a transaction whose last statement carries a secret literal.
    session = psycopg.connect(dsn)
    session.execute("SELECT 'QUERY-SECRET' AS leaked")

    async def wait_idle() -> None:
        await eventually(partial(idle_in_transaction, dsn), bool, "an idle transaction")

    asyncio.run(wait_idle())
    try:
        yield with_password(dsn, "PLANTED-PW")
    finally:
        session.close()
        drop_database(server_dsn, dsn)


def bundle(
    capsys: pytest.CaptureFixture[str], dsn: str, *extra: str
) -> tuple[Path, str, dict[str, Any]]:
    append(
        AuditRecord(
            action="requeue",
            predicate="held jobs of charge",
            count=3,
            previewed=3,
            job_ids=(1, 2, 3),
            database="db",
            reason="incident drill",
        )
    )
    with pytest.raises(SystemExit) as exited:
        main(["bundle", "--dsn", dsn, "--stale-after", "2s", *extra])
    out, err = capsys.readouterr()
    assert exited.value.code == 0, err
    path = Path(out.strip())
    twin = path.with_suffix(".json")
    for written in (path, twin):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
    return path, path.read_text(), json.loads(twin.read_text())


def test_bundle_from_a_scripted_incident(
    capsys: pytest.CaptureFixture[str], incident_dsn: str, tmp_path: Path
) -> None:
    path, markdown, document = bundle(capsys, incident_dsn)
    assert path.parent == tmp_path / "state" / "pgq-console" / "bundles"
    twin_text = path.with_suffix(".json").read_text()
    for secret in SECRETS:
        assert secret not in markdown, secret
        assert secret not in twin_text, secret
    top = document["failures"]["top"]
    assert top[0]["fingerprint"].startswith("ValueError: card declined for job <n>")
    assert top[0]["count"] == 3 and top[0]["held"] == 3
    assert top[1]["fingerprint"].startswith("KeyError")
    assert "Traceback" in top[0]["sample_traceback"]
    assert "postgresql://billing:***@" in top[0]["sample_traceback"]
    assert top[0]["sample_job"]["payload"] == "<redacted>"
    assert top[0]["sample_job"]["headers"] == {"authorization": "<redacted>"}
    assert "### 1. ValueError: card declined for job <n>" in markdown
    # The dead worker and its stale job; the overview numbers; the audit record; versions.
    (dead,) = [w for w in document["workers"] if w["state"] == "dead"]
    assert dead["entrypoints"] == ["export"]
    assert document["stale_jobs"]["total"] == 1
    totals = document["overview"]["totals"]
    assert totals["held"] == 4 and totals["picked"] == 1
    assert document["audit"]["records"][-1]["reason"] == "incident drill"
    assert "incident drill" in markdown
    assert document["versions"]["pgqueuer"] and document["database_health"]["tables"]
    assert "## Database health" in markdown and "NOTIFY queue usage" in markdown
    (idle,) = document["database_health"]["long_transactions"]
    assert idle["state"] == "idle in transaction" and idle["query"] == "SELECT '…' AS leaked"


def test_bundle_with_payloads_still_hides_passwords_and_headers(
    capsys: pytest.CaptureFixture[str], incident_dsn: str
) -> None:
    path, markdown, document = bundle(capsys, incident_dsn, "--include-payloads")
    assert "PAYLOAD-SECRET" in document["failures"]["top"][0]["sample_job"]["payload"]
    assert "PAYLOAD-SECRET" in markdown
    text = markdown + path.with_suffix(".json").read_text()
    for secret in ("PLANTED-PW", "TB-SECRET", "HEADER-SECRET", "QUERY-SECRET"):
        assert secret not in text, secret


def test_bundle_connection_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bundle", "--dsn", "postgresql://u:sekrit@127.0.0.1:1/d"])
    out, err = capsys.readouterr()
    assert exited.value.code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "sekrit" not in err


def test_bundle_window_is_parsed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bundle", "--window", "soon", "--dsn", "postgresql://u@127.0.0.1:1/d"])
    _, err = capsys.readouterr()
    assert exited.value.code != 0 and "not a duration" in err
    assert timedelta(hours=1)  # the default window is an hour (README)


@pytest.mark.parametrize("window", ["0s", "0", "-5s", "0.0h"])
def test_bundle_window_must_be_longer_than_zero(
    capsys: pytest.CaptureFixture[str], window: str
) -> None:
    """A window of nothing (or less) is a bad argument: one line, exit 2, before connecting."""
    with pytest.raises(SystemExit) as exited:
        main(["bundle", f"--window={window}", "--dsn", "postgresql://u@127.0.0.1:1/d"])
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("pgq-console: error: ") and "connect" not in line
    if window.startswith("-"):  # no sign in a duration
        assert line == "pgq-console: error: not a duration: '-5s' (e.g. 90s, 5m, 1h30m)"
    else:
        assert (
            line == f"pgq-console: error: bundle: --window must be longer than zero, not {window!r}"
        )


def test_names_in_the_bundle_are_escaped_as_the_console_shows_them() -> None:
    """ESC, BEL and line breaks in a name read as the screen shows them (\\x1b, \\x0a), never
    dropped (which would make a different-looking name) nor raw."""
    from pgq_console.core.bundle import _name

    shown = _name("\x1b[31mred\x1b]0;pwned\x07 a\nb\tc", ("hunter2",))
    assert shown == "\\x1b[31mred\\x1b]0;pwned\\x07 a\\x0ab\\x09c"
    assert _name("postgresql://u:hunter2@h/db", ("hunter2",)).count("hunter2") == 0


WORKER_A = "0a0a0a0a-0000-4000-8000-00000000000a"
WORKER_B = "0b0b0b0b-0000-4000-8000-00000000000b"


async def test_bundle_lists_every_known_worker_with_what_is_attributable(
    fresh_database: str, tmp_path: Path
) -> None:
    """Worker A holds 3 jobs; one picked job records no worker; worker B, seen by the console
    a minute ago, holds nothing at the read (between jobs). The Workers section lists A and B
    (B with when it was last seen), and accounts for every picked job."""
    dsn = fresh_database
    await run_sql(
        dsn,
        "INSERT INTO pgqueuer (priority, status, entrypoint, queue_manager_id, heartbeat) "
        f"SELECT 0, 'picked', 'export', '{WORKER_A}', now() FROM generate_series(1, 3)",
    )
    await run_sql(
        dsn,
        "INSERT INTO pgqueuer (priority, status, entrypoint, heartbeat) "
        "VALUES (0, 'picked', 'export', now())",
    )
    (now,) = [row["now"] for row in await run_sql(dsn, "SELECT now()")]
    seen = WorkerRow(
        queue_manager_id=WORKER_B,
        entrypoints=("report",),
        picked=2,
        stale=0,
        newest_heartbeat=now - timedelta(seconds=61),
        oldest_heartbeat=now - timedelta(seconds=62),
        last_seen=now - timedelta(seconds=60),
    )
    audit = tmp_path / "audit.jsonl"
    backend = await backend_for(dsn)
    accounted = "4 picked jobs at this read: 3 held by 1 worker, 1 with no worker recorded."
    try:
        # From the command line (no memory of workers): every picked job accounted for.
        alone = await collect(backend, audit_path=audit)
        assert accounted in alone.markdown and "(none)" not in alone.markdown
        assert [w["queue_manager_id"] for w in alone.document["workers"]] == [WORKER_A]
        made = await collect(backend, audit_path=audit, seen_workers=[seen])
    finally:
        await backend.close()
    assert accounted in made.markdown and "(none)" not in made.markdown
    workers = {w["queue_manager_id"]: w for w in made.document["workers"]}
    assert set(workers) == {WORKER_A, WORKER_B}
    assert workers[WORKER_A]["picked"] == 3 and workers[WORKER_A]["state"] == "busy"
    assert workers[WORKER_A]["last_seen"] is None  # holds jobs now
    assert workers[WORKER_B]["picked"] == 0 and workers[WORKER_B]["state"] == "idle"
    assert workers[WORKER_B]["entrypoints"] == ["report"]
    assert workers[WORKER_B]["last_seen"] == (now - timedelta(seconds=60)).isoformat(
        timespec="seconds"
    )
    assert made.document["picked_at_workers_read"] == {
        "total": 4,
        "attributed": 3,
        "no_worker_recorded": 1,
    }
    assert f"| {WORKER_B} | idle | report | 0 | 0 |" in made.markdown
    # The overview's count, read a moment before, is named where it differs (a busy queue).
    document = made.document
    document["overview"]["totals"]["picked"] = 22
    assert (
        "4 picked jobs at this read: 3 held by 1 worker, 1 with no worker recorded "
        "(the overview, read a moment before, counted 22)." in render_markdown(document)
    )


# -- a planted incident: secrets and the payload echoed into exception messages ---------------

# A real PgQueuer worker whose handler raises with a secret in every shape it reaches a message
# in, and the job's own payload echoed (as text, or as the parsed object's repr), plus line
# breaks and a backtick run that must not break the Markdown list or close its fence.
LEAKY_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from datetime import timedelta
    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    FORMS = {
        "pgpass": "PGPASSWORD=s3cret1",
        "pydict": "{'password': 's3cret2'}",
        "colon": "password: s3cret3",
        "jsonish": '"password": "s3cret4"',
        "uri": "postgresql://u:s3cret5@h/db",
    }

    async def main(dsn):
        connection = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(connection)))

        @qm.entrypoint("leaky", on_failure="hold")
        async def work(job):
            text = job.payload.decode()
            kind = json.loads(text)["kind"]
            echo = repr(json.loads(text)) if kind in ("pydict", "jsonish") else text
            if kind == "uri":  # the headers too (a header value under a harmless key)
                echo += f" with headers {job.headers}"
            tail = "\\n- NOT-A-LIST-ITEM\\n````\\n# NOT-A-HEADING" if kind == "colon" else ""
            raise RuntimeError(f"connect failed ({FORMS[kind]}) on {echo}{tail}")

        await qm.run(dequeue_timeout=timedelta(seconds=0.5))

    asyncio.run(main(sys.argv[1]))
    """
)
PLANTED = ("s3cret1", "s3cret2", "s3cret3", "s3cret4", "s3cret5")
KINDS = ("pgpass", "pydict", "colon", "jsonish", "uri")


def leaky_payload(kind: str) -> bytes:
    return json.dumps({"kind": kind, "note": f"CUSTOMER-PAYLOAD-{kind}", "order": 4711}).encode()


async def plant_incident(dsn: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LEAKY_WORKER,
        dsn,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        ids = []
        for kind in KINDS:
            ids += await queries.enqueue(
                "leaky", leaky_payload(kind), headers={"x-tenant": "HDR-VALUE-9000"}
            )
        for job in ids:
            await eventually(partial(status_of, dsn, job), lambda s: s == "failed", "held")
    finally:
        await connection.close()
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


@pytest.fixture(scope="module")
def planted_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "bundle_planted")
    try:
        asyncio.run(plant_incident(dsn))
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def _fences_and_items(markdown: str) -> tuple[list[str], list[str], list[str]]:
    """(fenced blocks' contents, list items' inline text, headings) as a CommonMark parser
    reads the bundle."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(markdown)
    fences = [t.content for t in tokens if t.type == "fence"]
    items, headings = [], []
    for index, token in enumerate(tokens):
        if (
            token.type == "inline"
            and tokens[index - 1].type == "paragraph_open"
            and index >= 2
            and tokens[index - 2].type == "list_item_open"
        ):
            items.append(token.content)
        if token.type == "inline" and tokens[index - 1].type == "heading_open":
            headings.append(token.content)
    return fences, items, headings


def test_a_planted_incident_leaks_no_secret_nor_payload(
    capsys: pytest.CaptureFixture[str], planted_dsn: str
) -> None:
    """Five fingerprints, each message carrying a secret (PGPASSWORD=, a dict, `password:`,
    JSON, a DSN) and its job's payload echoed: neither file shows a secret, a payload's text or
    a header value; the fingerprints are the same as without redaction."""
    from pgq_console.core.fingerprint import mask_message

    path, markdown, document = bundle(capsys, planted_dsn)
    twin = path.with_suffix(".json").read_text()
    for text in (markdown, twin):
        for secret in (*PLANTED, "CUSTOMER-PAYLOAD", "HDR-VALUE-9000"):
            assert secret not in text, (secret, text)
    top = document["failures"]["top"]
    assert len(top) == 5 and all(f["count"] == 1 for f in top)
    for failure in top:
        assert failure["sample_job"]["payload"] == "<redacted>"
        assert failure["sample_job"]["headers"] == {"x-tenant": "<redacted>"}
        assert "RuntimeError: connect failed" in failure["sample_traceback"]
    # Redacted where the secret was, the rest of the message kept (readable, and the
    # fingerprint's unmasked parts unchanged).
    messages = "\n".join(f["sample_message"] for f in top)
    for shown in ("PGPASSWORD=***", "'password': '***'", "password: ***", '"password": "***"'):
        assert shown in messages, messages
    assert "postgresql://u:***@h/db" in messages
    assert "with headers {'x-tenant': '***'}" in messages
    titles = [f["fingerprint"] for f in top]
    assert any(t.startswith("RuntimeError: connect failed (PGPASSWORD=***) on ") for t in titles)
    assert mask_message("{'password': 's3cret2'}") in " ".join(titles)  # masked, as it was
    # The Markdown: every sample message and traceback in a fence the text cannot close; the
    # line breaks in the message make no list item and no heading.
    fences, items, headings = _fences_and_items(markdown)
    assert not any("NOT-A-LIST-ITEM" in item for item in items)
    # (The fingerprint's own heading shows the line breaks escaped, on one line.)
    assert not any(heading.startswith("NOT-A-HEADING") for heading in headings)
    assert any("- NOT-A-LIST-ITEM\n````\n# NOT-A-HEADING" in block for block in fences)
    assert sum("connect failed" in block for block in fences) == 10  # message + traceback


def test_a_planted_incident_with_payloads_shows_them(
    capsys: pytest.CaptureFixture[str], planted_dsn: str
) -> None:
    path, markdown, document = bundle(capsys, planted_dsn, "--include-payloads")
    twin = path.with_suffix(".json").read_text()
    for kind in KINDS:
        assert f"CUSTOMER-PAYLOAD-{kind}" in markdown
    payloads = [f["sample_job"]["payload"] for f in document["failures"]["top"]]
    assert all("CUSTOMER-PAYLOAD-" in payload for payload in payloads)
    for text in (markdown, twin):
        for secret in (*PLANTED, "HDR-VALUE-9000"):
            assert secret not in text, secret


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("PGPASSWORD=s3cret1 psql", "PGPASSWORD=*** psql"),
        ("{'password': 's3cret2'}", "{'password': '***'}"),
        ("password: s3cret3", "password: ***"),
        ('{"password": "s3cret4"}', '{"password": "***"}'),
        ("postgresql://u:s3cret5@h/db", "postgresql://u:***@h/db"),
        ("host=h password='a b' user=u", "host=h password='***' user=u"),
        ("db_passwd=x1 pwd=x2 client_secret=x3", "db_passwd=*** pwd=*** client_secret=***"),
        ("?access_token=x4&sslmode=require", "?access_token=***&sslmode=require"),
        ("x-api-key: x5\nAuthorization: Bearer x6", "x-api-key: ***\nAuthorization: ***"),
        ('"{\\"token\\": \\"x7\\"}"', '"{\\"token\\": \\"***\\"}"'),
        # Nothing secret: kept.
        ("password authentication failed for user x", None),
        ("invalid token: <str>", None),
        ("KeyError: 'token'", None),
        ('File "/app/token.py", line 3, in go', None),
    ],
)
def test_scrub_finds_secrets_by_their_key(text: str, shown: str | None) -> None:
    from pgq_console.core.errors import scrub

    assert scrub(text, ()) == (text if shown is None else shown)


def test_a_fence_is_longer_than_any_backtick_run_inside() -> None:
    from pgq_console.core.bundle import _fence

    assert _fence("plain") == ["```", "plain", "```"]
    assert _fence("a ``` b")[0] == "````"
    # "````" alone is not inside "a ``` b ``````" only by luck: the longest run counts.
    assert _fence("x ` y ``````` z")[0] == "`" * 8


@pytest.mark.parametrize("text", ["a-" * 20_000, "x." * 20_000 + "password=1", "a:" * 20_000])
def test_scrub_is_linear_in_the_text(text: str) -> None:
    """Every log line and traceback goes through scrub: starting a match inside every run of
    `a-a-a-...` made it quadratic (6 s for 10,000 characters, so ~100 s for these 40,000).
    Linear takes milliseconds: the bound is a liveness limit a starved machine still meets, and
    the quadratic form misses by far."""
    import time

    from pgq_console.core.errors import scrub

    started = time.perf_counter()
    scrub(text, ())
    assert time.perf_counter() - started < 20.0
