"""Crashes, exit codes, secrets and bad values at the command line.

Every case runs the real `python -m pgq_console` in a subprocess with its own HOME and log
directory, so what reaches stdout, stderr and the log file is exactly what an operator sees.
"""

from __future__ import annotations

import os
import pty
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import drop_database, make_database

PASSWORD = "S3cretPW"  # planted in every DSN below; must never come out


@pytest.fixture(scope="module")
def cli_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "security_cli")
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def environment(home: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).parents[1])),
        **extra,
    }


def log_file(home: Path) -> Path:
    return home / "state" / "pgq-console" / "log" / "console.log"


def run(
    home: Path, *args: str, code: str | None = None, on_terminal: bool = False, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The console's CLI; `on_terminal` gives it a pseudo-terminal as stdin and stdout."""
    program = ["-c", code] if code else ["-m", "pgq_console"]
    command = [sys.executable, *program, *args]
    if not on_terminal:
        return subprocess.run(
            command, env=environment(home, **extra), capture_output=True, text=True, timeout=120
        )
    main, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            command,
            stdin=secondary,
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=environment(home, **extra),
        )
        _, stderr = process.communicate(timeout=120)
    finally:
        os.close(main)
        os.close(secondary)
    return subprocess.CompletedProcess(
        command, process.returncode or 0, "", stderr.decode(errors="replace")
    )


def last_line(text: str) -> str:
    """What is left once the terminal's own escapes are stripped: the last line printed."""
    lines = [line for line in text.replace("\x07", "\n").splitlines() if line.strip()]
    return lines[-1].rsplit("\x1b]22;default", 1)[-1] if lines else ""


# -- crashes and exit codes -----------------------------------------------------------------

CRASHING = (
    "import sys\n"
    "from pgq_console.app import PgqConsole\n"
    "def boom(self): raise RuntimeError('planted crash')\n"
    "PgqConsole.on_mount = boom\n"
    "from pgq_console.cli import main\n"
    "main(sys.argv[1:])\n"
)


def with_password(dsn: str) -> str:
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0].partition(":")[0] or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{PASSWORD}@{host}").geturl()


def test_a_crash_exits_non_zero_with_one_line_and_the_traceback_in_the_log(
    cli_dsn: str, tmp_path: Path
) -> None:
    result = run(tmp_path, "--dsn", with_password(cli_dsn), code=CRASHING, on_terminal=True)
    assert result.returncode == 1, result.stderr[-500:]
    line = last_line(result.stderr)
    assert line.startswith("pgq-console: error: the console crashed"), line
    assert "planted crash" in line and "Traceback" not in result.stderr
    logged = log_file(tmp_path).read_text()
    assert "Traceback" in logged and "planted crash" in logged
    assert PASSWORD not in result.stderr and PASSWORD not in logged


def test_closed_stdin_says_the_console_needs_a_terminal(cli_dsn: str, tmp_path: Path) -> None:
    shell = f"exec {sys.executable} -m pgq_console --dsn '{cli_dsn}' 0<&-"
    result = subprocess.run(
        ["sh", "-c", shell], env=environment(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "pgq-console: error: the console needs a terminal (stdin is closed or not a terminal); "
        "for scripts use `pgq-console snapshot` or `check`"
    ]


def test_check_with_an_unknown_driver_is_one_unknown_line(tmp_path: Path) -> None:
    result = run(tmp_path, "--dsn", "postgresql://u@127.0.0.1:1/x", "check", "--driver", "odbc")
    assert result.returncode == 3
    assert result.stdout.startswith("PGQ UNKNOWN - --driver: unknown driver 'odbc'")
    assert result.stdout.count("\n") == 1 and result.stderr == ""


# -- secrets ----------------------------------------------------------------------------------

BROKEN_DSNS = [
    f"postgresql://u:{PASSWORD}@[::1/db",  # libpq echoes the whole URI
    f"postgresql://u:{PASSWORD}%zz@h/db",  # ...or the bad percent-encoded token
    f"postgresql://u:{PASSWORD}@h:notaport/db",
    f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db",  # was 'OverflowError: connect(): port …'
    f"host=h password='{PASSWORD}",  # unterminated quote in key=value
    f"host=h password=two {PASSWORD}",  # an unquoted space: libpq names the word after it
]


@pytest.mark.parametrize("dsn", BROKEN_DSNS)
def test_a_broken_dsn_never_shows_its_password(dsn: str, tmp_path: Path) -> None:
    outputs = []
    for args in (["check"], ["snapshot"], ["snapshot", "--json"], ["serve", "--port", "1"]):
        result = run(tmp_path, "--dsn", dsn, *args)
        assert result.returncode in (2, 3), result
        outputs += [result.stdout, result.stderr]
    tui = run(tmp_path, "--dsn", dsn, on_terminal=True)
    assert tui.returncode == 2
    outputs.append(tui.stderr)
    outputs.append(log_file(tmp_path).read_text() if log_file(tmp_path).exists() else "")
    assert "invalid connection string" in "".join(outputs)
    for output in outputs:
        assert PASSWORD not in output, output


def test_a_broken_dsn_is_unknown_to_check(tmp_path: Path) -> None:
    result = run(tmp_path, "--dsn", BROKEN_DSNS[0], "check")
    assert result.returncode == 3 and result.stdout.startswith("PGQ UNKNOWN - invalid connection")


def test_the_log_is_private(cli_dsn: str, tmp_path: Path) -> None:
    run(tmp_path, "--dsn", cli_dsn, "snapshot")
    path = log_file(tmp_path)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_log_keeps_no_password_even_from_a_bug(tmp_path: Path) -> None:
    code = (
        "import sys, logging\n"
        "from pgq_console import cli\n"
        "cli.configure_logging()\n"
        f"logging.getLogger('x').error('driver said: postgresql://u:{PASSWORD}@h/db failed')\n"
        "logging.getLogger('x').error('entrypoint \\x1b]0;owned\\x07 failed')\n"
    )
    run(tmp_path, code=code)
    logged = log_file(tmp_path).read_text()
    assert "driver said: postgresql://u:***@h/db" in logged and PASSWORD not in logged
    assert "entrypoint \\x1b]0;owned\\x07 failed" in logged and "\x1b" not in logged


# -- bad values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-1"])
def test_a_refresh_that_is_no_interval_is_refused(value: str, tmp_path: Path) -> None:
    result = run(tmp_path, "--dsn", "postgresql://u@127.0.0.1:1/x", "check", "--refresh", value)
    assert result.returncode == 3
    assert result.stdout.startswith("PGQ UNKNOWN - --refresh:"), result.stdout
    dsn = "postgresql://u@127.0.0.1:1/x"
    tui = run(tmp_path, "--dsn", dsn, "--refresh", value, on_terminal=True)
    assert tui.returncode == 2 and tui.stderr.startswith("pgq-console: error: --refresh:")


@pytest.mark.parametrize(
    ("option", "value"), [("--schema", 'bad"schema'), ("--prefix", "x y"), ("--channel", "a;b")]
)
def test_a_bad_installation_name_says_which_setting(
    option: str, value: str, tmp_path: Path
) -> None:
    dsn = "postgresql://u@127.0.0.1:1/x"
    result = run(tmp_path, "--dsn", dsn, "check", option, value)
    assert result.returncode == 3, result
    assert result.stdout.startswith(f"PGQ UNKNOWN - {option} "), result.stdout
    assert "pydantic" not in result.stdout
    snapshot = run(tmp_path, "--dsn", dsn, "snapshot", option, value)
    assert snapshot.returncode == 2 and snapshot.stderr.startswith(f"pgq-console: error: {option}")


def test_a_key_value_dsn_works_with_the_default_driver(cli_dsn: str, tmp_path: Path) -> None:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    key_value = make_conninfo("", **conninfo_to_dict(cli_dsn))
    assert "://" not in key_value
    for driver in ("asyncpg-pool", "asyncpg", "psycopg"):
        result = run(tmp_path, "--dsn", key_value, "--driver", driver, "snapshot", "--json")
        assert result.returncode == 0, (driver, result.stderr)


def test_a_reader_closing_the_pipe_is_no_crash() -> None:
    """`pgq-console … | head`: the reader goes away before the output is written. The command
    ends quietly (exit 0), not with "internal error (BrokenPipeError …)"."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pgq_console", "paths"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert b"internal error" not in done.stderr
