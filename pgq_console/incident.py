"""The on-call commands: `why` ("why isn't this job running?") and `bundle` (the incident
bundle). The parsers and the dispatch live here; cli.py only wires them in."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line, printable

if TYPE_CHECKING:
    from pgq_console.config import Settings
    from pgq_console.core.bundle import Bundle
    from pgq_console.core.why import WhyResult

COMMANDS = ("why", "bundle")


def add_parsers(
    commands: Any,  # argparse's sub-parsers action (its type is private)
    add_common: Callable[[argparse.ArgumentParser], None],
) -> None:
    why = commands.add_parser(
        "why",
        help="why isn't this job running? every reason that applies, then the facts used",
        description="Prints one reason per line, then the facts they were drawn from. "
        "Exit 0 when the job (or entrypoint) was examined; non-zero, with one line on stderr, "
        "for an unknown job or a connection error.",
    )
    add_common(why)
    why.add_argument("job_id", nargs="?", type=int, metavar="JOB_ID", help="the job's id")
    why.add_argument("--entrypoint", metavar="NAME", help="explain an entrypoint's queue instead")
    why.add_argument("--json", action="store_true", help="JSON for scripts")
    why.add_argument(
        "--stale-after",
        default="90s",
        metavar="DURATION",
        help="a picked job's worker is presumed dead when its heartbeat is older (default 90s)",
    )
    why.add_argument(
        "--window",
        default="5m",
        metavar="DURATION",
        help="a worker that picked or finished one of the entrypoint's jobs this recently "
        "serves it (default 5m)",
    )

    bundle = commands.add_parser(
        "bundle",
        help="write an incident bundle (Markdown + JSON) to the state directory, print its path",
    )
    add_common(bundle)
    bundle.add_argument(
        "--window",
        default="1h",
        metavar="DURATION",
        help="the time window the bundle covers (default 1h)",
    )
    bundle.add_argument(
        "--include-payloads",
        action="store_true",
        help="include job payloads (redacted by default)",
    )
    bundle.add_argument(
        "--stale-after",
        default="90s",
        metavar="DURATION",
        help="a picked job is stale when its heartbeat is older (default 90s)",
    )
    bundle.add_argument("--output-dir", metavar="DIR", help=argparse.SUPPRESS)


# PgQueuer's job ids are bigint: a larger number names no job (PostgreSQL refuses to compare).
MAX_JOB_ID = 2**63 - 1


def positive_duration(command: str, option: str, text: str) -> timedelta:
    """A duration option that must be longer than zero (a zero window covers nothing, a zero
    threshold calls every worker dead): one line and exit 2 otherwise, before connecting."""
    from pgq_console.scripting import parse_duration

    duration = parse_duration(text)
    if duration <= timedelta(0):
        raise ConsoleError(f"{command}: {option} must be longer than zero, not {text!r}")
    return duration


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "why":
        return why(settings, args)
    return bundle(settings, args)


# -- why ----------------------------------------------------------------------------------------


def why_lines(result: WhyResult) -> list[str]:
    """One reason per line, then the facts: every value escaped (it came from the database)."""
    from pgq_console.core.why import fact_text

    lines = [printable(reason.text) for reason in result.reasons]
    lines.append("")
    lines.append(f"facts ({printable(result.subject)}):")
    width = max(len(name) for name, _ in result.facts)
    for name, value in result.facts:
        lines.append(f"  {name + ':':{width + 1}} {printable(fact_text(value))}")
    return lines


def why(settings: Settings, args: argparse.Namespace) -> int:
    from pgq_console.scripting import json_text

    if (args.job_id is None) == (args.entrypoint is None):
        raise ConsoleError("why: give a JOB_ID or --entrypoint NAME (one of them)")
    if args.job_id is not None and not -MAX_JOB_ID - 1 <= args.job_id <= MAX_JOB_ID:
        # One line before connecting, not the driver's complaint about query argument $1.
        raise ConsoleError(f"why: no job has id {args.job_id} (job ids are 64-bit)")
    stale_after = positive_duration("why", "--stale-after", args.stale_after)
    window = positive_duration("why", "--window", args.window)
    result = asyncio.run(_why(settings, args.job_id, args.entrypoint, stale_after, window))
    if args.json:
        print(json_text(result.as_document()))
    else:
        print("\n".join(why_lines(result)))
    return 0


async def _why(
    settings: Settings,
    job_id: int | None,
    entrypoint: str | None,
    stale_after: timedelta,
    window: timedelta,
) -> WhyResult:
    from pgq_console.config import open_target
    from pgq_console.core.backend import Backend
    from pgq_console.core.why import why_entrypoint, why_job
    from pgq_console.scripting import _script_target

    backend = await open_target(_script_target(settings.target))
    try:
        assert isinstance(backend, Backend)
        try:
            if job_id is not None:
                return await why_job(
                    backend, job_id, stale_after=stale_after, activity_window=window
                )
            assert entrypoint is not None
            return await why_entrypoint(
                backend, entrypoint, stale_after=stale_after, activity_window=window
            )
        except ConsoleError:
            raise
        except Exception as exc:
            raise ConsoleError(f"reading {backend.label} failed: {one_line(exc)}") from None
    finally:
        await backend.close()


# -- bundle -------------------------------------------------------------------------------------


def known_secrets(settings: Settings) -> tuple[str, ...]:
    """Every password the settings name (DSNs, the profile's password, PGPASSWORD)."""
    from pgq_console.core.target import secrets_of

    target = settings.target
    found: list[str] = []
    for dsn in (target.dsn, target.listen_dsn, target.replica_dsn):
        if dsn:
            found += secrets_of(str(dsn))
    if target.password:
        found.append(str(target.password))
    if target.password_env and os.environ.get(target.password_env):
        found.append(os.environ[target.password_env])
    return tuple(dict.fromkeys(found))


def bundle(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from pgq_console.core import bundle as incident_bundle

    window = positive_duration("bundle", "--window", args.window)
    secrets = known_secrets(settings)
    stale_after = positive_duration("bundle", "--stale-after", args.stale_after)
    made = asyncio.run(_bundle(settings, window, stale_after, args.include_payloads, secrets))
    directory = Path(args.output_dir) if args.output_dir else None
    written = incident_bundle.write(made, directory, secrets=secrets)
    print(written.markdown)
    return 0


async def _bundle(
    settings: Settings,
    window: timedelta,
    stale_after: timedelta,
    include_payloads: bool,
    secrets: tuple[str, ...],
) -> Bundle:
    from pgq_console.config import open_target
    from pgq_console.core.backend import Backend
    from pgq_console.core.bundle import collect
    from pgq_console.scripting import _script_target

    backend = await open_target(_script_target(settings.target))
    try:
        assert isinstance(backend, Backend)
        try:
            return await collect(
                backend,
                window=window,
                stale_after=stale_after,
                include_payloads=include_payloads,
                secrets=secrets,
            )
        except ConsoleError:
            raise
        except Exception as exc:
            raise ConsoleError(f"reading {backend.label} failed: {one_line(exc)}") from None
    finally:
        await backend.close()
