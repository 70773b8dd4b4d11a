"""`snapshot --json` and `check` against real PostgreSQL: numbers and Nagios exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from pgq_console.cli import main
from pgq_console.scripting import NagiosState, parse_duration, parse_threshold
from tests.conftest import drop_database, make_database
from tests.helpers import truth

SEED = """
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'send_email', now() - interval '10 minutes', now() - interval '10 minutes'
    FROM generate_series(1, 30);
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'resize_image', now(), now() - interval '30 seconds' FROM generate_series(1, 4);
INSERT INTO pgqueuer (priority, status, entrypoint, created, execute_after)
SELECT 0, 'queued', 'resize_image', now(), now() + interval '1 hour' FROM generate_series(1, 6);
INSERT INTO pgqueuer (priority, status, entrypoint, created, queue_manager_id, heartbeat)
SELECT 0, 'picked', 'resize_image', now(), gen_random_uuid(), now() - interval '20 minutes'
    FROM generate_series(1, 2);
INSERT INTO pgqueuer (priority, status, entrypoint, created, queue_manager_id, heartbeat)
SELECT 0, 'picked', 'send_email', now(), gen_random_uuid(), now() FROM generate_series(1, 3);
INSERT INTO pgqueuer (priority, status, entrypoint, created)
SELECT 0, 'failed', 'charge_card', now() FROM generate_series(1, 7);
"""


@pytest.fixture(scope="module")
def script_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "scripting")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(SEED)
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, out, err


def test_snapshot_json_matches_the_database(
    capsys: pytest.CaptureFixture[str], script_dsn: str
) -> None:
    code, out, err = run(capsys, "snapshot", "--json", "--dsn", script_dsn)
    assert code == 0, err
    document = json.loads(out)
    expected = asyncio.run(truth(script_dsn))
    rows = {row["entrypoint"]: row for row in document["entrypoints"]}
    assert set(rows) == set(expected)
    for entrypoint, counts in expected.items():
        for key in ("ready", "deferred", "picked", "held"):
            assert rows[entrypoint][key] == counts.get(key, 0), (entrypoint, key)
    assert document["totals"]["held"] == 7 and document["totals"]["stale"] == 2
    assert 590 < rows["send_email"]["oldest_ready_age_s"] < 700
    assert rows["charge_card"]["oldest_ready_age_s"] is None
    database = script_dsn.split("?")[0].rsplit("/", 1)[-1]
    assert document["database"].endswith(f"/{database}")
    assert "password" not in out


def test_snapshot_text_and_driver_choice(
    capsys: pytest.CaptureFixture[str], script_dsn: str
) -> None:
    code, out, _ = run(capsys, "--driver", "psycopg-sync", "snapshot", "--dsn", script_dsn)
    assert code == 0
    assert "send_email" in out and "stale picked jobs" in out


@pytest.mark.parametrize(
    ("args", "state", "words"),
    [
        ([], NagiosState.OK, "PGQ OK - 3 entrypoints, held 7, stale 2"),
        (["--max-failed", "10"], NagiosState.OK, "PGQ OK"),
        (["--max-failed", "5,10"], NagiosState.WARNING, "PGQ WARNING - held 7 > 5"),
        (["--max-failed", "6"], NagiosState.CRITICAL, "PGQ CRITICAL - held 7 > 6"),
        (["--max-stale", "1"], NagiosState.CRITICAL, "stale 2 > 1"),
        (["--max-stale", "1", "--stale-after", "30m"], NagiosState.OK, "stale 0"),
        (["--max-age", "send_email=5m,15m"], NagiosState.WARNING, "send_email oldest ready"),
        (["--max-age", "send_email=5m"], NagiosState.CRITICAL, "send_email oldest ready"),
        (["--max-age", "resize_image=5m"], NagiosState.OK, "PGQ OK"),
        (["--max-age", "*=1m"], NagiosState.CRITICAL, "send_email oldest ready"),
        # A name no queue, log or schedule knows: a typo would never fire, so it warns.
        (
            ["--max-age", "nothing_here=1s"],
            NagiosState.WARNING,
            "PGQ WARNING - no entrypoint 'nothing_here' in the queue, log or schedules",
        ),
        # The worst state wins; CRITICAL problems are listed first.
        (
            ["--max-failed", "5,10", "--max-age", "send_email=1m"],
            NagiosState.CRITICAL,
            "PGQ CRITICAL - send_email oldest ready",
        ),
    ],
)
def test_check_exit_codes(
    capsys: pytest.CaptureFixture[str],
    script_dsn: str,
    args: list[str],
    state: NagiosState,
    words: str,
) -> None:
    code, out, _ = run(capsys, "check", "--dsn", script_dsn, *args)
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert code == state, lines[0]
    assert words in lines[0], lines[0]
    assert " | " in lines[0] and "held=7;" in lines[0]  # Nagios perfdata


@pytest.mark.parametrize(
    "args",
    [
        ["--max-failed", "lots"],
        ["--max-failed", "10,5"],
        ["--max-age", "send_email"],
        ["--max-age", "send_email=soon"],
        ["--stale-after", "x"],
        ["--no-such-flag"],
    ],
)
def test_check_bad_arguments_are_unknown(
    capsys: pytest.CaptureFixture[str], script_dsn: str, args: list[str]
) -> None:
    code, out, _ = run(capsys, "check", "--dsn", script_dsn, *args)
    assert code == NagiosState.UNKNOWN
    assert out.startswith("PGQ UNKNOWN - ") and len(out.strip().splitlines()) == 1


def test_check_unreachable_database_is_critical(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "--dsn", "postgresql://u:hidden-pw@127.0.0.1:1/d")
    assert code == NagiosState.CRITICAL
    assert out.startswith("PGQ CRITICAL - cannot reach u@127.0.0.1:1/d")
    assert "hidden-pw" not in out


def test_check_config_error_is_unknown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[profiles.x]\nbogus = 1\n")
    code, out, _ = run(capsys, "check", "--config", str(config), "--profile", "x")
    assert code == NagiosState.UNKNOWN
    assert out.startswith("PGQ UNKNOWN - ") and f"{config}:2: profiles.x.bogus" in out


def test_check_uses_profiles_like_the_console(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, script_dsn: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[profiles.ops]\ndsn = "{script_dsn}"\nread_only = true\n')
    code, out, _ = run(capsys, "check", "--config", str(config), "--profile", "ops")
    assert code == NagiosState.OK, out


def test_installed_command_exit_code(script_dsn: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ"))}
    env["PGQ_CONSOLE_DSN"] = script_dsn  # from the environment, as cron would
    done = subprocess.run(
        [sys.executable, "-m", "pgq_console", "check", "--max-failed", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stdout.startswith("PGQ CRITICAL - held 7 > 3") and done.stderr == ""


def test_durations_and_thresholds() -> None:
    assert parse_duration("90").total_seconds() == 90
    assert parse_duration("1h30m").total_seconds() == 5400
    assert parse_duration("250ms").total_seconds() == 0.25
    threshold = parse_threshold("5,10", what="x")
    assert (threshold.state(5), threshold.state(6), threshold.state(11)) == (0, 1, 2)
