"""Bad input gets one clear line on stderr, exit code 2, no traceback and no password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from pgq_console.cli import main
from tests.conftest import drop_database, make_database, with_database

SECRET = "Wr0ng-s3cret-pw"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert SECRET not in captured.err
    assert lines[0].startswith("pgq-console: error: ")
    return lines[0]


def test_bad_dsn_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_cli(capsys, "--dsn", f"host=localhost password={SECRET} bogus_option=1")
    assert "invalid connection string" in line


def test_unreachable_host(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_cli(capsys, "--dsn", f"postgresql://someone:{SECRET}@127.0.0.1:1/db")
    assert "cannot reach someone@127.0.0.1:1/db" in line and "refused" in line


def test_unknown_driver(capsys: pytest.CaptureFixture[str]) -> None:
    line = run_cli(capsys, "--dsn", "postgresql://x@127.0.0.1:1/db", "--driver", "odbc")
    assert "unknown driver 'odbc'" in line and "asyncpg-pool" in line


def test_missing_database(capsys: pytest.CaptureFixture[str], server_dsn: str) -> None:
    line = run_cli(capsys, "--dsn", with_database(server_dsn, "pgqc_no_such_database"))
    assert "database does not exist" in line and "pgqc_no_such_database" in line


def test_schema_not_installed(capsys: pytest.CaptureFixture[str], server_dsn: str) -> None:
    dsn = make_database(server_dsn, "empty", install=False)
    try:
        for driver in ("asyncpg-pool", "psycopg"):
            line = run_cli(capsys, "--dsn", dsn, "--driver", driver)
            assert "PgQueuer is not installed" in line and "`pgq install`" in line
        line = run_cli(capsys, "--dsn", dsn, "--prefix", "app_")
        assert "`pgq --prefix app_ install`" in line
    finally:
        drop_database(server_dsn, dsn)


async def _age_schema(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:  # what a pre-1.4 PgQueuer schema lacks
        await connection.execute("DROP INDEX pgqueuer_picked_slot_idx")
        await connection.execute("ALTER TABLE pgqueuer DROP COLUMN slot")
    finally:
        await connection.close()


def test_schema_older_than_pgqueuer(capsys: pytest.CaptureFixture[str], server_dsn: str) -> None:
    dsn = make_database(server_dsn, "old_schema")
    try:
        asyncio.run(_age_schema(dsn))
        line = run_cli(capsys, "--dsn", dsn)
        assert "older than pgqueuer" in line and "`pgq upgrade --plan`" in line
    finally:
        drop_database(server_dsn, dsn)


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A throwaway server of our own whose role `pgqc_pw` must give a password."""
    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    dsn = server.start()
    try:
        assert server.data_dir is not None
        hba = Path(server.data_dir) / "pg_hba.conf"
        hba.write_text("local all pgqc_pw scram-sha-256\n" + hba.read_text())

        async def prepare() -> None:
            connection = await asyncpg.connect(dsn)
            try:
                await connection.execute("CREATE ROLE pgqc_pw LOGIN PASSWORD 'right-password'")
                await connection.execute("SELECT pg_reload_conf()")
            finally:
                await connection.close()

        asyncio.run(prepare())
        yield dsn
    finally:
        server.stop()


@pytest.mark.parametrize("driver", ["asyncpg-pool", "asyncpg", "psycopg", "psycopg-sync"])
def test_authentication_failed(
    capsys: pytest.CaptureFixture[str], password_server: str, driver: str
) -> None:
    parts = urlsplit(password_server)
    netloc = f"pgqc_pw:{SECRET}@" + parts.netloc.rsplit("@", 1)[-1]
    dsn = urlunsplit(parts._replace(netloc=netloc))
    line = run_cli(capsys, "--dsn", dsn, "--driver", driver)
    assert "authentication failed for pgqc_pw@" in line


def test_password_from_environment_is_never_shown(
    capsys: pytest.CaptureFixture[str], password_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", SECRET)
    parts = urlsplit(password_server)
    netloc = "pgqc_pw@" + parts.netloc.rsplit("@", 1)[-1]
    line = run_cli(capsys, "--dsn", urlunsplit(parts._replace(netloc=netloc)))
    assert "authentication failed" in line


def test_the_installed_command_exits_2_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ"))}
    env["XDG_STATE_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pgq_console", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:1/d"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().startswith("pgq-console: error: cannot reach u@127.0.0.1:1/d")
    assert "Traceback" not in done.stderr and SECRET not in done.stderr
