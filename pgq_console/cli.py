"""`pgq-console`: parse arguments, resolve settings, connect (or start the demo), run the app.

Subcommands share the same options, config file and profiles: `paths` (where things live),
`snapshot` and `check` (one-shot, no TUI, for scripts and monitoring) and `serve` (the app in
a browser). Every failure is one line on stderr: exit 2 for the TUI, 3 (UNKNOWN) for `check`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import logging.handlers
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pgq_console import __version__
from pgq_console.core.errors import ConsoleError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pgq_console.app import PgqConsole
    from pgq_console.config import CliOptions, Settings
    from pgq_console.core.backend import AnyBackend

EXIT_USAGE = 2
EXIT_UNKNOWN = 3  # Nagios' UNKNOWN, for `check`
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3  # console.log.1 .. .3 beside it
log = logging.getLogger("pgq_console")


class UsageError(Exception):
    """A bad command line; reported like every other error (one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _add_common(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    """The options every mode takes; a subcommand's copy must not reset the main parser's."""

    def add(*flags: str, **options: object) -> None:
        if in_subcommand:
            options["default"] = argparse.SUPPRESS
        parser.add_argument(*flags, **options)  # type: ignore[arg-type]

    add("--config", metavar="FILE", help="config file (PGQ_CONSOLE_CONFIG; see `paths`)")
    add("--profile", metavar="NAME", help="a profile of the config file (PGQ_CONSOLE_PROFILE)")
    add("--dsn", help="PostgreSQL connection string (URI or key=value)")
    add(
        "--driver",
        help="asyncpg | asyncpg-pool (default) | psycopg | psycopg-sync (enqueue-only)",
    )
    add("--schema", help="PgQueuer's schema (PGQUEUER_SCHEMA)")
    add("--prefix", help="PgQueuer's object-name prefix (PGQUEUER_PREFIX)")
    add("--channel", help="PgQueuer's NOTIFY channel (PGQUEUER_CHANNEL)")
    add("--refresh", type=float, metavar="SECONDS", help="timer refresh (default 2)")
    add(
        "--theme",
        help="pgq-dark (default), pgq-light, pgq-high-contrast, pgq-monochrome, or a user theme",
    )
    add("--pooler", help="auto (default, probes) | none | transaction | session")
    add(
        "--listen-dsn",
        metavar="DSN",
        help="a direct connection for LISTEN behind a pooler (PGQ_CONSOLE_LISTEN_DSN)",
    )
    add(
        "--replica-dsn",
        metavar="DSN",
        help="a hot standby for heavy reads (PGQ_CONSOLE_REPLICA_DSN)",
    )
    add(
        "--read-only",
        action="store_true",
        help="hide write actions; the console's connections are read-only on the server",
    )
    add(
        "--shutdown-drain",
        type=float,
        metavar="SECONDS",
        help="on SIGHUP/SIGTERM, how long running consumer jobs get to finish before they go "
        "back to the queue (default 5)",
    )
    add(
        "--consumer-reconnects",
        type=int,
        metavar="N",
        help="reconnect attempts in a row before an in-process consumer whose connection "
        "failed gives up (default: unlimited)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pgq-console",
        description="Terminal operations console for PgQueuer.",
        epilog="The DSN comes from --dsn, a --profile, PGQ_CONSOLE_DSN, PGDSN, PGQUEUER_DSN, or "
        "the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and .pgpass. "
        "Settings: command line > PGQ_CONSOLE_* variables > config file > defaults.",
    )
    parser.add_argument("--version", action="version", version=f"pgq-console {__version__}")
    _add_common(parser, in_subcommand=False)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start an embedded PostgreSQL with live demo traffic (needs pgq-console[demo])",
    )
    # A console started by `serve` for a browser session: no local-file payloads.
    parser.add_argument("--served", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--demo-rate", type=float, default=300.0, metavar="JOBS_PER_S", help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    commands.add_parser(
        "paths", help="print where the config file, themes, log and audit file live"
    )

    snapshot = commands.add_parser("snapshot", help="print the overview numbers once and exit")
    _add_common(snapshot, in_subcommand=True)
    snapshot.add_argument("--json", action="store_true", help="JSON for scripts")
    snapshot.add_argument(
        "--format",
        choices=["table", "json", "openmetrics", "prometheus"],
        help="table (default), json (= --json), openmetrics or prometheus (the text formats, "
        "e.g. for node_exporter's textfile collector)",
    )
    snapshot.add_argument(
        "--stale-after",
        default="5m",
        metavar="DURATION",
        help="a picked job is stale when its heartbeat is older (default 5m)",
    )

    check = commands.add_parser(
        "check",
        help="a Nagios-style check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
        description="Thresholds take CRIT or WARN,CRIT, each a number (alert above it) or a "
        "Nagios range (10, 10:, ~:10, 10:20, @10:20). Exit 0 OK, 1 WARNING, 2 CRITICAL "
        "(also: the database cannot be reached), 3 UNKNOWN (bad arguments or config).",
    )
    _add_common(check, in_subcommand=True)
    check.add_argument(
        "--max-age",
        action="append",
        default=[],
        metavar="ENTRYPOINT=DURATION",
        help="oldest ready job of ENTRYPOINT (* for every one), e.g. send_email=2m,5m; repeatable",
    )
    check.add_argument("--max-failed", metavar="N", help="held failed jobs, all entrypoints")
    check.add_argument("--max-stale", metavar="N", help="picked jobs with a stale heartbeat")
    check.add_argument(
        "--stale-after",
        default="5m",
        metavar="DURATION",
        help="a picked job is stale when its heartbeat is older (default 5m)",
    )

    metrics = commands.add_parser(
        "metrics", help="serve Prometheus/OpenMetrics metrics over HTTP (/metrics)"
    )
    _add_common(metrics, in_subcommand=True)
    metrics.add_argument(
        "--listen", default="127.0.0.1:9464", metavar="HOST:PORT", help="default 127.0.0.1:9464"
    )
    metrics.add_argument(
        "--interval",
        default="15s",
        metavar="DURATION",
        help="read the database at most this often, whatever the scrape rate (default 15s)",
    )
    metrics.add_argument(
        "--stale-after",
        default="5m",
        metavar="DURATION",
        help="a picked job is stale when its heartbeat is older (default 5m)",
    )

    serve = commands.add_parser(
        "serve", help="serve the console in a browser (needs pgq-console[serve])"
    )
    _add_common(serve, in_subcommand=True)
    serve.add_argument("--host", default="localhost", help="bind address (default localhost)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--public-url", help="the URL browsers reach it at (behind a proxy)")
    serve.add_argument(
        "--max-sessions",
        type=int,
        default=4,
        metavar="N",
        help="browser sessions at once; each is a console with its own connections (default 4)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without PGQ_CONSOLE_SERVE_USER/_PASSWORD (token only)",
    )
    from pgq_console.fleet_cli import add_fleet_parser

    add_fleet_parser(commands, _Parser)
    return parser


def log_path() -> Path:
    import platformdirs

    return platformdirs.user_log_path("pgq-console") / "console.log"


# Passwords this process knows of: no log line may carry one (see ScrubbingFormatter).
KNOWN_SECRETS: set[str] = set()


def remember_secrets(target: object) -> None:
    from pgq_console.core.target import secrets_of

    dsn = str(getattr(target, "dsn", "") or "")
    KNOWN_SECRETS.update(secrets_of(dsn))
    password = getattr(target, "password", None)
    if password:
        KNOWN_SECRETS.add(str(password))


class ScrubbingFormatter(logging.Formatter):
    """Every record, traceback included, without a password (known or by its place) and
    without terminal controls (the log is read with `tail` and `less`)."""

    def format(self, record: logging.LogRecord) -> str:
        from pgq_console.core.errors import scrub
        from pgq_console.core.text import printable

        text = scrub(super().format(record), tuple(KNOWN_SECRETS))
        return "\n".join(printable(line) for line in text.split("\n"))


def configure_logging() -> None:
    """Logs go to a file: the terminal belongs to the TUI, and pgqueuer logs at CRITICAL."""
    path = log_path()
    root = logging.getLogger()
    for existing_handler in list(root.handlers):
        root.removeHandler(existing_handler)
    handler: logging.Handler
    try:
        # 0700/0600 like the audit file: the log names hosts, users, entrypoints and errors.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        # Bounded: a long-running console (or a demo left on) never fills the disk.
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # pgqueuer's own logger may carry a stream handler of its own.
    for name in ("pgqueuer",):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True


def cli_options(args: argparse.Namespace) -> CliOptions:
    from pgq_console.config import CliOptions

    return CliOptions(
        config=getattr(args, "config", None),
        profile=getattr(args, "profile", None),
        dsn=getattr(args, "dsn", None),
        driver=getattr(args, "driver", None),
        schema=getattr(args, "schema", None),
        prefix=getattr(args, "prefix", None),
        channel=getattr(args, "channel", None),
        refresh=getattr(args, "refresh", None),
        theme=getattr(args, "theme", None),
        read_only=bool(getattr(args, "read_only", False)),
        pooler=getattr(args, "pooler", None),
        listen_dsn=getattr(args, "listen_dsn", None),
        replica_dsn=getattr(args, "replica_dsn", None),
        shutdown_drain=getattr(args, "shutdown_drain", None),
        consumer_reconnect_attempts=getattr(args, "consumer_reconnects", None),
    )


def load(args: argparse.Namespace) -> Settings:
    from pgq_console.config import load_settings

    return load_settings(cli_options(args))


async def run(args: argparse.Namespace) -> int:
    """The TUI; returns the exit code (128 + signum after SIGHUP/SIGTERM)."""
    from pgq_console.config import open_target
    from pgq_console.core.backend import check_schema, open_backend
    from pgq_console.core.target import Installation, parse_driver
    from pgq_console.termination import TerminationSignals, tolerate_hangup

    settings = load(args)
    target = settings.target
    remember_secrets(target)
    parse_driver(target.driver)  # an unknown driver: one line before anything else
    async with contextlib.AsyncExitStack() as stack:
        if args.demo:
            require_terminal()  # before starting a server for nothing
            dsn, label = await _start_demo(stack, args.demo_rate)
            installation = Installation.select(
                schema=target.schema, prefix=target.prefix, channel=target.channel
            )
            backend = await open_backend(
                parse_driver(target.driver),
                dsn,
                installation,
                label,
                (),
                read_only=target.read_only,
            )
            stack.push_async_callback(backend.close)
            await check_schema(backend)
            await _start_traffic(stack, dsn, args.demo_rate)
        else:
            backend = await open_target(target)
            stack.push_async_callback(backend.close)
            # After connecting: a connection problem is the more useful message.
            require_terminal()
        app = make_app(settings, backend)
        app.served = bool(getattr(args, "served", False))
        # Textual prints a crash's traceback with local variables (a DSN among them) to the
        # terminal: it goes to the log instead, scrubbed, and the terminal gets one line.
        from rich.console import Console

        errors = io.StringIO()
        app.error_console = Console(
            file=errors, width=160, color_system=None, markup=False, highlight=False
        )
        with TerminationSignals(app), tolerate_hangup():
            await app.run_async()
        _say_what_became_of_running_jobs(app)
        if app.exit_signal is not None:
            return 128 + app.exit_signal
        return _app_exit(app.return_code or 0, errors.getvalue(), tuple(KNOWN_SECRETS))


EXIT_CRASH = 1


def _app_exit(code: int, printed: str, secrets: tuple[str, ...]) -> int:
    """0, or one line on stderr: the app's own message (exit 2) or, for a crash, where the
    traceback is (exit 1)."""
    from pgq_console.core.errors import scrub

    printed = scrub(printed, secrets).strip()
    if code == 0:
        if printed:  # the app's last word (`exit(message=...)`: what a quit stopped)
            log.info("the console said on exit: %s", printed)
            for line in printed.splitlines():
                print(f"pgq-console: {line}", file=sys.stderr)
        return 0
    if code == EXIT_CRASH:
        log.error("the console stopped on an unexpected error:\n%s", printed)
        lines = [line for line in printed.splitlines() if line.strip()]
        cause = " ".join(lines[-1].split()) if lines else "unknown error"
        print(
            f"pgq-console: error: the console crashed ({cause[:200]}); "
            f"the traceback is in {log_path()}",
            file=sys.stderr,
        )
        return EXIT_CRASH
    message = " ".join(printed.split()) or f"exit status {code}"
    print(f"pgq-console: error: {message}", file=sys.stderr)
    return code


def _say_what_became_of_running_jobs(app: PgqConsole) -> None:
    report = app.shutdown_report
    if report is None:
        return
    cause = signal.Signals(app.exit_signal).name if app.exit_signal is not None else "exit"
    with contextlib.suppress(OSError, ValueError):  # a hung-up terminal
        print(f"pgq-console: {cause}: consumers: {report.describe()}", file=sys.stderr)


def make_app(
    settings: Settings, backend: AnyBackend | Callable[[], Awaitable[AnyBackend]]
) -> PgqConsole:
    """The console on `backend`, knowing its settings (profiles to switch to, badge, warnings)."""
    from pgq_console.app import PgqConsole

    target = settings.target
    app = PgqConsole(
        backend,
        refresh_interval=settings.refresh,
        theme=settings.theme,
        read_only=target.read_only,
        shutdown_drain_s=settings.shutdown_drain,
    )
    app.consumers.max_reconnect_attempts = settings.consumer_reconnect_attempts
    app.settings = settings
    app.profile = target.profile
    app.environment = target.environment
    app.startup_warnings = list(settings.warnings)
    return app


async def _start_demo(stack: contextlib.AsyncExitStack, rate: float) -> tuple[str, str]:
    from pgq_console.core.demo import install_schema
    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        dsn = await asyncio.to_thread(server.start)
    except RuntimeError as exc:
        raise ConsoleError(str(exc)) from None
    stack.callback(server.stop)
    await install_schema(dsn)
    return dsn, "embedded PostgreSQL 16 (demo)"


async def _start_traffic(stack: contextlib.AsyncExitStack, dsn: str, rate: float) -> None:
    from pgq_console.core.demo import DemoTraffic

    traffic = DemoTraffic(dsn, jobs_per_second=rate)
    await traffic.start()
    stack.push_async_callback(traffic.stop)


def print_paths() -> None:
    from pgq_console.config import describe_paths

    for what, path in describe_paths():
        note = "" if path.exists() else "  (not there yet)"
        print(f"{what + ':':17} {path}{note}")


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    is_check = "check" in arguments
    failure_code = EXIT_UNKNOWN if is_check else EXIT_USAGE
    try:
        args = build_parser().parse_args(arguments)
    except UsageError as exc:
        from pgq_console.core.text import printable

        # argparse quotes the arguments it refuses as given: escape them like any output.
        message = printable(" ".join(str(exc).removeprefix("pgq-console: ").split()))
        if is_check:  # monitoring reads stdout
            print(f"PGQ UNKNOWN - {message}")
        else:
            print(f"pgq-console: error: {message}", file=sys.stderr)
        raise SystemExit(failure_code) from None
    configure_logging()
    _exit_cleanly_on_hangup()
    try:
        raise SystemExit(_dispatch(args))
    except ConsoleError as exc:
        if args.command == "check":
            from pgq_console.scripting import unknown_line

            print(unknown_line(str(exc)))
            raise SystemExit(EXIT_UNKNOWN) from None
        from pgq_console.core.text import printable

        print(f"pgq-console: error: {printable(str(exc))}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # a bug: one line here, the traceback in the log
        log.exception("unexpected error")
        from pgq_console.core.errors import scrub_dsn_passwords

        cause = scrub_dsn_passwords(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        if args.command == "check":
            from pgq_console.scripting import unknown_line

            print(unknown_line(f"internal error ({cause[:200]}); details in {log_path()}"))
            raise SystemExit(EXIT_UNKNOWN) from None
        print(
            f"pgq-console: error: internal error ({cause[:200]}); details in {log_path()}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CRASH) from None
    finally:
        from pgq_console.termination import quiet_if_hung_up

        quiet_if_hung_up()


def require_terminal() -> None:
    if not _has_terminal():
        raise ConsoleError(
            "the console needs a terminal (stdin is closed or not a terminal); "
            "for scripts use `pgq-console snapshot` or `check`"
        )


def _has_terminal() -> bool:
    """Textual reads keys from stdin; a served session's console reads them from its pipe."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return True
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # closed
        return False


def _exit_cleanly_on_hangup() -> None:
    """A closed terminal (an SSH session that drops) or a `kill` ends the console cleanly:
    demo traffic and the embedded server are stopped, nothing is left behind. By default both
    signals end Python at once, skipping every cleanup. While the app runs,
    `termination.TerminationSignals` takes over: consumers' running jobs finish or go back to
    the queue first."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for hangup in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(hangup, leave)


def _dispatch(args: argparse.Namespace) -> int:
    from pgq_console import scripting

    if args.command == "paths":
        print_paths()
        return 0
    if args.command is None:
        return asyncio.run(run(args))
    if args.command == "fleet":
        from pgq_console.fleet_cli import run_fleet

        return run_fleet(args)
    settings = load(args)
    remember_secrets(settings.target)
    for warning in settings.warnings:
        from pgq_console.core.text import printable

        print(f"pgq-console: warning: {printable(warning)}", file=sys.stderr)
    if args.command == "snapshot" and args.format in ("openmetrics", "prometheus"):
        from pgq_console import metrics

        openmetrics = args.format == "openmetrics"
        return metrics.snapshot(settings, openmetrics=openmetrics, stale_after=args.stale_after)
    if args.command == "snapshot":
        as_json = args.json or args.format == "json"
        return scripting.snapshot(settings, as_json=as_json, stale_after=args.stale_after)
    if args.command == "metrics":
        from pgq_console import metrics

        return metrics.metrics(
            settings, listen=args.listen, interval=args.interval, stale_after=args.stale_after
        )
    if args.command == "check":
        return scripting.check(
            settings,
            max_age=args.max_age,
            max_failed=args.max_failed,
            max_stale=args.max_stale,
            stale_after=args.stale_after,
        )
    if args.command == "serve":
        return scripting.serve(settings, args)
    raise ConsoleError(f"unknown command {args.command!r}")
