"""The entry point: parse, configure logging, dispatch to a subcommand."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from pgq_console.cli.logs import configure_logging, log, log_path, remember_secrets
from pgq_console.cli.parser import EXIT_UNKNOWN, EXIT_USAGE, UsageError, build_parser
from pgq_console.cli.run import EXIT_CRASH, load, run
from pgq_console.cli.terminal import _exit_cleanly_on_hangup
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line


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
        message = printable(one_line(exc))
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
    except BrokenPipeError:
        # The reader closed the pipe (`… | head`): nothing more to say, and Python's own flush
        # at exit must not fail on it again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None
    except Exception as exc:  # a bug: one line here, the traceback in the log
        log.exception("unexpected error")
        from pgq_console.core.errors import scrub_dsn_passwords

        cause = scrub_dsn_passwords(f"{type(exc).__name__}: {one_line(exc)}")
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


# Where a one-installation subcommand given several points to.
FLEET_FORMS = {
    "snapshot": "`pgq-console fleet snapshot`",
    "check": "`pgq-console fleet check`",
}


def installations_given(args: argparse.Namespace) -> int:
    """How many installations the command line names: distinct --dsn, or distinct --profile
    (each before or after the subcommand). 0 or 1: the usual single-installation settings."""
    dsns = dict.fromkeys(getattr(args, "given_dsns", None) or [])
    profiles = dict.fromkeys(getattr(args, "given_profiles", None) or [])
    return max(len(dsns), len(profiles))


def starts_as_fleet(args: argparse.Namespace) -> bool:
    """The console given several installations starts on the fleet screen (`0` comes back to
    it); a subcommand that reads one installation refuses them (one line, exit 2; `check`:
    UNKNOWN): none is silently dropped."""
    several = installations_given(args)
    if several < 2 or args.command in ("paths", "fleet"):
        return False
    if args.command is None:
        single_only = [
            option
            for option, value in (
                ("--demo", getattr(args, "demo", False)),
                ("--listen-dsn", getattr(args, "listen_dsn", None)),
                ("--replica-dsn", getattr(args, "replica_dsn", None)),
            )
            if value
        ]
        if single_only:
            raise ConsoleError(
                f"{single_only[0]} goes with one installation, and {several} were given: "
                "give one --dsn or --profile"
            )
        return True
    where = FLEET_FORMS.get(args.command, "`pgq-console fleet` (Enter opens one)")
    raise ConsoleError(
        f"{args.command} reads one installation, and {several} were given (--dsn/--profile "
        f"repeated): give one, or use {where} for several"
    )


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "paths":
        print_paths()
        return 0
    if args.command == "fleet" or starts_as_fleet(args):
        from pgq_console.fleet_cli import run_fleet

        return run_fleet(args)
    if args.command is None:
        return asyncio.run(run(args))
    settings = load(args)
    remember_secrets(settings.target)
    for warning in settings.warnings:
        from pgq_console.core.text import printable

        print(f"pgq-console: warning: {printable(warning)}", file=sys.stderr)
    if args.command == "snapshot" and args.format in ("openmetrics", "prometheus"):
        from pgq_console import metrics

        openmetrics = args.format == "openmetrics"
        return metrics.snapshot(settings, openmetrics=openmetrics, stale_after=args.stale_after)
    # Each subcommand imports its own module: `scripting` (the Nagios ranges, the overview's
    # reads) is not the console's, nor are `metrics` and `incident`.
    if args.command == "snapshot":
        from pgq_console import scripting

        as_json = args.json or args.format == "json"
        return scripting.snapshot(settings, as_json=as_json, stale_after=args.stale_after)
    if args.command == "metrics":
        from pgq_console import metrics

        return metrics.metrics(
            settings, listen=args.listen, interval=args.interval, stale_after=args.stale_after
        )
    if args.command == "check":
        from pgq_console import scripting

        return scripting.check(
            settings,
            max_age=args.max_age,
            max_failed=args.max_failed,
            max_stale=args.max_stale,
            stale_after=args.stale_after,
        )
    if args.command == "serve":
        from pgq_console import scripting

        return scripting.serve(settings, args)
    from pgq_console import incident

    if args.command in incident.COMMANDS:
        return incident.run(args, settings)
    raise ConsoleError(f"unknown command {args.command!r}")
