"""In-process consumers on real PostgreSQL: built-in and user handlers, user factories, graceful
stop with jobs in flight (nothing lost, nothing run twice), cancelling, and refusals."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import psycopg
import pytest
from pgqueuer.models import Job, JobId

from pgq_console.core.backend import Backend, PsycopgBackend
from pgq_console.core.clock import SystemClock
from pgq_console.core.consumers import (
    Consumer,
    ConsumerState,
    ConsumerSupervisor,
    parse_consumer_form,
)
from pgq_console.core.enqueue import FormErrors
from pgq_console.core.errors import ConsoleError
from pgq_console.core.target import DriverKind, Installation
from tests import consumer_fixtures
from tests.helpers import backend_for, enqueue, wait_for


def spec(**values: str) -> Any:
    return parse_consumer_form({"handler": "noop", "batch_size": "10", **values})


async def until(predicate: Callable[[], bool], within: float = 30.0, what: str = "") -> None:
    await wait_for(predicate, within=within, what=what)


async def log_counts(dsn: str, entrypoint: str) -> dict[str, dict[int, int]]:
    """status -> {job_id: rows} from the log, plus 'queue' -> {job_id: 1} for rows still there."""
    connection = await asyncpg.connect(dsn)
    try:
        log = await connection.fetch(
            "SELECT status::text, job_id, count(*) AS n FROM pgqueuer_log WHERE entrypoint = $1 "
            "GROUP BY 1, 2",
            entrypoint,
        )
        queue = await connection.fetch(
            "SELECT id, status::text FROM pgqueuer WHERE entrypoint = $1", entrypoint
        )
    finally:
        await connection.close()
    counts: dict[str, dict[int, int]] = {}
    for row in log:
        counts.setdefault(row["status"], {})[row["job_id"]] = row["n"]
    for row in queue:
        counts.setdefault(f"queue_{row['status']}", {})[row["id"]] = 1
    return counts


@pytest.fixture
def supervisor() -> Iterator[ConsumerSupervisor]:
    made = ConsumerSupervisor({"console": "resources"}, SystemClock())
    yield made
    made.close()


def state(consumer: Consumer) -> ConsumerState:
    """The state now (a function call, so mypy does not keep an earlier narrowing)."""
    return consumer.state


def test_form_validation() -> None:
    with pytest.raises(FormErrors) as caught:
        parse_consumer_form(
            {
                "handler": "sleep",
                "argument": "-1",
                "entrypoints": "",
                "batch_size": "0",
                "concurrency_limit": "x",
                "heartbeat_timeout_s": "0",
            }
        )
    assert set(caught.value.by_field) == {
        "argument",
        "entrypoints",
        "batch_size",
        "concurrency_limit",
        "heartbeat_timeout_s",
    }
    with pytest.raises(FormErrors) as caught:
        parse_consumer_form({"handler": "handler", "argument": "no colon", "entrypoints": "a"})
    assert "package.module:function" in caught.value.by_field["argument"]
    assert spec(handler="fail-p", argument="10%", entrypoints="a").argument == "0.1"
    assert spec(handler="factory", argument="m:create").entrypoints == ()
    assert spec(entrypoints="a, b,a").entrypoints == ("a", "b")


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG])
async def test_noop_consumer_processes_jobs_on_its_own_connection(
    database_dsn: str, supervisor: ConsumerSupervisor, kind: DriverKind
) -> None:
    entrypoint = f"noop_{kind.value.replace('-', '_')}"
    ids = await enqueue(database_dsn, entrypoint, 40)
    backend = await backend_for(database_dsn, kind)
    try:
        consumer = await supervisor.start(backend, spec(entrypoints=entrypoint))
        assert state(consumer) is ConsumerState.RUNNING
        await until(lambda: consumer.done == 40, what="40 jobs done")
        # The UI's connection is free while the consumer works.
        assert isinstance(backend, Backend)
        assert await backend.read("SELECT 1 AS one") == [{"one": 1}]
        supervisor.stop(consumer.id)
        assert await supervisor.wait(consumer.id, within=20)
    finally:
        await backend.close()
    assert state(consumer) is ConsumerState.STOPPED
    counts = await log_counts(database_dsn, entrypoint)
    assert counts["successful"] == {job_id: 1 for job_id in ids}
    assert "queue_queued" not in counts and "queue_picked" not in counts


async def test_graceful_stop_drains_in_flight_jobs_and_loses_none(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    ids = await enqueue(database_dsn, "slow", 30)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(
            backend,
            spec(
                handler="sleep",
                argument="400",
                entrypoints="slow",
                batch_size="5",
                concurrency_limit="5",  # at most 5 picked at a time: the rest stays queued
            ),
        )
        await until(lambda: consumer.in_flight > 0, what="jobs in flight")
        supervisor.stop(consumer.id)
        assert state(consumer) is ConsumerState.DRAINING
        assert consumer.snapshot().state_text.startswith("draining ")
        assert await supervisor.wait(consumer.id, within=30)
        assert state(consumer) is ConsumerState.STOPPED and consumer.in_flight == 0
        finished_by_first = consumer.done
        assert 0 < finished_by_first < 30

        mid = await log_counts(database_dsn, "slow")
        assert "queue_picked" not in mid  # every picked job was finished and recorded
        assert len(mid["successful"]) == finished_by_first
        assert len(mid["queue_queued"]) == 30 - finished_by_first

        second = await supervisor.start(
            backend, spec(handler="sleep", argument="10", entrypoints="slow", batch_size="5")
        )
        await until(lambda: second.done == 30 - finished_by_first, what="the rest done")
        assert await supervisor.drain_all(within=30)
    finally:
        await backend.close()
    final = await log_counts(database_dsn, "slow")
    assert final["successful"] == {job_id: 1 for job_id in ids}  # each job exactly once
    assert "queue_queued" not in final and "queue_picked" not in final


async def test_second_stop_cancels_running_jobs(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    ids = await enqueue(database_dsn, "stuck", 3)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(
            backend, spec(handler="sleep", argument="600000", entrypoints="stuck")
        )
        await until(lambda: consumer.in_flight == 3, what="three jobs running")
        supervisor.stop(consumer.id)
        assert not await supervisor.wait(consumer.id, within=0.5)  # still draining
        outcome = supervisor.cancel_running(consumer.id, consumer.running_ids())
        assert sorted(outcome.cancelled) == sorted(ids) and outcome.spared == ()
        assert await supervisor.wait(consumer.id, within=20)
    finally:
        await backend.close()
    assert consumer.cancelled == 3 and consumer.done == 0
    counts = await log_counts(database_dsn, "stuck")
    assert counts["canceled"] == {job_id: 1 for job_id in ids}
    assert "queue_picked" not in counts and "successful" not in counts


async def test_builtin_failure_and_log_handlers(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    await enqueue(database_dsn, "always_fails", 4)
    await enqueue(database_dsn, "logged", 2)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        failing = await supervisor.start(
            backend, spec(handler="fail", entrypoints="always_fails", on_failure="hold")
        )
        logging_consumer = await supervisor.start(
            backend, spec(handler="log", entrypoints="logged")
        )
        await until(lambda: failing.errors == 4 and logging_consumer.done == 2)
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    counts = await log_counts(database_dsn, "always_fails")
    held = sorted(counts["queue_failed"])
    assert len(held) == 4  # held for requeue
    # One line per failed job in the consumer's log: no traceback there (with the console's
    # own wrapper frames in it, it read like a crash of the console).
    text = "\n".join(failing.lines)
    assert "Traceback" not in text and "pgq_console" not in text, text
    failed = sorted(line.split(" ", 1)[1] for line in failing.lines if " failed: " in line)
    assert failed == sorted(
        f"job {job_id} always_fails failed: RuntimeError: simulated failure of job {job_id}"
        for job_id in held
    ), text
    # The traceback is where it belongs: the job's log row (the job's detail shows it).
    connection = await asyncpg.connect(database_dsn)
    try:
        traces = await connection.fetch(
            "SELECT job_id, traceback->>'traceback' AS trace FROM pgqueuer_log "
            "WHERE entrypoint = 'always_fails' AND traceback IS NOT NULL"
        )
    finally:
        await connection.close()
    assert sorted(row["job_id"] for row in traces) == held
    assert all(
        "Traceback" in row["trace"] and "simulated failure" in row["trace"] for row in traces
    )
    logged = "\n".join(logging_consumer.lines)
    assert "logged: logged-0" in logged and "logged: logged-1" in logged


async def test_user_handlers_async_and_sync(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    async_ids = await enqueue(database_dsn, "user_async", 3)
    sync_ids = await enqueue(database_dsn, "user_sync", 3)
    connection = await asyncpg.connect(database_dsn)
    try:
        await connection.execute("UPDATE pgqueuer SET payload = 'boom' WHERE id = $1", sync_ids[0])
    finally:
        await connection.close()
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        first = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:async_handler",
                entrypoints="user_async",
            ),
        )
        second = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:sync_handler",
                entrypoints="user_sync",
            ),
        )
        await until(lambda: first.done == 3 and second.done + second.errors == 3)
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    assert set(async_ids) <= set(consumer_fixtures.PROCESSED["async"])
    assert set(sync_ids) <= set(consumer_fixtures.PROCESSED["sync"])
    assert consumer_fixtures.SYNC_THREADS and "MainThread" not in consumer_fixtures.SYNC_THREADS
    assert second.errors == 1
    second_log = "\n".join(second.lines)
    assert "ValueError" in second_log and "[red]not markup[/red]" in second_log
    assert "async handler saw job" in "\n".join(first.lines)  # logging captured per consumer


@pytest.mark.parametrize(
    ("factory", "entrypoint", "bucket"),
    [
        ("tests.consumer_fixtures:create_pgqueuer", "factory_job", "factory"),
        ("tests.consumer_fixtures:create_queue_manager", "factory_qm_job", "qm"),
    ],
)
async def test_user_factory(
    database_dsn: str,
    supervisor: ConsumerSupervisor,
    monkeypatch: pytest.MonkeyPatch,
    factory: str,
    entrypoint: str,
    bucket: str,
) -> None:
    monkeypatch.setenv("PGQC_TEST_FACTORY_DSN", database_dsn)
    ids = await enqueue(database_dsn, entrypoint, 5)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(backend, spec(handler="factory", argument=factory))
        assert consumer.entrypoints == (entrypoint,)
        await until(lambda: consumer.done == 5, what="factory jobs done")
        supervisor.stop(consumer.id)
        assert await supervisor.wait(consumer.id, within=20)
    finally:
        await backend.close()
    assert state(consumer) is ConsumerState.STOPPED
    assert set(ids) <= set(consumer_fixtures.PROCESSED[bucket])


@pytest.mark.parametrize(
    ("argument", "needle"),
    [
        ("tests.no_such_module:create", "cannot import tests.no_such_module"),
        ("tests.consumer_fixtures:missing", "has no attribute missing"),
        ("tests.consumer_fixtures:NOT_CALLABLE", "not a function"),
        ("tests.consumer_fixtures:not_a_context_manager", "async context manager"),
    ],
)
async def test_bad_user_code_is_one_clear_line(
    database_dsn: str, supervisor: ConsumerSupervisor, argument: str, needle: str
) -> None:
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        with pytest.raises(ConsoleError) as caught:
            await supervisor.start(backend, spec(handler="factory", argument=argument))
    finally:
        await backend.close()
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
    assert supervisor.active == []


async def test_refusals(database_dsn: str, supervisor: ConsumerSupervisor) -> None:
    sync_backend = await backend_for(database_dsn, DriverKind.PSYCOPG_SYNC)
    try:
        with pytest.raises(ConsoleError, match="psycopg-sync"):
            await supervisor.start(sync_backend, spec(entrypoints="x"))
    finally:
        await sync_backend.close()

    connection = await psycopg.AsyncConnection.connect(database_dsn)  # autocommit off
    no_autocommit = PsycopgBackend(connection, Installation(), "test", owned=True)
    try:
        with pytest.raises(ConsoleError, match="autocommit"):
            await supervisor.start(no_autocommit, spec(entrypoints="x"))
    finally:
        await no_autocommit.close()

    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        with pytest.raises(ConsoleError, match="read-only"):
            await supervisor.start(backend, spec(entrypoints="x"), read_only=True)
    finally:
        await backend.close()
    assert supervisor.consumers == {}


def test_log_lines_are_escaped() -> None:
    consumer = Consumer(1, spec(entrypoints="a"), SystemClock())
    consumer.log("evil \x1b[2J payload\nsecond line")
    assert all("\x1b" not in line for line in consumer.lines)
    lines, seen = consumer.new_lines(0)
    assert len(lines) == 2 and seen == 2
    assert consumer.new_lines(seen) == ([], 2)


def test_lines_printed_by_threads_side_by_side_stay_whole() -> None:
    """print() writes its text and its newline apart: two handler threads printing at once
    must not splice their lines together (each thread's partial line waits for its own)."""
    consumer = Consumer(1, spec(entrypoints="a"), SystemClock())
    consumer.take_output("stderr", "sync warning of job 1", 101)
    consumer.take_output("stderr", "sync warning of job 2", 202)
    consumer.take_output("stderr", "\n", 101)
    consumer.take_output("stderr", "\n", 202)
    consumer.take_output("stdout", "unfinished", 101)
    consumer.flush_output()
    # Each log line starts with its time ("18:26:15 "): compare what follows it.
    assert [line.split(" ", 1)[1] for line in list(consumer.lines)[-3:]] == [
        "stderr: sync warning of job 1",
        "stderr: sync warning of job 2",
        "unfinished",
    ]


async def test_shut_down_drains_then_hands_back_what_did_not_finish(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """Any exit (a signal, quitting, an embedding program stopping the console): jobs that
    finish within the drain are recorded, the rest go back to `queued`, none is `canceled`."""
    quick_ids = await enqueue(database_dsn, "drain_quick", 3)
    slow_ids = await enqueue(database_dsn, "drain_slow", 4)
    # The quick jobs end when the drain has begun, not after a fixed sleep: with 300 ms sleeps
    # they could end before the slow consumer had picked its jobs on a busy box (CI, 12-02),
    # and "all seven running" never held.
    gate = consumer_fixtures.GATES["drain_quick"] = asyncio.Event()
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        quick = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:gated_handler",
                entrypoints="drain_quick",
            ),
        )
        slow = await supervisor.start(
            backend, spec(handler="sleep", argument="600000", entrypoints="drain_slow")
        )
        await until(lambda: quick.in_flight == 3 and slow.in_flight == 4, what="all running")
        # A drain long enough that a busy loop cannot miss the gate opening inside it.
        shutting = asyncio.ensure_future(supervisor.shut_down(5.0, "SIGTERM received"))
        await until(
            lambda: quick.snapshot().state_text.startswith("draining") or shutting.done(),
            what="the drain under way",
        )
        gate.set()  # the quick jobs finish within the drain
        report = await shutting
        assert await supervisor.drain_all(within=30)  # everything has ended (liveness)
    finally:
        gate.set()
        await backend.close()
    assert (report.running, report.released, report.unsettled) == (7, 4, 0)
    assert report.finished == 3 and "3 of 7" in report.describe()
    assert quick.done == 3 and slow.done == 0 and slow.cancelled == 0 and slow.released == 4
    assert state(slow) is ConsumerState.STOPPED
    assert "put back in the queue" in "\n".join(slow.lines)
    quick_counts = await log_counts(database_dsn, "drain_quick")
    assert quick_counts["successful"] == {job_id: 1 for job_id in quick_ids}
    slow_counts = await log_counts(database_dsn, "drain_slow")
    assert "canceled" not in slow_counts and "successful" not in slow_counts
    assert slow_counts["queue_queued"] == {job_id: 1 for job_id in slow_ids}


async def test_handler_base_exceptions_fail_only_their_job(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """SystemExit(3) or KeyboardInterrupt in a handler is that job's failure: the console (this
    event loop) keeps running and another consumer's running jobs are not touched."""
    exit_ids = await enqueue(database_dsn, "exits", 2)
    sync_ids = await enqueue(database_dsn, "exits_sync", 1)
    bystander_ids = await enqueue(database_dsn, "bystander", 2)
    connection = await asyncpg.connect(database_dsn)
    try:
        await connection.execute(
            "UPDATE pgqueuer SET payload = 'keyboard' WHERE id = $1", exit_ids[1]
        )
    finally:
        await connection.close()
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        bystander = await supervisor.start(
            backend, spec(handler="sleep", argument="1500", entrypoints="bystander")
        )
        await until(lambda: bystander.in_flight == 2, what="the bystander's jobs running")
        exiting = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:exiting_handler",
                entrypoints="exits",
                on_failure="hold",
            ),
        )
        exiting_sync = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:exiting_sync_handler",
                entrypoints="exits_sync",
                on_failure="hold",
            ),
        )
        await until(lambda: exiting.errors == 2 and exiting_sync.errors == 1, what="failures")
        await until(lambda: bystander.done == 2, what="the bystander's jobs done")
        assert state(exiting) is ConsumerState.RUNNING
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    text = "\n".join(exiting.lines)
    assert "SystemExit(3)" in text and "KeyboardInterrupt" in text
    counts = await log_counts(database_dsn, "exits")
    assert counts["queue_failed"] == {job_id: 1 for job_id in exit_ids}  # held, as failures are
    assert (await log_counts(database_dsn, "exits_sync"))["queue_failed"] == {sync_ids[0]: 1}
    bystanders = await log_counts(database_dsn, "bystander")
    assert bystanders["successful"] == {job_id: 1 for job_id in bystander_ids}
    assert "canceled" not in bystanders


async def test_sync_handlers_have_their_own_threads_and_say_what_runs(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """Blocking sync handlers neither starve the console's default thread pool (a second
    consumer starts at once) nor claim more running jobs than hold a thread."""
    consumer_fixtures.RELEASE_THREADS.clear()
    await enqueue(database_dsn, "holds_threads", 40)
    await enqueue(database_dsn, "after_holders", 3)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        holder = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:holding_sync_handler",
                entrypoints="holds_threads",
                batch_size="4",
            ),
        )
        # 2 x batch size threads (the loop's default pool has 6 on two cores).
        await until(lambda: len(consumer_fixtures.HOLDING) == 8, what="every thread busy")
        # Starting another consumer loads its handler in the loop's default pool: not blocked.
        second = await asyncio.wait_for(
            supervisor.start(
                backend,
                spec(
                    handler="handler",
                    argument="tests.consumer_fixtures:async_handler",
                    entrypoints="after_holders",
                ),
            ),
            timeout=30,
        )
        await until(lambda: second.done == 3, what="the second consumer's jobs")
        snapshot = holder.snapshot()
        assert snapshot.in_flight == len(consumer_fixtures.HOLDING) == 8  # the truth
        assert snapshot.waiting == 0  # it picks no more than it has threads
        consumer_fixtures.RELEASE_THREADS.set()
        await until(lambda: holder.done == 40, within=60, what="all held jobs done")
        assert await supervisor.drain_all(within=20)
    finally:
        consumer_fixtures.RELEASE_THREADS.set()
        await backend.close()


async def test_handler_output_goes_to_its_consumers_log(
    database_dsn: str, supervisor: ConsumerSupervisor, capfd: pytest.CaptureFixture[str]
) -> None:
    """print() in a handler, async or in a thread, lands in that consumer's log and nowhere
    else (never the terminal, never another consumer's log)."""
    async_ids = await enqueue(database_dsn, "prints_async", 3)
    sync_ids = await enqueue(database_dsn, "prints_sync", 3)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        printer = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:printing_handler",
                entrypoints="prints_async",
            ),
        )
        sync_printer = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:printing_sync_handler",
                entrypoints="prints_sync",
            ),
        )
        await until(lambda: printer.done == 3 and sync_printer.done == 3, what="jobs done")
        await until(
            lambda: sum("sync warning" in line for line in sync_printer.lines) == 3,
            what="the threads' output",
        )
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    printed = "\n".join(printer.lines)
    sync_printed = "\n".join(sync_printer.lines)
    for job_id in async_ids:
        assert f"async print of job {job_id} in two" in printed
    assert printed.count("partial line done") == 3
    for job_id in sync_ids:
        assert f"sync print of job {job_id}" in sync_printed
        assert f"stderr: sync warning of job {job_id}" in sync_printed
    assert "sync warning" not in printed and "async print" not in sync_printed
    supervisor.close()
    out, err = capfd.readouterr()
    assert "print of job" not in out + err and "warning of job" not in out + err


async def test_a_handler_blocking_the_event_loop_is_named(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    await enqueue(database_dsn, "blocks_loop", 1)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        blocker = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:send_email",
                entrypoints="blocks_loop",
            ),
        )
        await until(lambda: blocker.done == 1, within=60, what="the job done")
        await until(lambda: blocker.warning is not None, what="the stall reported")
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    warning = blocker.warning or ""
    assert warning.startswith("handler blocks the event loop: ") and warning.endswith(
        " s in send_email"
    )
    seconds = float(warning.split(": ")[1].split(" s")[0])
    # The 3 s sleep, measured from the last beat before it; a busy machine only adds to it.
    assert seconds >= 2.0
    assert warning in "\n".join(blocker.lines)
    assert blocker.snapshot().warning == warning


async def test_consumer_start_cancel_and_stop_are_audited(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    from pgq_console.core.audit import read_records

    await enqueue(database_dsn, "audited_quick", 2)
    stuck_ids = await enqueue(database_dsn, "audited_stuck", 2)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        quick = await supervisor.start(backend, spec(entrypoints="audited_quick"))
        stuck = await supervisor.start(
            backend, spec(handler="sleep", argument="600000", entrypoints="audited_stuck")
        )
        await until(lambda: quick.done == 2 and stuck.in_flight == 2, what="jobs under way")
        assert len(supervisor.cancel_running(stuck.id, stuck.running_ids()).cancelled) == 2
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    records = [r for r in read_records() if r["action"].startswith("consumer")]
    by_consumer: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_consumer.setdefault(record["predicate"].split(":")[0], []).append(record)
    quick_records, stuck_records = by_consumer[quick.name], by_consumer[stuck.name]
    assert [r["action"] for r in quick_records][0] == "consumer start"
    assert quick_records[-1]["action"].startswith("consumer stopped: done 2,")
    assert quick_records[-1]["count"] == 2
    assert (
        quick_records[0]["database"] == "test-db"
        and "audited_quick" in quick_records[0]["predicate"]
    )
    cancel = next(r for r in stuck_records if r["action"] == "consumer cancel running jobs")
    assert sorted(cancel["job_ids"]) == sorted(stuck_ids) and cancel["count"] == 2
    assert stuck_records[-1]["action"].startswith("consumer stopped: done 0,")
    assert "cancelled 2" in stuck_records[-1]["action"]
    assert sorted(stuck_records[-1]["job_ids"]) == sorted(stuck_ids)


async def test_jobs_cancelled_while_running_are_not_counted_done(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """A job cancelled elsewhere (the Jobs screen's `c`) while its handler runs: pgqueuer logs
    it `canceled`; the consumer's Done must not count it."""
    from pgqueuer.queries import Queries

    ids = await enqueue(database_dsn, "cancelled_elsewhere", 2)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(
            backend, spec(handler="sleep", argument="1500", entrypoints="cancelled_elsewhere")
        )
        await until(lambda: consumer.in_flight == 2, what="both running")
        connection = await asyncpg.connect(database_dsn)
        try:
            await Queries.from_asyncpg_connection(connection).mark_job_as_cancelled([JobId(ids[0])])
        finally:
            await connection.close()
        await until(lambda: consumer.in_flight == 0, what="both handlers returned")
        assert await supervisor.drain_all(within=20)
    finally:
        await backend.close()
    assert consumer.done == 1 and consumer.cancelled == 1
    assert consumer.cancelled_ids == [ids[0]]


async def test_shut_down_hands_back_jobs_of_sync_handlers_without_waiting_for_them(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """A sync handler cannot be interrupted: its job goes back to the queue and its thread is a
    daemon, so it neither holds the process at exit nor runs on beside the job's next try."""

    consumer_fixtures.RELEASE_THREADS.clear()
    ids = await enqueue(database_dsn, "held_at_shutdown", 3)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        holder = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:holding_sync_handler",
                entrypoints="held_at_shutdown",
            ),
        )
        await until(lambda: holder.snapshot().in_flight == 3, what="three threads busy")
        report = await asyncio.wait_for(supervisor.shut_down(0.5, "SIGTERM received"), 30)
        handler_threads = [t for t in threading.enumerate() if t.name.startswith("pgqc-c")]
        assert handler_threads and all(thread.daemon for thread in handler_threads)
    finally:
        consumer_fixtures.RELEASE_THREADS.set()
        await backend.close()
    assert (report.released, report.unsettled) == (3, 0)
    counts = await log_counts(database_dsn, "held_at_shutdown")
    assert counts["queue_queued"] == {job_id: 1 for job_id in ids} and "canceled" not in counts


async def test_a_handler_catching_its_interruption_does_not_change_its_jobs_fate(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """A handler may catch the CancelledError that interrupts it, clean up (awaiting) and return
    as if it had finished: a job cancelled from the console is still `canceled`, one handed
    back at shutdown still goes back to `queued`; neither counts as done."""
    consumer_fixtures.CLEANED_UP.clear()
    cancelled_ids = await enqueue(database_dsn, "catches_cancel", 2)
    released_ids = await enqueue(database_dsn, "catches_release", 2)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    handler = "tests.consumer_fixtures:cleaning_up_handler"
    try:
        cancelled = await supervisor.start(
            backend, spec(handler="handler", argument=handler, entrypoints="catches_cancel")
        )
        released = await supervisor.start(
            backend, spec(handler="handler", argument=handler, entrypoints="catches_release")
        )
        await until(lambda: cancelled.in_flight == 2 and released.in_flight == 2, what="running")
        assert len(supervisor.cancel_running(cancelled.id, cancelled.running_ids()).cancelled) == 2
        await until(lambda: cancelled.in_flight == 0, what="the cancelled handlers ended")
        report = await supervisor.shut_down(0.0, "SIGTERM received")
        assert await supervisor.drain_all(within=30)
        await until(lambda: len(consumer_fixtures.CLEANED_UP) == 4, what="every clean-up")
    finally:
        await backend.close()
    assert (report.released, report.unsettled) == (2, 0)
    assert (cancelled.cancelled, cancelled.done, cancelled.errors) == (2, 0, 0)
    assert sorted(cancelled.cancelled_ids) == sorted(cancelled_ids)
    assert (released.released, released.done, released.retried, released.cancelled) == (2, 0, 0, 0)
    cancelled_counts = await log_counts(database_dsn, "catches_cancel")
    assert cancelled_counts["canceled"] == {job_id: 1 for job_id in cancelled_ids}
    assert "successful" not in cancelled_counts
    released_counts = await log_counts(database_dsn, "catches_release")
    assert released_counts["queue_queued"] == {job_id: 1 for job_id in released_ids}
    assert "canceled" not in released_counts and "successful" not in released_counts


def test_a_failed_job_is_one_printable_line() -> None:
    """Whatever the exception says (markup, line breaks, control characters), the log gets one
    plain line: job id, entrypoint, exception type and message."""
    consumer = Consumer(1, spec(entrypoints="e"), SystemClock())
    job = cast(Job, SimpleNamespace(id=7, entrypoint="reports"))
    consumer.log_exception(job, ValueError("[bold red]boom[/]\nsecond line\x1b[2J"))
    consumer.log_exception(job, KeyError())
    *_, first, second = consumer.lines
    assert first.split(" ", 1)[1] == (
        "job 7 reports failed: ValueError: [bold red]boom[/] second line\\x1b[2J"
    ), first
    assert second.split(" ", 1)[1] == "job 7 reports failed: KeyError", second


async def test_cancel_reaches_only_the_jobs_shown(
    database_dsn: str, supervisor: ConsumerSupervisor
) -> None:
    """`x` shows the running jobs by id; its cancel reaches exactly those still running: a job
    that ended meanwhile is not cancelled, and jobs picked after they were shown run to the end
    (the consumer stops picking and drains them)."""
    from pgq_console.core.audit import read_records

    gates = consumer_fixtures.GATES
    gates["shown_slow"], gates["shown_quick"] = asyncio.Event(), asyncio.Event()
    shown_slow = await enqueue(database_dsn, "shown_slow", 3)
    shown_quick = await enqueue(database_dsn, "shown_quick", 1)
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:gated_handler",
                entrypoints="shown_slow, shown_quick",
            ),
        )
        await until(lambda: consumer.in_flight == 4, what="four jobs running")
        shown = consumer.running_ids()  # what the dialog shows
        assert sorted(shown) == sorted(shown_slow + shown_quick)
        gates["shown_quick"].set()  # one shown job ends before the answer
        later = await enqueue(database_dsn, "shown_slow", 2)  # picked while the dialog is open
        await until(
            lambda: consumer.in_flight == 5 and set(later) <= set(consumer.running),
            what="the shown quick job done and two more picked",
        )
        outcome = supervisor.cancel_running(consumer.id, shown)
        assert sorted(outcome.cancelled) == sorted(shown_slow)
        assert outcome.gone == tuple(shown_quick)
        assert sorted(outcome.spared) == sorted(later)
        last = consumer.lines[-1]
        assert f"cancelling 3 running job(s): {', '.join(map(str, outcome.cancelled))}" in last
        assert "1 of the 4 shown had already ended" in last
        assert "2 started after the question was asked are not cancelled" in last
        await until(lambda: consumer.in_flight == 2, what="the cancelled handlers ended")
        assert consumer.state.active and consumer.snapshot().state_text == "draining 2"
        gates["shown_slow"].set()  # the jobs picked later finish as usual
        assert await supervisor.wait(consumer.id, within=30)
    finally:
        for gate in gates.values():
            gate.set()
        await backend.close()
    assert sorted(consumer.cancelled_ids) == sorted(shown_slow)
    assert consumer.done == 3 and consumer.cancelled == 3
    counts = await log_counts(database_dsn, "shown_slow")
    assert counts["canceled"] == {job_id: 1 for job_id in shown_slow}
    assert counts["successful"] == {job_id: 1 for job_id in later}
    assert (await log_counts(database_dsn, "shown_quick"))["successful"] == {shown_quick[0]: 1}
    cancel = next(
        r
        for r in read_records()
        if r["action"] == "consumer cancel running jobs"
        and r["predicate"].startswith(f"{consumer.name}:")
        and "shown_slow" in r["predicate"]
    )
    assert (cancel["count"], cancel["previewed"]) == (3, 4)
    assert sorted(cancel["job_ids"]) == sorted(shown_slow)


async def test_busy_from_a_picked_job_until_a_moment_after_the_last_done(
    database_dsn: str,
) -> None:
    """`busy` (the overview answers events less often meanwhile): not while the consumer idles,
    yes while a job runs and for `BUSY_WITHIN_S` after the last one finished, then no."""
    from pgq_console.core.consumers.supervisor import BUSY_WITHIN_S
    from tests.test_overview_pacing import HandClock

    clock = HandClock()
    supervisor = ConsumerSupervisor({"console": "resources"}, clock)
    gate = consumer_fixtures.GATES["busy_gated"] = asyncio.Event()
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        consumer = await supervisor.start(
            backend,
            spec(
                handler="handler",
                argument="tests.consumer_fixtures:gated_handler",
                entrypoints="busy_gated",
            ),
        )
        await until(lambda: state(consumer) is ConsumerState.RUNNING, what="running")
        assert not supervisor.busy()
        [job_id] = await enqueue(database_dsn, "busy_gated", 1)
        await until(lambda: consumer.in_flight == 1, what="the job running")
        clock.advance(60)  # a job that runs long: busy however long ago the last one ended
        assert list(consumer.running) == [job_id] and supervisor.busy()
        gate.set()
        await until(lambda: consumer.done == 1 and consumer.in_flight == 0, what="the job done")
        assert supervisor.busy()
        clock.advance(BUSY_WITHIN_S / 2)
        assert supervisor.busy()
        clock.advance(BUSY_WITHIN_S)
        assert not supervisor.busy()
        supervisor.stop(consumer.id)
        assert await supervisor.wait(consumer.id, within=30)
        assert not supervisor.busy()
    finally:
        gate.set()
        supervisor.close()
        await backend.close()
    assert (await log_counts(database_dsn, "busy_gated"))["successful"] == {job_id: 1}
