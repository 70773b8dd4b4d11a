"""The command line: subcommands and their shared options."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from pgq_console import __version__
from pgq_console.cli.fleet_parser import add_fleet_parser
from pgq_console.cli.given import Given, RecordGiven

if TYPE_CHECKING:
    from pgq_console.config import CliOptions


EXIT_USAGE = 2
EXIT_UNKNOWN = 3  # Nagios' UNKNOWN, for `check`


class UsageError(Exception):
    """A bad command line; reported like every other error (one line)."""


class _Parser(argparse.ArgumentParser):
    # The main parser's record of every --dsn/--profile (None on subcommands' parsers).
    given: Given | None = None

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.given is None:
            return super().parse_known_args(args, namespace)
        for arg in args or ():
            if arg == "--":
                break
            name, equals, value = arg.partition("=")
            if arg.startswith("--") and equals and value == "--":
                # argparse drops a '--' value and hands the option an empty list, which every
                # option's reader then trips on (an internal error, not a usage line).
                self.error(f"argument {name}: expected one argument, not '--'")
        self.given.clear()
        parsed, rest = super().parse_known_args(args, namespace)
        parsed.given_dsns = list(self.given.dsns)
        parsed.given_profiles = list(self.given.profiles)
        return parsed, rest

    def error(self, message: str) -> NoReturn:
        # The caller prefixes "pgq-console: error: "; name only the subcommand (if any) here,
        # or the line says "pgq-console: error: pgq-console why: ...".
        command = self.prog.removeprefix("pgq-console").strip()
        raise UsageError(f"{command}: {message}" if command else message)


def _add_common(parser: argparse.ArgumentParser, given: Given, *, in_subcommand: bool) -> None:
    """The options every mode takes; a subcommand's copy must not reset the main parser's."""

    def add(*flags: str, **options: object) -> None:
        if in_subcommand:
            options["default"] = argparse.SUPPRESS
        parser.add_argument(*flags, **options)  # type: ignore[arg-type]

    add("--config", metavar="FILE", help="config file (PGQ_CONSOLE_CONFIG; see `paths`)")
    add(
        "--profile",
        metavar="NAME",
        action=RecordGiven,
        given=given.profiles,
        help="a profile of the config file (PGQ_CONSOLE_PROFILE); several: the fleet",
    )
    add(
        "--dsn",
        action=RecordGiven,
        given=given.dsns,
        help="PostgreSQL connection string (URI or key=value); several: the fleet",
    )
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
    parser.given = given = Given()
    parser.add_argument("--version", action="version", version=f"pgq-console {__version__}")
    _add_common(parser, given, in_subcommand=False)
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
    _add_common(snapshot, given, in_subcommand=True)
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
    _add_common(check, given, in_subcommand=True)
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
    _add_common(metrics, given, in_subcommand=True)
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

    from pgq_console import incident

    incident.add_parsers(commands, lambda sub: _add_common(sub, given, in_subcommand=True))

    serve = commands.add_parser(
        "serve", help="serve the console in a browser (needs pgq-console[serve])"
    )
    _add_common(serve, given, in_subcommand=True)
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
    add_fleet_parser(commands, _Parser, given)
    return parser


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
