"""`pgq-console fleet`: many installations at once (the screen, `fleet snapshot`, `fleet check`).

The installations are every profile of the config file, or the `--profile`s named, or the
`--dsn`s given (each repeatable). `fleet check` prints one line and exits like `check` (Nagios):
the worst installation's state wins, and an installation that cannot be reached is CRITICAL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.cli.fleet_parser import DEFAULT_MAX_AGE
from pgq_console.core.errors import ConsoleError
from pgq_console.core.fleet import Fleet, FleetRow, LinkState, Member, by_trouble
from pgq_console.core.nagios import NagiosState, Threshold
from pgq_console.core.target import display_dsn
from pgq_console.core.text import one_line, printable

if TYPE_CHECKING:
    from pgq_console.app import PgqConsole
    from pgq_console.config import Settings, Target
    from pgq_console.core.backend import Backend

# -- the installations ----------------------------------------------------------------------


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    assert isinstance(value, list)
    return [str(item) for item in value]


def fleet_settings(args: argparse.Namespace) -> tuple[Settings, list[Target]]:
    """The settings (theme, refresh...) and one target per installation, in the given order."""
    from pgq_console.cli.parser import cli_options
    from pgq_console.config import ConfigError, load_settings

    # Every one given (cli.given.Given), wherever it stood; else the namespace's.
    profiles = getattr(args, "given_profiles", None) or _as_list(getattr(args, "profile", None))
    dsns = getattr(args, "given_dsns", None) or _as_list(getattr(args, "dsn", None))
    options = replace(cli_options(args), profile=None, dsn=dsns[0] if dsns else None)
    settings = load_settings(options)
    if dsns and profiles:
        raise ConfigError("fleet: give installations as --profile or as --dsn, not both")
    if dsns:
        return settings, [
            replace(settings.target, dsn=dsn, profile=None, environment=None) for dsn in dsns
        ]
    names = profiles or sorted(settings.profiles)
    if not names:
        raise ConfigError(
            f"fleet: {settings.config_path} defines no profiles: name installations with "
            "--profile or --dsn"
        )
    return settings, [settings.target_for(name) for name in dict.fromkeys(names)]


def thresholds_of(
    settings: Settings, targets: list[Target], args: argparse.Namespace
) -> dict[str, Threshold]:
    """Each installation's oldest-ready threshold (keyed like the members): `--max-age` when
    given, else its profile's `fleet_max_age`, else the default."""
    from pgq_console.scripting import parse_threshold

    default, _ = _durations(args)
    given = getattr(args, "max_age", None) is not None
    thresholds = {}
    for index, target in enumerate(targets, start=1):
        own = settings.profiles.get(target.profile) if target.profile else None
        threshold = default
        if own is not None and own.fleet_max_age and not given:
            where = f"{settings.config_path}: profiles.{target.profile}.fleet_max_age"
            try:
                threshold = parse_threshold(own.fleet_max_age, what=where, duration=True)
            except ConsoleError as exc:
                message = str(exc)
                raise ConsoleError(
                    message if message.startswith(where) else f"{where}: {message}"
                ) from None
        thresholds[member_key(target, index)] = threshold
    return thresholds


def member_key(target: Target, index: int) -> str:
    return target.profile or f"dsn-{index}"


def members_of(
    targets: list[Target], max_age_s: float, thresholds: dict[str, Threshold] | None = None
) -> list[Member]:
    from pgq_console.cli.logs import remember_secrets
    from pgq_console.config import open_target
    from pgq_console.fleet_console import fleet_target

    members = []
    for index, target in enumerate(targets, start=1):
        remember_secrets(target)
        own = fleet_target(target)

        async def open_(own: Target = own) -> Backend:
            from pgq_console.core.backend import Backend

            backend = await open_target(own)
            assert isinstance(backend, Backend)
            return backend

        environment = target.environment
        key = member_key(target, index)
        own_threshold = (thresholds or {}).get(key)
        members.append(
            Member(
                key=key,
                label=target.profile or display_dsn(target.dsn),
                open=open_,
                environment=environment.label if environment else None,
                color=environment.color if environment else None,
                max_age_s=first_alert_s(own_threshold) if own_threshold else max_age_s,
            )
        )
    return members


def _durations(args: argparse.Namespace) -> tuple[Threshold, timedelta]:
    from pgq_console.scripting import parse_duration, parse_threshold

    max_age = parse_threshold(
        getattr(args, "max_age", None) or DEFAULT_MAX_AGE, what="--max-age", duration=True
    )
    stale_after = parse_duration(getattr(args, "stale_after", None) or "90s")
    return max_age, stale_after


def first_alert_s(threshold: Threshold) -> float:
    """The age from which the oldest ready job is trouble: WARN's end, else CRIT's."""
    return (threshold.warn or threshold.critical).end


# -- snapshot and check -----------------------------------------------------------------------


def row_document(row: FleetRow) -> dict[str, Any]:
    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "installation": row.key,
        "label": row.label,
        "environment": row.environment,
        "state": row.state.value,
        "since": when(row.since),
        "error": row.error,
        "ready": row.ready,
        "oldest_ready_age_s": row.oldest_ready_s,
        "max_age_s": row.max_age_s,
        "over_threshold": row.over_threshold,
        "held": row.held,
        "errors_per_min": row.errors_per_min,
        "workers_alive": row.workers_alive,
        "stale_jobs": row.stale_jobs,
        # The screen's "DB time": the console's own database time on it, in % of one
        # second per second (here: over this one read, counted as at least 1 s).
        "db_time_pct": db_time_pct(row),
        "read_at": when(row.read_at),
    }


def db_time_pct(row: FleetRow) -> float | None:
    """The fleet screen's DB time column as a number (None until read, as it shows –)."""
    return None if row.read_at is None else round(row.db_cost * 100, 2)


def installation_state(
    row: FleetRow,
    max_age: Threshold,
    max_failed: Threshold | None,
    max_stale: Threshold | None,
) -> tuple[NagiosState, list[str]]:
    """One installation's state and what is wrong with it."""
    from pgq_console.widgets import format as fmt

    name = printable(row.label, limit=60).replace("|", "\\x7c")
    if row.state is not LinkState.UP:
        since = f" since {row.since:%H:%M}" if row.since else ""
        cause = printable(one_line(row.error or ""), limit=120).replace("|", "\\x7c")
        return NagiosState.CRITICAL, [f"{name} {row.state.value}{since} ({cause})"]
    problems: list[tuple[NagiosState, str]] = []
    age = row.oldest_ready_s or 0.0
    if state := max_age.state(age):
        limit = max_age.violation(state, fmt.seconds)
        problems.append((state, f"{name} oldest ready {fmt.seconds(age)} {limit}"))
    counted = (("held", row.held, max_failed), ("stale", row.stale_jobs, max_stale))
    for what, value, threshold in counted:
        if threshold is not None and value is not None and (state := threshold.state(value)):
            problems.append((state, f"{name} {what} {value} {threshold.violation(state, str)}"))
    worst = max((state for state, _ in problems), default=NagiosState.OK)
    return worst, [text for _, text in sorted(problems, key=lambda p: -p[0])]


def evaluate(
    rows: list[FleetRow],
    max_age: Threshold,
    max_failed: Threshold | None,
    max_stale: Threshold | None,
    own_max_age: dict[str, Threshold] | None = None,
) -> tuple[NagiosState, str]:
    """The fleet's state (the worst installation's) and its one line, perfdata after `|`."""
    from pgq_console.scripting import perfdata_label

    worst = NagiosState.OK
    problems: list[tuple[NagiosState, str]] = []
    perfdata = []
    for row in by_trouble(rows):
        age_limit = (own_max_age or {}).get(row.key, max_age)
        state, texts = installation_state(row, age_limit, max_failed, max_stale)
        worst = max(worst, state)
        problems += [(state, text) for text in texts]
        if row.state is LinkState.UP:
            perfdata.append(
                f"{perfdata_label(row.label + '_age')}={row.oldest_ready_s or 0:.0f}s;"
                f"{age_limit.perfdata()}"
            )
            perfdata.append(f"{perfdata_label(row.label + '_held')}={row.held or 0}")
    down = sum(1 for row in rows if row.state is not LinkState.UP)
    errors = sum(1 for row in rows if row.state is LinkState.ERROR)
    head = f"{len(rows)} installation{'s' if len(rows) != 1 else ''}, {down - errors} down"
    if errors:  # reachable, but PgQueuer's schema is missing or its reads fail
        head += f", {errors} in error"
    if problems:
        ordered = [text for _, text in sorted(problems, key=lambda p: -p[0])]
        summary = f"{head}: {'; '.join(ordered)}"
    else:
        summary = f"{head}, all within thresholds"
    line = f"PGQ FLEET {worst.name} - {summary}"
    if perfdata:
        line += f" | {' '.join(perfdata)}"
    return worst, line


async def _read_fleet(members: list[Member], stale_after: timedelta) -> list[FleetRow]:
    from pgq_console.core.clock import SystemClock

    return await Fleet(members, SystemClock(), listen=False, stale_after=stale_after).read_once()


def run_fleet(args: argparse.Namespace) -> int:
    command = getattr(args, "fleet_command", None)
    if command == "check":
        return _check(args)
    if command != "snapshot":
        return asyncio.run(_run_screen(fleet_app(args)))
    settings, targets = fleet_settings(args)
    max_age, stale_after = _durations(args)
    thresholds = thresholds_of(settings, targets, args)
    members = members_of(targets, first_alert_s(max_age), thresholds)
    rows = asyncio.run(_read_fleet(members, stale_after))
    return _print_snapshot(rows, as_json=bool(getattr(args, "json", False)))


def fleet_app(args: argparse.Namespace) -> PgqConsole:
    """The console `pgq-console fleet` (or a console given several installations) runs."""
    settings, targets = fleet_settings(args)
    max_age, stale_after = _durations(args)
    members = members_of(targets, first_alert_s(max_age), thresholds_of(settings, targets, args))
    return make_fleet_app(settings, targets, members, stale_after)


def _check(args: argparse.Namespace) -> int:
    from pgq_console.scripting import parse_threshold, unknown_line

    try:
        settings, targets = fleet_settings(args)
        max_age, stale_after = _durations(args)
        thresholds = thresholds_of(settings, targets, args)
        max_failed = getattr(args, "max_failed", None)
        max_stale = getattr(args, "max_stale", None)
        failed = parse_threshold(max_failed, what="--max-failed") if max_failed else None
        stale = parse_threshold(max_stale, what="--max-stale") if max_stale else None
        members = members_of(targets, first_alert_s(max_age), thresholds)
    except ConsoleError as exc:
        print(unknown_line(str(exc)))
        return NagiosState.UNKNOWN
    rows = asyncio.run(_read_fleet(members, stale_after))
    state, line = evaluate(rows, max_age, failed, stale, thresholds)
    print(line)
    return state


def _print_snapshot(rows: list[FleetRow], *, as_json: bool) -> int:
    from pgq_console.core.fleet import worst_state
    from pgq_console.scripting import json_text
    from pgq_console.widgets import format as fmt

    if as_json:
        document = {
            "worst": worst_state(rows).name,
            "installations": [row_document(row) for row in rows],
        }
        print(json_text(document))
        return 0

    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    print(
        f"{'installation':40} {'state':18} {'ready':>7} {'oldest':>8} {'held':>6} "
        f"{'err/min':>7} {'workers':>7} {'stale':>6} {'db time':>7}"
    )
    for row in rows:
        state = row.state.value + (f" since {row.since:%H:%M}" if row.down and row.since else "")
        oldest = "-" if row.oldest_ready_s is None else fmt.seconds(row.oldest_ready_s)
        pct = db_time_pct(row)
        db_time = "-" if pct is None else f"{pct:.1f}%"
        print(
            f"{printable(row.label, limit=40):40} {state:18} {number(row.ready):>7} "
            f"{oldest:>8} {number(row.held):>6} {number(row.errors_per_min):>7} "
            f"{number(row.workers_alive):>7} {number(row.stale_jobs):>6} {db_time:>7}"
        )
        if row.error:
            print(f"  {printable(row.error, limit=200)}")
    return 0


# -- the screen -------------------------------------------------------------------------------


def make_fleet_app(
    settings: Settings,
    targets: list[Target],
    members: list[Member],
    stale_after: timedelta,
) -> PgqConsole:
    """A console that starts on the fleet screen (no installation open until Enter)."""
    from pgq_console.cli.run import make_app
    from pgq_console.fleet_console import FleetHost

    async def nothing_open() -> Any:  # never called: the fleet screen comes first
        raise ConsoleError("no installation is open")

    app = make_app(settings, nothing_open)
    app.profile = None
    app.environment = None
    app.fleet_host = FleetHost(
        members=tuple(members),
        targets={member.key: target for member, target in zip(members, targets, strict=True)},
        interval_s=settings.refresh,
        stale_after=stale_after,
    )
    return app


async def _run_screen(app: PgqConsole) -> int:
    from rich.console import Console

    from pgq_console.cli.logs import KNOWN_SECRETS
    from pgq_console.cli.run import _app_exit
    from pgq_console.cli.terminal import require_terminal
    from pgq_console.termination import TerminationSignals, tolerate_hangup

    require_terminal()
    errors = io.StringIO()
    app.error_console = Console(
        file=errors, width=160, color_system=None, markup=False, highlight=False
    )
    with TerminationSignals(app), tolerate_hangup():
        await app.run_async()
    if app.exit_signal is not None:
        return 128 + app.exit_signal
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    return _app_exit(app.return_code or 0, errors.getvalue(), tuple(KNOWN_SECRETS))
