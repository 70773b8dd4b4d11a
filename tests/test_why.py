"""Why isn't this job running? Checked against real PostgreSQL, each reason built with real PgQueuer
workers: one that serves only another entrypoint, a concurrency-limited consumer, a worker
killed mid-job (stale heartbeat), a busy worker, a held failure, a deferred job, a cancelled
one, a dedupe key taken by a copy."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pytest
from pgqueuer.models import JobId
from pgqueuer.queries import Queries

from pgq_console.cli import main
from pgq_console.core.backend import Backend
from pgq_console.core.target import DriverKind
from pgq_console.core.why import (
    UnknownEntrypoint,
    UnknownJob,
    WhyResult,
    why_entrypoint,
    why_job,
)
from tests.helpers import backend_for, enqueue
from tests.incident_support import eventually, status_of, worker
from tests.screens_support import run_sql


@asynccontextmanager
async def opened(dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL) -> AsyncIterator[Backend]:
    backend = await backend_for(dsn, kind)
    assert isinstance(backend, Backend)
    try:
        yield backend
    finally:
        await backend.close()


def line(result: WhyResult, code: str) -> str:
    (found,) = [r.text for r in result.reasons if r.code == code]
    return found


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG])
async def test_deferred_job_says_when_it_becomes_ready(
    fresh_database: str, kind: DriverKind
) -> None:
    (job,) = await enqueue(fresh_database, "report", 1, execute_after=timedelta(hours=1))
    async with opened(fresh_database, kind) as backend:
        result = await why_job(backend, job)
    assert result.codes() == ("deferred",)
    assert "ready at" in line(result, "deferred") and "(in 1 h)" in line(result, "deferred")
    assert result.fact("deferred") == 1 and result.status == "queued"


async def test_a_worker_serving_only_another_entrypoint(fresh_database: str) -> None:
    dsn = fresh_database
    async with worker(dsn, "other"), opened(dsn) as backend:
        # The worker is alive: it takes and finishes a job of its own entrypoint.
        (other,) = await enqueue(dsn, "other", 1)
        await eventually(lambda: status_of(dsn, other), lambda s: s is None, "the other job")
        (job,) = await enqueue(dsn, "lonely", 1)
        result = await why_job(backend, job)
        assert result.codes() == ("no_worker",)
        text = line(result, "no_worker")
        assert "no live worker serves lonely" in text and "none did in the last day" in text
        assert result.fact("last_served") is None
        # The entrypoint's own answer says the same.
        assert (await why_entrypoint(backend, "lonely")).codes() == ("no_worker",)
        # A worker served it 20 minutes ago (the log, aggregated into pgqueuer's statistics,
        # says so): "when one last did".
        await run_sql(
            dsn,
            "INSERT INTO pgqueuer_statistics (created, count, priority, status, entrypoint) "
            "VALUES (date_trunc('sec', now() - interval '20 minutes'), 1, 0, 'successful', "
            "'lonely')",
        )
        text = line(await why_job(backend, job), "no_worker")
        assert "one last did at" in text and "(20 min ago)" in text
        # The other entrypoint has a live worker: no such reason there.
        (mine,) = await enqueue(dsn, "other", 1, execute_after=timedelta(hours=1))
        assert "no_worker" not in (await why_job(backend, mine)).codes()


async def test_concurrency_limited_consumer(fresh_database: str) -> None:
    dsn = fresh_database
    async with worker(dsn, "limited", 3600, limit=1), opened(dsn) as backend:
        first, second, third = await enqueue(dsn, "limited", 3)
        await eventually(lambda: status_of(dsn, first), lambda s: s == "picked", "a pick")
        running = await why_job(backend, first)
        assert running.codes() == ("running",)
        result = await why_job(backend, third)
        assert "concurrency" in result.codes()
        assert "1 running job holds its slot; the next starts" in line(result, "concurrency")
        assert result.fact("slots_used") == 1 and result.fact("jobs_ahead") == 1
        assert "1 ready job is ahead of it" in line(result, "ahead")
        assert "no drain rate" in line(result, "ahead")
        assert "no_worker" not in result.codes()
        by_entrypoint = await why_entrypoint(backend, "limited")
        assert by_entrypoint.codes() == ("concurrency", "ahead")
        assert "2 ready jobs wait" in line(by_entrypoint, "ahead")
        assert second  # its turn comes first: it is the one ahead


async def test_jobs_ahead_and_the_drain_rate(fresh_database: str) -> None:
    dsn = fresh_database
    # 20 jobs of it finished over the last 5 minutes, one every 15 s: about 4 a minute.
    await run_sql(
        dsn,
        "INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, created) "
        "SELECT n, 'successful', 'steady', 0, now() - (n - 1) * interval '15 seconds' "
        "FROM generate_series(1, 20) AS n",
    )
    ids = await enqueue(dsn, "steady", 16)
    (urgent,) = await enqueue(dsn, "steady", 1, priority=5)
    async with opened(dsn) as backend:
        result = await why_job(backend, ids[-1])
        assert result.codes() == ("ahead",)  # a worker served it a minute ago: no no_worker
        # 15 older ones and the urgent one: 16 at 4/min.
        assert line(result, "ahead") == (
            "16 ready jobs are ahead of it: about 4 min at the current rate "
            "(4.2/min over the last 5 min)"
        )
        assert (await why_job(backend, urgent)).codes() == ("clear",)


async def test_the_drain_rate_is_the_workers_own_pace(fresh_database: str) -> None:
    """A worker restarted a minute ago (the usual end of an incident) has finished 20 jobs: it
    drains 20 a minute, not 4 (20 over the whole 5-minute window). Jobs an operator cancelled
    or deleted are no drain rate: with no worker, no rate is made up from them."""
    dsn = fresh_database
    for job, status, entrypoint, ago in (
        ("1000", "picked", "resumed", "60 seconds"),  # its first pick since the restart
        ("n", "successful", "resumed", "n * interval '2 seconds'"),
        ("2000 + n", "canceled", "resumed", "30 seconds"),
        ("2000 + n", "deleted", "resumed", "30 seconds"),
        ("3000 + n", "canceled", "abandoned", "30 seconds"),
    ):
        await run_sql(
            dsn,
            "INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, created) "
            f"SELECT {job}, '{status}', '{entrypoint}', 0, now() - "
            + (ago if ago.startswith("n") else f"interval '{ago}'")
            + " FROM generate_series(1, 20) AS n"
            + (" WHERE n = 1" if job == "1000" else ""),
        )
    ids = await enqueue(dsn, "resumed", 11)
    abandoned = await enqueue(dsn, "abandoned", 2)
    async with opened(dsn) as backend:
        result = await why_job(backend, ids[-1])
        assert result.codes() == ("ahead",)
        # (a slow machine reads a moment after the inserts: 19.x a minute, 30 or 31 s)
        assert re.fullmatch(
            r"10 ready jobs are ahead of it: about 3[01]s at the current rate "
            r"\((19\.[5-9]|20\.0)/min over the last 1 min\)",
            line(result, "ahead"),
        ), line(result, "ahead")
        assert 19.5 <= result.fact("finished_per_min") <= 20.0
        assert 60.0 <= result.fact("drain_span_s") <= 61.5
        lonely = await why_job(backend, abandoned[-1])
        assert lonely.codes() == ("no_worker", "ahead")
        assert "no drain rate to estimate from" in line(lonely, "ahead")
        assert lonely.fact("finished_per_min") == 0


async def test_busy_workers(fresh_database: str) -> None:
    dsn = fresh_database
    async with worker(dsn, "busy", 3600, batch=1, max_tasks=2), opened(dsn) as backend:
        ids = await enqueue(dsn, "busy", 3)
        result = await eventually(
            lambda: why_job(backend, ids[-1]),
            lambda r: "busy" in r.codes(),
            "the waiting job to be reported busy",
        )
        assert "the 1 live worker serving it is busy: 2 of its jobs running" in line(result, "busy")
        assert result.fact("workers_live") == 1


async def test_the_worker_serving_it_is_busy_with_another_entrypoint(fresh_database: str) -> None:
    """One worker serves 'hog' and 'light' with two slots; two long hog jobs hold both. A light
    job waits: not "nothing holds it back" (no worker holds a light job, so the busy check of
    its own entrypoint saw nothing)."""
    dsn = fresh_database
    async with (
        worker(dsn, "hog", 3600, batch=1, max_tasks=2, also="light"),
        opened(dsn) as backend,
    ):
        (served,) = await enqueue(dsn, "light", 1)
        await eventually(lambda: status_of(dsn, served), lambda s: s is None, "the light job")
        hogs = await enqueue(dsn, "hog", 2)

        async def both_picked() -> list[str | None]:
            return [await status_of(dsn, hog) for hog in hogs]

        await eventually(both_picked, lambda s: s == ["picked", "picked"], "the hogs")
        (waiting,) = await enqueue(dsn, "light", 1)
        await run_sql(
            dsn,
            "UPDATE pgqueuer SET execute_after = now() - interval '10 seconds' WHERE id = $1",
            waiting,
        )  # ready 10 s ago; the light job served a minute ago
        await run_sql(
            dsn,
            "UPDATE pgqueuer_log SET created = created - interval '1 minute' "
            "WHERE entrypoint = 'light'",
        )
        result = await why_job(backend, waiting)
        assert result.codes() == ("busy",), result.reasons
        text = line(result, "busy")
        assert (
            "it has waited 10s though a worker picked or finished one of light's jobs 1 min" in text
        )
        assert "busy with other entrypoints' jobs (2 running on 1 worker)" in text
        assert (await why_entrypoint(backend, "light")).codes() == ("busy",)


async def test_a_stopped_worker_that_served_it_minutes_ago(fresh_database: str) -> None:
    """Its only worker served it three minutes ago and stopped (a deploy scaled it to zero: no
    stale job is left behind). A job ready for two minutes that nobody touched has no worker,
    though the activity window (5 min) still remembers one."""
    dsn = fresh_database
    async with worker(dsn, "mail") as process, opened(dsn) as backend:
        (served,) = await enqueue(dsn, "mail", 1)
        await eventually(lambda: status_of(dsn, served), lambda s: s is None, "the served job")
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
    await run_sql(dsn, "UPDATE pgqueuer_log SET created = created - interval '3 minutes'")
    (waiting,) = await enqueue(dsn, "mail", 1)
    await run_sql(
        dsn,
        "UPDATE pgqueuer SET execute_after = now() - interval '2 minutes' WHERE id = $1",
        waiting,
    )
    async with opened(dsn) as backend:
        result = await why_job(backend, waiting)
        assert result.codes() == ("no_worker",), result.reasons
        text = line(result, "no_worker")
        assert "no worker holds a job of any entrypoint" in text
        assert "in the 2 min it has been ready; one last did at" in text
        assert "(3 min ago): its workers look stopped" in text


async def test_dead_worker_stale_heartbeat(fresh_database: str) -> None:
    dsn = fresh_database
    async with worker(dsn, "export", 3600) as process, opened(dsn) as backend:
        (job,) = await enqueue(dsn, "export", 1)
        await eventually(lambda: status_of(dsn, job), lambda s: s == "picked", "the pick")
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        result = await eventually(
            lambda: why_job(backend, job, stale_after=timedelta(seconds=2)),
            lambda r: "stale_worker" in r.codes(),
            "the heartbeat to go stale",
        )
        text = line(result, "stale_worker")
        assert "reclaim is one key away (Workers screen, R)" in text
        assert str(result.fact("queue_manager_id")) in text
        # A job of that entrypoint waiting since: its only worker is dead, though it picked a
        # job a moment ago (inside the activity window). Not "nothing holds it back".
        (waiting,) = await enqueue(dsn, "export", 1)
        await run_sql(
            dsn,
            "UPDATE pgqueuer SET execute_after = now() - interval '10 seconds' WHERE id = $1",
            waiting,
        )  # ready 10 s ago, the dead worker's pick a minute ago
        await run_sql(
            dsn,
            "UPDATE pgqueuer_log SET created = created - interval '1 minute' "
            "WHERE entrypoint = 'export' AND status = 'picked'",
        )
        for answer in (
            await why_job(backend, waiting, stale_after=timedelta(seconds=2)),
            await why_entrypoint(backend, "export", stale_after=timedelta(seconds=2)),
        ):
            assert answer.codes() == ("no_worker",), answer.reasons
            text = line(answer, "no_worker")
            assert "no live worker serves export: the worker holding its jobs stopped" in text
            assert "since it became ready 10s ago" in text and "one last did at" in text


async def test_held_cancelled_dedupe_and_unknown(fresh_database: str) -> None:
    dsn = fresh_database
    connection = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(connection)
    try:
        async with worker(dsn, "charge", on_failure="hold"), opened(dsn) as backend:
            (held,) = await queries.enqueue("charge", b"fail", dedupe_key="order-7")
            await eventually(lambda: status_of(dsn, held), lambda s: s == "failed", "the hold")
            # A held job releases its key: a copy takes it (deferred, so it stays queued).
            (copy,) = await queries.enqueue(
                "charge", b"again", dedupe_key="order-7", execute_after=timedelta(hours=1)
            )
            result = await why_job(backend, held)
            assert result.codes() == ("held", "dedupe")
            assert "ValueError" in line(result, "held") and "requeue" in line(result, "held")
            assert f"taken by job {copy} (queued)" in line(result, "dedupe")
            # The entrypoint's answer (w on its overview row) names its held job, not only
            # that nothing is ready.
            by_entrypoint = await why_entrypoint(backend, "charge")
            assert by_entrypoint.codes() == ("deferred", "held")
            assert line(by_entrypoint, "held") == (
                "1 of its jobs is held: failed and waiting for a requeue (Failures screen, r)"
            )
            assert by_entrypoint.fact("held") == 1
            copy_result = await why_job(backend, copy)
            assert copy_result.codes() == ("deferred", "dedupe")
            assert "blocks a copy" in line(copy_result, "dedupe")

            (gone,) = await enqueue(dsn, "nobody", 1)
            await queries.mark_job_as_cancelled([JobId(gone)])
            cancelled = await why_job(backend, gone)
            assert cancelled.codes() == ("cancelled",) and cancelled.status == "canceled"
            with pytest.raises(UnknownJob):
                await why_job(backend, 987654321)
    finally:
        await connection.close()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


def test_cli_why(capsys: pytest.CaptureFixture[str], fresh_database: str) -> None:
    dsn = fresh_database
    (job,) = asyncio.run(enqueue(dsn, "report\x1b[31m", 1, execute_after=timedelta(hours=2)))
    code, out, err = run_cli(capsys, "why", str(job), "--dsn", dsn)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("it is deferred: ready at")
    assert "  entrypoint:" in out and "report\\x1b[31m" in out and "\x1b" not in out
    code, out, err = run_cli(capsys, "why", str(job), "--json", "--dsn", dsn)
    assert code == 0, err
    document = json.loads(out)
    assert [r["code"] for r in document["reasons"]] == ["deferred"]
    assert document["facts"]["deferred"] == 1
    # A rate limit is not something PgQueuer records: said once, never claimed ("none").
    assert document["facts"]["rate_limit"] == "not visible (none stored; worker code may limit)"
    assert sum("rate" in r["text"] for r in document["reasons"]) == 0
    code, out, err = run_cli(capsys, "why", "--entrypoint", "report\x1b[31m", "--dsn", dsn)
    assert code == 0 and "deferred" in out
    code, out, err = run_cli(capsys, "why", "424242", "--dsn", dsn)
    assert code != 0 and out == ""
    assert err.strip() == "pgq-console: error: job 424242 is neither in the queue nor in the log"
    code, out, err = run_cli(capsys, "why", "1", "--dsn", "postgresql://u:sekrit@127.0.0.1:1/d")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "sekrit" not in err


def test_cli_why_an_entrypoint_never_seen_says_so_with_close_names(
    capsys: pytest.CaptureFixture[str], fresh_database: str
) -> None:
    """A typo is not "no job waiting" (that sends the reader looking for workers): nothing has
    that name, and the close names that exist are suggested."""
    dsn = fresh_database
    asyncio.run(enqueue(dsn, "send_email", 1))
    # Only an old log row: seen, though nothing of it is current (not "never seen").
    asyncio.run(
        run_sql(
            dsn,
            "INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, created) "
            "VALUES (999, 'successful', 'nightly_export', 0, now() - interval '3 days')",
        )
    )
    code, out, err = run_cli(capsys, "why", "--entrypoint", "send_emial", "--dsn", dsn)
    assert code == 2 and out == ""
    assert err.strip() == (
        "pgq-console: error: entrypoint 'send_emial' was never seen: no job, log row or "
        "schedule has that name; did you mean 'send_email'?"
    )
    code, out, err = run_cli(capsys, "why", "--entrypoint", "zzz", "--dsn", dsn)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "'zzz' was never seen" in err
    assert "entrypoints seen: 'nightly_export', 'send_email'" in err
    code, out, err = run_cli(capsys, "why", "--entrypoint", "nightly_export", "--dsn", dsn)
    assert code == 0, err
    assert out.splitlines()[0] == "nightly_export has no job waiting to be picked"


async def test_why_entrypoint_never_seen_in_an_empty_queue(fresh_database: str) -> None:
    async with opened(fresh_database) as backend:
        with pytest.raises(UnknownEntrypoint) as raised:
            await why_entrypoint(backend, "nosuch")
    assert str(raised.value).endswith("; no entrypoint has been seen yet")


def test_cli_why_bad_job_id_is_one_line_with_one_prefix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, "why", "abc")
    assert code == 2 and out == ""
    assert err.strip() == "pgq-console: error: why: argument JOB_ID: invalid int value: 'abc'"


@pytest.mark.parametrize("option", ["--window", "--stale-after"])
@pytest.mark.parametrize("value", ["0s", "0", "0.0m"])
def test_cli_why_zero_durations_are_refused(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    code, out, err = run_cli(
        capsys, "why", "1", f"{option}={value}", "--dsn", "postgresql://u@127.0.0.1:1/d"
    )
    assert code == 2 and out == ""
    assert err.strip() == (
        f"pgq-console: error: why: {option} must be longer than zero, not {value!r}"
    )


def test_cli_why_a_job_id_no_bigint_holds_is_one_line_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A number past 64 bits names no job: argparse's one line, not the driver's complaint
    about 'query argument $1' after connecting (the DSN here is never reached)."""
    dsn = "postgresql://u@127.0.0.1:1/d"
    code, out, err = run_cli(capsys, "why", "99999999999999999999999", "--dsn", dsn)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "pgq-console: error: why: no job has id 99999999999999999999999 (job ids are 64-bit)"
    ]


def test_cli_an_option_given_a_bare_double_dash_is_one_usage_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--window=--`: argparse hands the option an empty list; every reader then crashed
    ('internal error (AttributeError ...)') instead of a usage line, exit 2."""
    dsn = "postgresql://u@127.0.0.1:1/d"
    for argv in (
        ("bundle", "--window=--"),
        ("why", "1", "--stale-after=--"),
        ("why", "--entrypoint=--"),
    ):
        code, out, err = run_cli(capsys, *argv, "--dsn", dsn)
        assert code == 2 and out == "", argv
        option = argv[-1].partition("=")[0]
        assert err.strip().splitlines() == [
            f"pgq-console: error: argument {option}: expected one argument, not '--'"
        ]


def test_cli_why_a_never_seen_entrypoint_cuts_long_names(
    capsys: pytest.CaptureFixture[str], fresh_database: str
) -> None:
    dsn = fresh_database
    asyncio.run(enqueue(dsn, "L" * 3000 + "\x1b[31m", 1))
    code, out, err = run_cli(capsys, "why", "--entrypoint", "Q" * 500, "--dsn", dsn)
    assert code == 2 and out == ""
    (message,) = err.strip().splitlines()
    assert len(message) < 400 and "\x1b" not in message
    assert "(3005 characters)" in message and "(500 characters)" in message
