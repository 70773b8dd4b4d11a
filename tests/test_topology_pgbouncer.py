"""The console behind a real PgBouncer (1.18, Debian's stock settings), both pooling modes, every
async driver: the topology table re-run, each cell must say "works" (polling where LISTEN cannot
work, stated on screen)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from pgq_console.app import PgqConsole
from pgq_console.cli import main
from pgq_console.core import actions
from pgq_console.core.audit import AuditListener
from pgq_console.core.backend import AsyncpgBackend, Backend, check_schema, open_backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.models import RefreshStatus
from pgq_console.core.overview import Refresher
from pgq_console.core.stats import fetch_depth, fetch_durations, fetch_overview
from pgq_console.core.target import DriverKind, Installation, Pooler
from pgq_console.widgets.status_line import LiveLine
from tests.conftest import install_pgqueuer
from tests.helpers import enqueue, has_row, number, wait_until
from tests.topology_fixtures import Bouncer, Cluster, running_primary, start_pgbouncer

DATABASE = "pgqc_bouncer"
ASYNC_DRIVERS = [DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG]
MODES = ["transaction", "session"]
# The second row: transaction pooling told to ignore the startup parameters.
ALL_SETUPS = [*MODES, "transaction-lenient"]
POLLING_TEXT = "PgBouncer transaction pooling: polling every 2 s; set listen_dsn for live events"


@dataclass
class Topology:
    cluster: Cluster
    bouncers: dict[str, Bouncer]
    root: Path

    @property
    def direct_dsn(self) -> str:
        return self.cluster.database_dsn(DATABASE)


async def _create_database(cluster: Cluster) -> None:
    connection = await asyncpg.connect(cluster.dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
    await install_pgqueuer(cluster.database_dsn(DATABASE))


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with running_primary() as (root, cluster):
        asyncio.run(_create_database(cluster))
        bouncers: dict[str, Bouncer] = {}
        try:
            for mode in MODES:
                bouncers[mode] = start_pgbouncer(root, cluster.port, DATABASE, mode)
            bouncers["transaction-lenient"] = start_pgbouncer(
                root,
                cluster.port,
                DATABASE,
                "transaction",
                extra="ignore_startup_parameters = extra_float_digits,statement_timeout,options",
            )
            # One server connection, and clients queued for it are dropped after a second.
            bouncers["busy"] = start_pgbouncer(
                root,
                cluster.port,
                DATABASE,
                "transaction",
                extra="default_pool_size = 1\nquery_wait_timeout = 1",
            )
            # Two server connections: a client's statements stay on the one it no longer gets.
            bouncers["small"] = start_pgbouncer(
                root, cluster.port, DATABASE, "transaction", extra="default_pool_size = 2"
            )
            yield Topology(cluster, bouncers, root)
        finally:
            for bouncer in bouncers.values():
                bouncer.stop()


async def _clear(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log")
    finally:
        await connection.close()


async def _open(dsn: str, kind: DriverKind, **options: object) -> Backend:
    backend = await open_backend(kind, dsn, Installation(), "bouncer", (), **options)  # type: ignore[arg-type]
    assert isinstance(backend, Backend)
    return backend


@pytest.mark.parametrize("mode", ALL_SETUPS)
@pytest.mark.parametrize("kind", ASYNC_DRIVERS, ids=lambda kind: kind.value)
async def test_overview_numbers_through_pgbouncer(
    topology: Topology, mode: str, kind: DriverKind
) -> None:
    """Connects (no refused startup parameter), detects the mode, reads right numbers again and
    again (no prepared statement collides), and writes through pgqueuer's own queries."""
    await _clear(topology.direct_dsn)
    await enqueue(topology.direct_dsn, "bounced", 7)
    backend = await _open(topology.bouncers[mode].dsn, kind)
    try:
        expected = Pooler.SESSION if mode == "session" else Pooler.TRANSACTION
        assert backend.pooler is expected
        assert backend.can_listen is (mode == "session")
        assert not backend.connect_options.prepared_statements or mode == "session"
        await check_schema(backend)
        for _ in range(12):  # psycopg prepares from the 5th run; asyncpg from the 1st
            reading = await fetch_depth(backend)
            assert reading.depth["bounced"].ready == 7
        rows = await fetch_overview(backend, await fetch_durations(backend, _window()))
        assert {row.entrypoint: row.ready for row in rows} == {"bounced": 7}
        await backend.queries.enqueue(["bounced"], [None], [0])
        assert (await fetch_depth(backend)).depth["bounced"].ready == 8
    finally:
        await backend.close()


def _window() -> timedelta:
    return timedelta(minutes=5)


@pytest.mark.parametrize("mode", ALL_SETUPS)
@pytest.mark.parametrize("kind", ASYNC_DRIVERS, ids=lambda kind: kind.value)
async def test_screens_read_side_by_side_through_pgbouncer(
    topology: Topology, mode: str, kind: DriverKind
) -> None:
    """The screens whose statements go out at once (Database, Failures, Charts, Schedules) read
    right through either pooling mode: each statement is its own read-only transaction (a
    pool's on connections of their own, a single connection's in turn)."""
    from datetime import UTC, datetime

    from pgq_console.core.charts import fetch_charts_then_percentiles
    from pgq_console.core.health import fetch_health
    from pgq_console.core.jobs import fetch_held_and_groups
    from pgq_console.core.schedules import fetch_schedules

    await _clear(topology.direct_dsn)
    held, *_ = await enqueue(topology.direct_dsn, "bounced", 3)
    connection = await asyncpg.connect(topology.direct_dsn)
    try:
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = $1", held)
    finally:
        await connection.close()
    backend = await _open(topology.bouncers[mode].dsn, kind)
    try:
        assert not backend.one_statement_reads
        for _ in range(2):  # again: no prepared statement collides
            health = await fetch_health(backend)
            assert health.schema.installed and not health.schema.pending, health.schema
            assert health.sizes_problem is None and health.held_index is not None
            page, _groups = await fetch_held_and_groups(
                backend, datetime.now(UTC), held_limit=10, group_limit=10
            )
            assert [row.id for row in page.rows] == [held]
            charts = await fetch_charts_then_percentiles(backend, lambda _counts: None)
            assert not charts.percentiles_pending
            assert {s.entrypoint for s in charts.series} >= {"bounced"}
            assert (await fetch_schedules(backend)).rows == ()
    finally:
        await backend.close()


@pytest.mark.parametrize("mode", ALL_SETUPS)
@pytest.mark.parametrize("kind", ASYNC_DRIVERS, ids=lambda kind: kind.value)
async def test_live_mode_on_screen(topology: Topology, mode: str, kind: DriverKind) -> None:
    """Transaction pooling: the header says the console polls, and polling shows new jobs.
    Session pooling: LISTEN works, and the header says listening once an event arrived."""
    await _clear(topology.direct_dsn)
    backend = await _open(topology.bouncers[mode].dsn, kind)
    app = PgqConsole(backend, refresh_interval=2.0)
    try:
        async with app.run_test(size=(160, 30)) as pilot:
            line = app.screen.query_one(LiveLine)

            def header() -> str:
                return str(line.render())

            await wait_until(pilot, lambda: "refresh every" in header(), 30, "the live line")
            await enqueue(topology.direct_dsn, "seen", 3)
            await wait_until(
                pilot,
                lambda: has_row(app, "seen") and number(app, "seen", "ready") == "3",
                30,
                "the new jobs on screen",
            )
            if mode != "session":
                assert POLLING_TEXT in header()
                assert "listening" not in header()
            else:
                await wait_until(
                    pilot, lambda: "last event" in header(), 30, f"an event: {header()!r}"
                )
                assert "listening on ch_pgqueuer" in header()
    finally:
        await backend.close()


def _run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_check_and_snapshot_through_pgbouncer(
    topology: Topology, capsys: pytest.CaptureFixture[str], mode: str, driver: str
) -> None:
    asyncio.run(_clear(topology.direct_dsn))
    asyncio.run(enqueue(topology.direct_dsn, "healthy", 4))
    dsn = topology.bouncers[mode].dsn
    code, out, err = _run_cli(capsys, "--driver", driver, "check", "--dsn", dsn)
    assert code == 0, out + err
    assert out.startswith("PGQ OK"), out
    code, out, err = _run_cli(capsys, "--driver", driver, "snapshot", "--json", "--dsn", dsn)
    assert code == 0, err
    rows = {row["entrypoint"]: row for row in json.loads(out)["entrypoints"]}
    assert rows["healthy"]["ready"] == 4


async def _hold_failures(dsn: str, entrypoint: str, count: int) -> list[int]:
    ids = await enqueue(dsn, entrypoint, count)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("UPDATE pgqueuer SET status = 'failed' WHERE id = ANY($1)", ids)
    finally:
        await connection.close()
    return ids


@pytest.mark.parametrize("kind", ASYNC_DRIVERS, ids=lambda kind: kind.value)
async def test_requeue_through_transaction_pooling_wakes_workers_and_listen_dsn(
    topology: Topology, kind: DriverKind
) -> None:
    """The write goes through the pooler; its NOTIFY (same transaction) reaches a worker
    listening on a direct connection and the console's own LISTEN on listen_dsn."""
    await _clear(topology.direct_dsn)
    ids = await _hold_failures(topology.direct_dsn, "retry_me", 3)
    backend = await _open(
        topology.bouncers["transaction"].dsn, kind, listen_dsn=topology.direct_dsn
    )
    worker = await asyncpg.connect(topology.direct_dsn)
    worker_heard: asyncio.Queue[str] = asyncio.Queue()
    console_heard: asyncio.Queue[object] = asyncio.Queue()
    audit_heard: asyncio.Queue[object] = asyncio.Queue()
    audit_listener = AuditListener(backend, audit_heard.put_nowait)  # other consoles' writes
    try:
        await audit_listener.start()
        assert backend.pooler is Pooler.TRANSACTION and backend.can_listen
        await worker.add_listener("ch_pgqueuer", lambda *event: worker_heard.put_nowait(event[3]))
        await backend.listen(console_heard.put_nowait)
        assert backend.listener_alive()
        action = actions.requeue(backend, actions.ids_predicate(ids))
        preview = await action.preview(backend)
        assert preview.count == 3
        result = await actions.execute(backend, action, preview)
        assert result.changed == 3
        payload = await asyncio.wait_for(_next_table_changed(worker_heard), 30)
        assert '"table_changed_event"' in payload
        await asyncio.wait_for(console_heard.get(), 30)
        await asyncio.wait_for(audit_heard.get(), 30)
        assert (await fetch_depth(backend)).depth["retry_me"].ready == 3
    finally:
        await audit_listener.stop()
        await worker.close()
        await backend.close()
    assert not backend.listener_alive()


async def _next_table_changed(queue: asyncio.Queue[str]) -> str:
    while True:
        payload = await queue.get()
        if "table_changed_event" in payload:
            return payload


async def test_listen_path_broken_is_said_not_hidden(topology: Topology) -> None:
    """Told `session` behind transaction pooling, the console LISTENs, PgBouncer drops every
    NOTIFY: once inserts go unannounced for a few periods the status says the path is broken."""
    await _clear(topology.direct_dsn)
    backend = await _open(
        topology.bouncers["transaction"].dsn, DriverKind.PSYCOPG, pooler=Pooler.SESSION
    )
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=lambda snapshot: None,
        on_status=statuses.append,
        interval_s=0.5,
    )
    task = asyncio.create_task(refresher.run())
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while refresher.status.live_problem is None:
            assert loop.time() - started < 60, refresher.status
            await enqueue(topology.direct_dsn, "unheard", 1)
            await asyncio.sleep(0.3)
        assert refresher.status.listening  # what it believed; the problem says otherwise
        assert refresher.status.events_seen == 0
        assert "live path is broken" in refresher.status.live_problem
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.close()


async def test_pooler_errors_take_the_reconnect_path(topology: Topology) -> None:
    """asyncpg told there is no pooler, behind transaction pooling: its cached statements stay
    on the server connection another client now holds, so the next read names a statement the
    server it gets does not have. That is a lost session: the refresher reports the outage with
    what is frozen (not a query error forever), and reconnects."""
    await _clear(topology.direct_dsn)
    dsn = topology.bouncers["small"].dsn
    backend = await _open(dsn, DriverKind.ASYNCPG, pooler=Pooler.NONE)
    await fetch_depth(backend)  # prepared (and cached) on server connection A
    other = await asyncpg.connect(dsn, server_settings={"application_name": "other"})
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=lambda snapshot: None,
        on_status=statuses.append,
        interval_s=0.5,
        listen=False,
    )
    try:
        await other.execute("BEGIN; SELECT 1")  # holds A (PgBouncer reuses the last one idle)
        assert isinstance(backend, AsyncpgBackend)
        first = backend.connection
        task = asyncio.create_task(refresher.run())
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while not any(status.lost_since for status in statuses):
                assert loop.time() - started < 60, statuses[-1:] or "no status"
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        lost = next(status for status in statuses if status.lost_since)
        assert lost.error is not None and "lost the connection" in lost.error
        assert "retry 1 at" in lost.error
        assert first.is_closed()  # discarded: the next refresh starts on a new session
    finally:
        await other.close()
        await backend.close()


def test_pooler_and_listen_dsn_settings(tmp_path: Path) -> None:
    """Flag beats variable beats profile; a bad value is one line naming the setting."""
    from pgq_console.config import CliOptions, ConfigError, load_settings

    config = tmp_path / "config.toml"
    config.write_text(
        """[profiles.prod]
dsn = "postgresql://app@bouncer:6432/app"
pooler = "transaction"
listen_dsn = "postgresql://app@db:5432/app"
"""
    )
    settings = load_settings(CliOptions(config=str(config), profile="prod"), environ={})
    assert settings.target.pooler == "transaction"
    assert settings.target.listen_dsn == "postgresql://app@db:5432/app"
    environ = {"PGQ_CONSOLE_POOLER": "session", "PGQ_CONSOLE_LISTEN_DSN": "postgresql://x@y/z"}
    settings = load_settings(CliOptions(config=str(config), profile="prod"), environ=environ)
    assert (settings.target.pooler, settings.target.listen_dsn) == ("session", "postgresql://x@y/z")
    cli = CliOptions(config=str(config), profile="prod", pooler="none", listen_dsn="host=d")
    settings = load_settings(cli, environ=environ)
    assert (settings.target.pooler, settings.target.listen_dsn) == ("none", "host=d")
    assert load_settings(CliOptions(dsn="postgresql://a@b/c"), environ={}).target.pooler == "auto"
    with pytest.raises(ConfigError, match="unknown pooler 'pgpool'"):
        load_settings(CliOptions(dsn="postgresql://a@b/c", pooler="pgpool"), environ={})
    config.write_text('[profiles.prod]\ndsn = "postgresql://a@b/c"\npooler = "yes"\n')
    with pytest.raises(ConfigError, match=r"config.toml:3: profiles.prod.pooler: unknown pooler"):
        load_settings(CliOptions(config=str(config), profile="prod"), environ={})


def test_pooler_flags_on_the_command_line() -> None:
    from pgq_console.cli import build_parser, cli_options

    args = build_parser().parse_args(["--pooler", "transaction", "--listen-dsn", "host=db"])
    options = cli_options(args)
    assert (options.pooler, options.listen_dsn) == ("transaction", "host=db")


async def test_live_line_never_claims_listening_without_proof() -> None:
    """The header's words for each live state: polling behind a pooler, a broken live path,
    and the replica's state."""
    from datetime import UTC, datetime

    from textual.app import App, ComposeResult

    class LineApp(App[None]):
        def compose(self) -> ComposeResult:
            yield LiveLine()

    now = datetime.now(UTC)
    async with LineApp().run_test(size=(240, 10)) as pilot:
        line = pilot.app.query_one(LiveLine)
        polling = RefreshStatus(channel="ch", polling_reason="PgBouncer transaction pooling")
        line.show(polling, now)
        await pilot.pause()
        assert POLLING_TEXT in str(line.render())
        assert "no events yet" not in str(line.render())

        broken = RefreshStatus(channel="ch", listening=True, live_problem="no NOTIFY on ch ...")
        line.show(broken, now)
        await pilot.pause()
        assert "no NOTIFY on ch" in str(line.render())
        assert "listening on" not in str(line.render())

        fallback = RefreshStatus(channel="ch", listening=True, replica="replica down (x): reads")
        line.show(fallback, now)
        await pilot.pause()
        assert "listening on ch" in str(line.render())
        assert "replica down (x): reads" in str(line.render())


@pytest.mark.parametrize("flag", ["--dsn", "--listen-dsn", "--replica-dsn"])
def test_an_unparseable_dsn_never_shows_its_password(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    # One installation: a second --dsn would be refused as several (the fleet's).
    base = [] if flag == "--dsn" else ["--dsn", "postgresql://ops@127.0.0.1:1/app"]
    args = [*base, flag, "postgresql://u:secretpw@[bad"]
    code, out, err = _run_cli(capsys, *args, "snapshot")
    assert code == 2
    assert "invalid connection string" in err and "u:***@" in err
    assert "secretpw" not in out + err


@pytest.mark.parametrize("kind", ASYNC_DRIVERS, ids=lambda kind: kind.value)
async def test_query_wait_timeout_reconnects_with_frozen_since(
    topology: Topology, kind: DriverKind
) -> None:
    """PgBouncer drops a client that waited too long for a server connection: the overview
    says since when its numbers are frozen, retries, and comes back once a connection is free."""
    await _clear(topology.direct_dsn)
    dsn = topology.bouncers["busy"].dsn
    backend = await _open(dsn, kind)
    holder = await asyncpg.connect(dsn, statement_cache_size=0)
    statuses: list[RefreshStatus] = []
    refresher = Refresher(
        backend,
        SystemClock(),
        on_snapshot=lambda snapshot: None,
        on_status=statuses.append,
        interval_s=0.5,
    )
    task: asyncio.Task[None] | None = None
    try:
        await holder.execute("BEGIN; SELECT 1")  # the only server connection
        task = asyncio.create_task(refresher.run())
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not any(status.lost_since for status in statuses):
            assert loop.time() - started < 60, statuses[-1:] or "no status"
            await asyncio.sleep(0.05)
        lost = next(status for status in statuses if status.lost_since)
        assert lost.error is not None and "lost the connection" in lost.error
        assert "no numbers yet" in lost.error or "numbers below are from" in lost.error
        await holder.execute("COMMIT")
        started = loop.time()
        while not (statuses[-1].lost_since is None and statuses[-1].refreshes > 0):
            assert loop.time() - started < 90, statuses[-1]
            await asyncio.sleep(0.05)
    finally:
        if task is not None:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await holder.close()
        await backend.close()
