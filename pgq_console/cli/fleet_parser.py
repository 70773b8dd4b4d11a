"""`fleet`'s command line: its parser and defaults, without the fleet's code (cli.build_parser
builds every subcommand's parser on each launch; `fleet_cli` and `core.fleet` import pgqueuer
and the workers' and actions' queries, which the console's own start does not need)."""

from __future__ import annotations

import argparse
from typing import Any

from pgq_console.cli.given import Given, RecordGiven

DEFAULT_MAX_AGE = "5m,15m"


def add_fleet_parser(
    commands: Any, parser_class: type[argparse.ArgumentParser], given: Given
) -> None:
    """`fleet`, `fleet snapshot`, `fleet check` (called by cli.build_parser); every --profile
    and --dsn, before or after `fleet` or its subcommand, goes to `given`."""
    suppress = argparse.SUPPRESS

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--config", metavar="FILE", default=suppress, help="config file")
        parser.add_argument(
            "--profile",
            action=RecordGiven,
            given=given.profiles,
            metavar="NAME",
            default=suppress,
            help="an installation: a profile of the config file (repeatable; default: every "
            "profile)",
        )
        parser.add_argument(
            "--dsn",
            action=RecordGiven,
            given=given.dsns,
            default=suppress,
            help="an installation: a connection string (repeatable)",
        )
        parser.add_argument("--driver", default=suppress, help="as for the console")
        parser.add_argument("--schema", default=suppress, help="PgQueuer's schema")
        parser.add_argument("--prefix", default=suppress, help="PgQueuer's object-name prefix")
        parser.add_argument("--channel", default=suppress, help="PgQueuer's NOTIFY channel")
        parser.add_argument(
            "--max-age",
            default=suppress,
            metavar="WARN,CRIT",
            help="oldest ready job per installation: over WARN it is in trouble (sorted up "
            f"and WARNING), over CRIT CRITICAL (default {DEFAULT_MAX_AGE})",
        )
        parser.add_argument(
            "--stale-after",
            default=suppress,
            metavar="DURATION",
            help="a worker is dead, a picked job stale, without a heartbeat this long "
            "(default 90s)",
        )

    fleet = commands.add_parser(
        "fleet",
        help="many installations at once: a screen, `fleet snapshot`, `fleet check`",
        description="Installations: every profile of the config file, or the --profile or "
        "--dsn options given (repeatable). Without a subcommand: the fleet screen.",
    )
    common(fleet)
    fleet.add_argument("--refresh", type=float, default=suppress, metavar="SECONDS")
    fleet.add_argument("--theme", default=suppress)
    fleet.add_argument("--read-only", action="store_true", default=suppress)
    sub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND", parser_class=parser_class)
    snapshot = sub.add_parser("snapshot", help="every installation's numbers once, then exit")
    common(snapshot)
    snapshot.add_argument("--json", action="store_true", help="JSON for scripts")
    check = sub.add_parser(
        "check",
        help="one Nagios line for the fleet: the worst installation's state wins",
        description="Exit 0 OK, 1 WARNING, 2 CRITICAL (also: an installation cannot be "
        "reached), 3 UNKNOWN (bad arguments or config).",
    )
    common(check)
    check.add_argument("--max-failed", metavar="N", help="held failed jobs per installation")
    check.add_argument("--max-stale", metavar="N", help="stale picked jobs per installation")
