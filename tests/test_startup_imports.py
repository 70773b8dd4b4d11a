"""What the console imports before its first paint (the budget: first numbers <= 1 s after launch).

The screens other than the overview, the in-process consumers (pgqueuer's QueueManager wrapped,
pydantic forms) and the jobs/failures queries are imported when first used, after the overview
is on screen. A module-level import added back anywhere on the app's path would cost the
startup again without failing anything else: this test says which one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Imported on first use only: none of them is needed to show the overview's first numbers.
LAZY = (
    "pgq_console.screens.jobs",
    "pgq_console.screens.failures",
    "pgq_console.screens.workers",
    "pgq_console.screens.schedules",
    "pgq_console.screens.health",
    "pgq_console.screens.consumers",
    "pgq_console.screens.charts",
    "pgq_console.screens.enqueue_only",
    "pgq_console.screens.job_actions",
    "pgq_console.core.consumers.supervisor",
    "pgq_console.core.consumers.runtime",
    "pgq_console.core.consumers.spec",
    "pgq_console.core.jobs",
    "pgq_console.core.enqueue",
    "pgq_console.core.charts",
    "pgq_console.core.health",
    "pgq_console.core.schedules",
)


def test_the_app_and_its_context_import_no_later_screen_or_consumer_module() -> None:
    code = (
        "import sys\n"
        "import pgq_console.app\n"
        "from pgq_console.context import ConsoleContext\n"
        "from pgq_console.core.consumers.capture import LoggingState\n"
        "context = ConsoleContext()\n"
        "LoggingState.capture()\n"
        "assert not context.has_consumers and context.quit_reason() is None\n"
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported before the first paint: {done.stdout}"


def test_the_consumers_package_still_offers_its_names() -> None:
    """The package's names resolve on first use (`core/consumers/__init__.py`)."""
    import pgq_console.core.consumers as consumers
    from pgq_console.context import ConsoleContext

    for name in consumers.__all__:
        assert getattr(consumers, name) is not None
    context = ConsoleContext()
    context.consumer_reconnect_attempts = 3
    assert context.consumers.max_reconnect_attempts == 3
    assert context.has_consumers and context.consumers is context.consumers


def _run_isolated(code: str, tmp_path: Path) -> str:
    """`code` in a fresh interpreter, with its own (empty) config and state directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PGQUEUER_"))}
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        env[name] = str(tmp_path / name.lower())
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# Not one of them is needed for the console's first numbers (asyncpg, the default driver).
NOT_BEFORE_THE_FIRST_PAINT = (
    "psycopg",  # the psycopg drivers only; the DSN is parsed by core.conninfo
    "pgq_console.fleet_cli",  # `fleet`'s parser lives in cli.fleet_parser
    "pgq_console.fleet_console",  # a console on one installation hides `0` without it
    "pgq_console.core.fleet",
    "pgq_console.scripting",  # snapshot, check, serve
    "pgq_console.core.nagios",
)


def test_the_launch_imports_neither_psycopg_nor_the_fleet_nor_scripting(tmp_path: Path) -> None:
    """What `pgq-console --dsn URI` does before its first paint, up to the footer asking which
    keys to show (`check_action`), imports none of NOT_BEFORE_THE_FIRST_PAINT (on the code
    before: all of them; psycopg alone was ~0.1-0.2 s of CPU)."""
    code = (
        "import sys\n"
        "from pgq_console.cli.parser import build_parser\n"
        "from pgq_console.cli.run import load, make_app\n"
        "from pgq_console.cli.logs import remember_secrets\n"
        "from pgq_console.core.target import Installation\n"
        "args = build_parser().parse_args(['--dsn', 'postgresql://u:pw@db.example:6432/app'])\n"
        "settings = load(args)\n"
        "remember_secrets(settings.target)\n"
        "settings.target.connect_dsn()\n"
        "Installation.select()\n"
        "async def backend(): pass\n"
        "app = make_app(settings, backend)\n"
        "assert app.check_action('fleet', ()) is False\n"
        "assert app.check_action('enqueue', ()) is True\n"
        f"print(','.join(m for m in {NOT_BEFORE_THE_FIRST_PAINT!r} if m in sys.modules))\n"
    )
    assert _run_isolated(code, tmp_path) == ""


HEAVY = ("textual", "pgqueuer", "psycopg", "asyncpg", "pgq_console.app")


@pytest.mark.parametrize(
    ("argv", "code", "not_imported"),
    [
        # A DSN that does not parse: one line before the app's modules are imported.
        (["--dsn", "postgresql://u@h:notaport/db"], 2, ("textual", "psycopg", "pgq_console.app")),
        (["--driver", "nope", "--dsn", "postgresql://h/db"], 2, HEAVY),
        (["check", "--max-failed", "zz", "--dsn", "postgresql://h/db"], 3, HEAVY),
        (["snapshot", "--stale-after", "zz", "--dsn", "postgresql://h/db"], 2, HEAVY),
        (["check", "--dsn", "postgresql://u@127.0.0.1:1/db"], 2, ("textual", "psycopg")),
        (["snapshot", "--dsn", "postgresql://u@127.0.0.1:1/db"], 2, ("textual", "psycopg")),
    ],
)
def test_the_command_lines_failing_paths_import_only_what_they_need(
    argv: list[str], code: int, not_imported: tuple[str, ...], tmp_path: Path
) -> None:
    """Each error is still one line with its exit code; on the code before, every one of them
    imported pgqueuer (the `fleet` parser), psycopg (the DSN) and the bad DSN Textual."""
    script = (
        "import sys\n"
        "from pgq_console.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        f"print(','.join(m for m in {not_imported!r} if m in sys.modules))\n"
    )
    exit_line, imported = [*_run_isolated(script, tmp_path).splitlines(), ""][-2:]
    assert exit_line == f"exit {code}"
    assert imported == ""
