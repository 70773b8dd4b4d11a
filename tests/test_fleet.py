"""The fleet against real PostgreSQL: several databases, one unreachable, real PgQueuer traffic.

`fleet snapshot --json` and `fleet check` (worst state wins), the order by trouble, and an
installation that is down or slow never holding up the others.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from pgq_console.cli import main
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.clock import SystemClock
from pgq_console.core.fleet import (
    Fleet,
    FleetRow,
    LinkState,
    Member,
    by_trouble,
    without_label,
)
from pgq_console.core.refresh_loop import HIDDEN_RECHECK_S, MAX_RETRY_S
from pgq_console.core.target import DriverKind, Installation
from pgq_console.scripting import NagiosState
from tests.conftest import drop_database, make_database
from tests.helpers import ManualClock, wait_for

# Ten ready jobs waiting 10 minutes (over the default 5m threshold), three held failures.
LATE_SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint, execute_after)
SELECT 0, 'queued', 'send_email', now() - interval '10 minutes' FROM generate_series(1, 10);
INSERT INTO pgqueuer (priority, status, entrypoint) SELECT 0, 'failed', 'charge_card'
FROM generate_series(1, 3)
"""
# Two ready jobs enqueued just now.
CALM_SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint) SELECT 0, 'queued', 'resize_image'
FROM generate_series(1, 2)
"""


def closed_port_dsn() -> str:
    """A DSN to a local port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://nobody@127.0.0.1:{port}/nothing"


async def _seed(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        for statement in filter(str.strip, sql.split(";")):
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def fleet_dsns(server_dsn: str) -> Iterator[tuple[str, str, str]]:
    """(late, calm, down): a queue in trouble, a calm one, and one nobody can reach."""
    late = make_database(server_dsn, "fleet_late")
    calm = make_database(server_dsn, "fleet_calm")
    try:
        asyncio.run(_seed(late, LATE_SEED))
        asyncio.run(_seed(calm, CALM_SEED))
        yield late, calm, closed_port_dsn()
    finally:
        drop_database(server_dsn, late)
        drop_database(server_dsn, calm)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


def test_snapshot_json_has_every_installation_sorted_by_trouble(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str]
) -> None:
    late, calm, down = fleet_dsns
    code, out, err = run(
        capsys, "fleet", "snapshot", "--json", "--dsn", calm, "--dsn", late, "--dsn", down
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["worst"] == "CRITICAL"
    rows = document["installations"]
    # Down first, then the one over its threshold, then the calm one.
    assert [row["installation"] for row in rows] == ["dsn-3", "dsn-2", "dsn-1"]
    down_row, late_row, calm_row = rows
    assert down_row["state"] == "down" and down_row["since"] is not None
    assert "connection refused" in down_row["error"]
    assert down_row["ready"] is None
    assert late_row["state"] == "up" and late_row["over_threshold"] is True
    assert late_row["ready"] == 10 and late_row["held"] == 3
    assert 590 < late_row["oldest_ready_age_s"] < 900
    assert calm_row["ready"] == 2 and calm_row["held"] == 0
    assert calm_row["over_threshold"] is False
    assert calm_row["workers_alive"] == 0 and calm_row["stale_jobs"] == 0
    assert calm_row["label"].endswith(urlsplit(calm).path.lstrip("/"))


@pytest.mark.parametrize(
    ("which", "args", "state", "words"),
    [
        ("calm", [], NagiosState.OK, "PGQ FLEET OK - 1 installation, 0 down"),
        ("calm+late", ["--max-age", "1h"], NagiosState.OK, "PGQ FLEET OK - 2 installations"),
        ("calm+late", [], NagiosState.WARNING, "oldest ready 10m"),
        ("calm+late", ["--max-age", "1m,5m"], NagiosState.CRITICAL, "oldest ready 10m"),
        ("calm+late", ["--max-age", "1h", "--max-failed", "2"], NagiosState.CRITICAL, "held 3"),
        ("calm+late", ["--max-age", "1h", "--max-failed", "2,5"], NagiosState.WARNING, "held 3"),
        # The worst state wins: a WARNING elsewhere, the unreachable one CRITICAL.
        ("calm+late+down", [], NagiosState.CRITICAL, "1 down"),
    ],
)
def test_check_worst_state_wins(
    capsys: pytest.CaptureFixture[str],
    fleet_dsns: tuple[str, str, str],
    which: str,
    args: list[str],
    state: NagiosState,
    words: str,
) -> None:
    late, calm, down = fleet_dsns
    chosen = {"calm": calm, "late": late, "down": down}
    dsns = [item for name in which.split("+") for item in ("--dsn", chosen[name])]
    code, out, _ = run(capsys, "fleet", "check", *dsns, *args)
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert code == state, out
    assert lines[0].startswith(f"PGQ FLEET {state.name} - "), out
    assert words in lines[0]
    if "down" in which:
        assert "connection refused" in lines[0]
        assert "oldest ready 10m" in lines[0]  # the WARNING is listed too, after


def test_check_bad_threshold_is_unknown(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str]
) -> None:
    _, calm, _ = fleet_dsns
    code, out, _ = run(capsys, "fleet", "check", "--dsn", calm, "--max-age", "soon")
    assert code == NagiosState.UNKNOWN
    assert out.startswith("PGQ UNKNOWN - ")


def test_profiles_of_the_config_file(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str], tmp_path: Path
) -> None:
    late, calm, down = fleet_dsns
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[profiles.billing]\ndsn = "{late}"\nlabel = "PROD"\ncolor = "red"\n'
        f'[profiles.search]\ndsn = "{calm}"\nlabel = "staging"\n'
        f'[profiles.legacy]\ndsn = "{down}"\n'
    )
    code, out, err = run(capsys, "fleet", "snapshot", "--json", "--config", str(config))
    assert code == 0, err
    rows = {row["installation"]: row for row in json.loads(out)["installations"]}
    assert set(rows) == {"billing", "search", "legacy"}
    assert rows["billing"]["environment"] == "PROD" and rows["billing"]["ready"] == 10
    assert rows["search"]["environment"] == "staging"
    assert rows["legacy"]["state"] == "down"
    code, out, err = run(
        capsys,
        "fleet",
        "snapshot",
        "--json",
        "--config",
        str(config),
        "--profile",
        "search",
        "--profile",
        "billing",
    )
    assert code == 0, err
    assert [row["installation"] for row in json.loads(out)["installations"]] == [
        "billing",
        "search",
    ]
    code, out, _ = run(capsys, "fleet", "check", "--config", str(config), "--profile", "nope")
    assert code == NagiosState.UNKNOWN and "unknown profile" in out


def _member(key: str, dsn: str) -> Member:
    async def open_() -> Backend:
        backend = await open_backend(DriverKind.ASYNCPG, dsn, Installation(), key, ())
        assert isinstance(backend, Backend)
        return backend

    return Member(key=key, label=key, open=open_)


async def test_a_slow_installation_never_delays_the_others(
    fleet_dsns: tuple[str, str, str],
) -> None:
    """One installation whose queue table is locked (its reads hang until the statement
    timeout), one that never answers the connection at all, one unreachable: the healthy one
    is read, and read again, while the slow ones have not produced anything."""
    late, calm, down = fleet_dsns
    locker = await asyncpg.connect(late)
    transaction = locker.transaction()
    await transaction.start()
    await locker.execute("LOCK TABLE pgqueuer IN ACCESS EXCLUSIVE MODE")
    never = asyncio.Event()

    async def hangs() -> Backend:
        await never.wait()
        raise AssertionError("never")

    seen: list[FleetRow] = []
    states_when_calm_read_twice: dict[str, LinkState] = {}
    calm_reads = 0

    def on_row(row: FleetRow) -> None:
        nonlocal calm_reads
        seen.append(row)
        if row.key == "calm" and row.state is LinkState.UP:
            calm_reads += 1
            if calm_reads == 2:
                states_when_calm_read_twice.update({key: r.state for key, r in fleet.rows.items()})
                states_when_calm_read_twice["locked-read"] = (
                    LinkState.UP if fleet.rows["locked"].read_at else LinkState.CONNECTING
                )

    members = [
        _member("locked", late),
        Member(key="hanging", label="hanging", open=hangs),
        _member("down", down),
        _member("calm", calm),
    ]
    fleet = Fleet(members, SystemClock(), on_row=on_row, interval_s=0.25)
    task = asyncio.create_task(fleet.run())
    try:
        await wait_for(lambda: calm_reads >= 2, what="two reads of the healthy installation")
        assert states_when_calm_read_twice["hanging"] is LinkState.CONNECTING
        assert states_when_calm_read_twice["locked-read"] is LinkState.CONNECTING
        await wait_for(lambda: fleet.rows["down"].state is LinkState.DOWN)
        # Once the lock goes, the locked one catches up on its own.
        await transaction.rollback()
        await wait_for(lambda: fleet.rows["locked"].ready == 10, what="the locked one read")
        order = [row.key for row in fleet.sorted_rows()]
        assert order[0] == "down" and order.index("locked") < order.index("calm")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await locker.close()


@pytest.fixture
def closable_database(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "fleet_reconnect")
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


async def test_down_since_then_reconnects_on_its_own(
    server_dsn: str, closable_database: str
) -> None:
    """The database closed to connections and its sessions killed: down since then, up again
    (and listening again) once it takes connections."""
    dsn = closable_database
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(server_dsn)
    fleet = Fleet([_member("one", dsn)], SystemClock(), interval_s=0.25)
    task = asyncio.create_task(fleet.run())
    try:
        await wait_for(lambda: fleet.rows["one"].state is LinkState.UP)
        assert fleet.rows["one"].listening
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        await wait_for(lambda: fleet.rows["one"].state is LinkState.DOWN, what="seen down")
        down = fleet.rows["one"]
        assert down.since is not None and down.error and not down.listening
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await wait_for(lambda: fleet.rows["one"].state is LinkState.UP, what="back up")
        await wait_for(lambda: fleet.rows["one"].listening, what="listening again")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()


async def test_real_pgqueuer_traffic_shows_workers_and_events(
    fresh_database: str, fleet_dsns: tuple[str, str, str]
) -> None:
    """A real producer and QueueManagers in one installation of three: workers alive and
    NOTIFYs heard there, none elsewhere; the unreachable one stays down meanwhile."""
    from pgq_console.core.demo import DemoTraffic

    _, calm, down = fleet_dsns
    traffic = DemoTraffic(fresh_database, jobs_per_second=40)
    members = [_member("busy", fresh_database), _member("calm", calm), _member("down", down)]
    fleet = Fleet(members, SystemClock(), interval_s=0.5, slow_every_s=0.5)
    await traffic.start()
    task = asyncio.create_task(fleet.run())
    try:
        watch = fleet.watches["busy"]
        await wait_for(lambda: watch.events_seen > 0, what="a NOTIFY from PgQueuer's trigger")
        await wait_for(lambda: (fleet.rows["busy"].workers_alive or 0) >= 1, what="a live worker")
        assert fleet.rows["busy"].state is LinkState.UP and fleet.rows["busy"].listening
        assert traffic.stats.processed > 0
        await wait_for(lambda: fleet.rows["calm"].workers_alive is not None)
        assert fleet.rows["calm"].workers_alive == 0 and fleet.watches["calm"].events_seen == 0
        await wait_for(lambda: fleet.rows["down"].state is LinkState.DOWN)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await traffic.stop()


def test_trouble_order_without_a_database() -> None:
    """Down (longest first), over threshold (oldest first), held growing, the rest by name."""
    at = datetime(2026, 1, 1, 12, tzinfo=UTC)
    rows = [
        FleetRow("calm", "calm", state=LinkState.UP, oldest_ready_s=1.0),
        FleetRow("growing", "growing", state=LinkState.UP, held=9, held_growth=4),
        FleetRow("late", "late", state=LinkState.UP, oldest_ready_s=900.0),
        FleetRow("later", "later", state=LinkState.UP, oldest_ready_s=1900.0),
        FleetRow("down-new", "down-new", state=LinkState.DOWN, since=at.replace(hour=13)),
        FleetRow("down-old", "down-old", state=LinkState.DOWN, since=at),
    ]
    assert [row.key for row in by_trouble(rows)] == [
        "down-old",
        "down-new",
        "later",
        "late",
        "growing",
        "calm",
    ]


def test_no_password_in_any_output(capsys: pytest.CaptureFixture[str]) -> None:
    """A DSN with a password that cannot be reached: neither the JSON, the table nor the
    check line carries the password."""
    secret = "s3cret-Fleet-pw"
    down = closed_port_dsn().replace("nobody@", f"nobody:{secret}@")
    for argv in (
        ("fleet", "snapshot", "--json", "--dsn", down),
        ("fleet", "snapshot", "--dsn", down),
        ("fleet", "check", "--dsn", down),
    ):
        _, out, err = run(capsys, *argv)
        assert "connection refused" in out, argv
        assert secret not in out and secret not in err, argv


async def test_held_growth_moves_an_installation_up(fleet_dsns: tuple[str, str, str]) -> None:
    """Held jobs that grow while the console watches: the row says by how much, and it sorts
    above a calm installation (below none in trouble otherwise)."""
    _, calm, _ = fleet_dsns
    fleet = Fleet(
        [_member("calm", calm), _member("growing", calm)],
        SystemClock(),
        interval_s=0.25,
        slow_every_s=0.25,
    )
    task = asyncio.create_task(fleet.run())
    admin = await asyncpg.connect(calm)
    try:
        await wait_for(lambda: all(row.held == 0 for row in fleet.rows.values()))
        assert [row.key for row in fleet.sorted_rows()] == ["calm", "growing"]
        await admin.execute(
            "INSERT INTO pgqueuer (priority, status, entrypoint) "
            "SELECT 0, 'failed', 'charge_card' FROM generate_series(1, 4)"
        )
        await wait_for(lambda: fleet.rows["growing"].held_growth == 4, what="growth of 4")
        assert fleet.rows["growing"].held == 4
        # Both watch the same database: both grew, by name then.
        await wait_for(lambda: fleet.rows["calm"].held_growth == 4)
        rows = fleet.sorted_rows()
        assert all(row.trouble()[0] == 2 for row in rows)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await admin.execute("DELETE FROM pgqueuer WHERE status = 'failed'")
        await admin.close()


def test_a_profile_threshold_of_its_own(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str], tmp_path: Path
) -> None:
    """`fleet_max_age` in a profile judges that installation; `--max-age` given wins."""
    late, calm, _ = fleet_dsns
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[profiles.billing]\ndsn = "{late}"\nfleet_max_age = "20m,1h"\n'
        f'[profiles.search]\ndsn = "{calm}"\nfleet_max_age = "1s,2s"\n'
    )
    code, out, _ = run(capsys, "fleet", "check", "--config", str(config))
    assert "billing oldest ready" not in out, out  # 10 minutes: within its own 20m
    code, out, _ = run(capsys, "fleet", "check", "--config", str(config), "--max-age", "5m,1h")
    assert code == NagiosState.WARNING and "billing oldest ready 10m" in out, out
    code, out, err = run(capsys, "fleet", "snapshot", "--json", "--config", str(config))
    rows = {row["installation"]: row for row in json.loads(out)["installations"]}
    assert rows["billing"]["max_age_s"] == 1200 and rows["billing"]["over_threshold"] is False
    assert rows["search"]["max_age_s"] == 1
    config.write_text(f'[profiles.billing]\ndsn = "{late}"\nfleet_max_age = "soon"\n')
    code, out, _ = run(capsys, "fleet", "check", "--config", str(config))
    assert code == NagiosState.UNKNOWN and "profiles.billing.fleet_max_age" in out


def test_a_down_installation_is_named_once(capsys: pytest.CaptureFixture[str]) -> None:
    """The check line, the table and the JSON name the installation, then its error: the error
    does not name it again ("x down (cannot reach x: ...)")."""
    down = closed_port_dsn()
    label = down.removeprefix("postgresql://")
    code, out, _ = run(capsys, "fleet", "check", "--dsn", down)
    assert code == NagiosState.CRITICAL
    assert out.count(label) == 1, out
    assert "(cannot reach the server: connection refused" in out
    _, out, _ = run(capsys, "fleet", "snapshot", "--dsn", down)
    assert out.count(label) == 1, out
    _, out, _ = run(capsys, "fleet", "snapshot", "--json", "--dsn", down)
    (row,) = json.loads(out)["installations"]
    assert row["label"] == label
    assert (
        row["error"] == "cannot reach the server: connection refused (is PostgreSQL running there?)"
    )


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("database does not exist: prod", "database does not exist"),
        ("timed out connecting to prod", "timed out connecting"),
        ("authentication failed for prod: check the user", "authentication failed: check the user"),
        (
            'cannot connect to prod: role "prod" does not exist',
            'cannot connect: role "prod" does not exist',
        ),
        ("permission denied for table production", "permission denied for table production"),
    ],
)
def test_the_label_leaves_an_error_with_the_word_tying_it_in(message: str, shown: str) -> None:
    assert without_label(message, "prod") == shown


def test_snapshot_json_has_the_console_db_time_on_each_installation(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str]
) -> None:
    """The screen's "DB time" column (the console's database time on it, in %), in the JSON
    and the table; nothing read (down): null and "-", as the screen shows "–"."""
    _, calm, down = fleet_dsns
    code, out, err = run(capsys, "fleet", "snapshot", "--json", "--dsn", calm, "--dsn", down)
    assert code == 0, err
    rows = {row["installation"]: row for row in json.loads(out)["installations"]}
    assert rows["dsn-2"]["db_time_pct"] is None
    pct = rows["dsn-1"]["db_time_pct"]
    assert isinstance(pct, float) and 0 < pct < 100, pct
    code, out, err = run(capsys, "fleet", "snapshot", "--dsn", calm, "--dsn", down)
    assert code == 0, err
    header, *lines = out.splitlines()
    assert header.split()[-2:] == ["db", "time"]
    (down_line,) = [line for line in lines if " down " in line]
    (up_line,) = [line for line in lines if " up " in line]
    assert down_line.split()[-1] == "-" and up_line.split()[-1].endswith("%")


def test_dsns_before_and_after_fleet_all_count(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str]
) -> None:
    """`pgq-console --dsn A fleet snapshot --dsn B`: both (A was dropped)."""
    late, calm, _ = fleet_dsns
    code, out, err = run(capsys, "--dsn", calm, "fleet", "snapshot", "--json", "--dsn", late)
    assert code == 0, err
    assert len(json.loads(out)["installations"]) == 2


@pytest.mark.parametrize(
    ("argv", "points_to"),
    [
        (["why", "1"], "`pgq-console fleet`"),
        (["bundle"], "`pgq-console fleet`"),
        (["snapshot", "--json"], "`pgq-console fleet snapshot`"),
        (["snapshot", "--format", "openmetrics"], "`pgq-console fleet snapshot`"),
        (["metrics", "--listen", "127.0.0.1:0"], "`pgq-console fleet`"),
        (["serve", "--port", "0"], "`pgq-console fleet`"),
    ],
)
@pytest.mark.parametrize("where", ["after", "around"])
def test_a_one_installation_subcommand_refuses_several(
    capsys: pytest.CaptureFixture[str],
    fleet_dsns: tuple[str, str, str],
    argv: list[str],
    points_to: str,
    where: str,
) -> None:
    """Several --dsn to why, bundle, snapshot...: one line, exit 2, pointing to the fleet
    (they used to read the last one given, silently)."""
    late, calm, _ = fleet_dsns
    if where == "after":
        line = [*argv, "--dsn", calm, "--dsn", late]
    else:
        line = ["--dsn", calm, *argv, "--dsn", late]
    code, out, err = run(capsys, *line)
    assert code == 2, (out, err)
    assert out == ""
    (message,) = err.strip().splitlines()
    assert f"{argv[0]} reads one installation, and 2 were given" in message
    assert points_to in message


def test_check_refuses_several_as_unknown(
    capsys: pytest.CaptureFixture[str], fleet_dsns: tuple[str, str, str]
) -> None:
    """`check` keeps the Nagios contract: a bad command line is UNKNOWN (exit 3), one line."""
    late, calm, _ = fleet_dsns
    code, out, _ = run(capsys, "check", "--dsn", calm, "--dsn", late)
    assert code == NagiosState.UNKNOWN
    (line,) = out.strip().splitlines()
    assert line.startswith("PGQ UNKNOWN - check reads one installation")
    assert "`pgq-console fleet check`" in line


def test_several_profiles_count_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[profiles.a]\ndsn = "postgresql://u@127.0.0.1:1/a"\n'
        '[profiles.b]\ndsn = "postgresql://u@127.0.0.1:1/b"\n'
    )
    code, _, err = run(
        capsys, "--config", str(config), "--profile", "a", "why", "1", "--profile", "b"
    )
    assert code == 2 and "why reads one installation, and 2 were given" in err
    # The same one twice is one installation (no refusal: it tries to connect).
    code, _, err = run(
        capsys, "--config", str(config), "--profile", "a", "why", "1", "--profile", "a"
    )
    assert code == 2 and "reads one installation" not in err and "127.0.0.1" in err


def test_the_console_refuses_single_installation_options_with_several(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(
        capsys,
        "--dsn",
        "postgresql://u@127.0.0.1:1/a",
        "--dsn",
        "postgresql://u@127.0.0.1:1/b",
        "--replica-dsn",
        "postgresql://u@127.0.0.1:1/r",
    )
    assert code == 2
    assert "--replica-dsn goes with one installation, and 2 were given" in err


def test_an_installation_without_the_schema_is_in_error_not_down(
    capsys: pytest.CaptureFixture[str], server_dsn: str, fleet_dsns: tuple[str, str, str]
) -> None:
    """The server answers but PgQueuer is not installed there: 'error' (README: connected, its
    reads fail), not 'down' (which sends the reader to check the network); still CRITICAL."""
    _, calm, _ = fleet_dsns
    bare = make_database(server_dsn, "fleet_bare", install=False)
    try:
        code, out, err = run(capsys, "fleet", "snapshot", "--json", "--dsn", calm, "--dsn", bare)
        assert code == 0, err
        rows = json.loads(out)["installations"]
        assert rows[0]["state"] == "error" and rows[0]["since"] is not None
        assert "PgQueuer is not installed" in rows[0]["error"]
        code, out, _ = run(capsys, "fleet", "check", "--dsn", calm, "--dsn", bare)
        assert code == NagiosState.CRITICAL
        (line,) = out.strip().splitlines()
        assert line.startswith("PGQ FLEET CRITICAL - 2 installations, 0 down, 1 in error: ")
        assert " error since " in line and "PgQueuer is not installed" in line
    finally:
        drop_database(server_dsn, bare)


async def test_the_fleet_waits_on_the_consoles_clock_and_rests_while_not_seen() -> None:
    """The shared refresh loop: nothing is read (not even a connect) while the fleet is not
    seen; shown and woken, a refused installation is retried by the jittered backoff, timed by
    the injected clock."""
    clock = ManualClock()
    attempts: list[float] = []

    async def refused() -> Backend:
        attempts.append(clock.seconds)
        raise ConnectionRefusedError("connection refused")

    seen = False
    fleet = Fleet(
        [Member("one", "one", refused)],
        clock,
        interval_s=2.0,
        visible=lambda: seen,
        wait=clock.wait,
    )
    task = asyncio.create_task(fleet.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert attempts == [] and set(clock.waits) == {HIDDEN_RECHECK_S}
        seen = True
        fleet.wake()
        for _ in range(200):
            if len(attempts) >= 5:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(attempts) >= 5
    row = fleet.rows["one"]
    # Down since the first refused attempt, on the console's clock.
    assert row.state is LinkState.DOWN
    assert row.since == clock.now() - timedelta(seconds=clock.seconds - attempts[0])
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    for attempt, gap in enumerate(gaps, start=1):
        step = min(MAX_RETRY_S, 2.0 * 2 ** (attempt - 1))
        assert step / 2 <= gap <= step  # doubling from the interval, equal jitter
