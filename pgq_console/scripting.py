"""The modes without a TUI: `snapshot` (numbers for scripts), `check` (Nagios), `serve` (browser).

They use the same config file, profiles and variables as the console. Exit codes of `check`
follow the Nagios plugin convention:

    0 OK        every threshold holds
    1 WARNING   a WARN threshold is exceeded (thresholds take CRIT, or WARN,CRIT)
    2 CRITICAL  a CRIT threshold is exceeded, or the database cannot be reached or has no
                usable PgQueuer schema (the queue is not working: that is an incident)
    3 UNKNOWN   bad arguments or configuration: the check itself could not run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pgq_console.config import Settings, Target, open_target
from pgq_console.core import nagios
from pgq_console.core.errors import ConsoleError
from pgq_console.core.models import EntrypointRow
from pgq_console.core.nagios import NagiosState as NagiosState  # scripts import it from here
from pgq_console.core.nagios import Threshold as Threshold
from pgq_console.core.target import DriverKind, dsn_parts
from pgq_console.core.text import one_line, printable

DURATIONS_WINDOW = timedelta(minutes=5)


def unknown_line(message: str) -> str:
    return f"PGQ UNKNOWN - {printable(one_line(message))}"


# -- durations and thresholds --------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `5m`, `1h30m`, `250ms` → timedelta; ConsoleError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    position, total = 0, 0.0
    while position < len(compact):
        match = _DURATION.match(compact, position)
        if not match:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if not compact or position != len(compact):
        raise ConsoleError(f"not a duration: {text!r} (e.g. 90s, 5m, 1h30m)")
    try:
        return timedelta(seconds=total)
    except OverflowError:  # beyond timedelta's 999,999,999 days (or infinite)
        raise ConsoleError(f"duration too long: {text!r}") from None


def _number(value: float) -> str:
    return f"{value:g}"


def _whole_number(what: str) -> Callable[[str], float]:
    def read(text: str) -> float:
        try:
            return float(int(text))
        except ValueError:
            raise ConsoleError(f"{what}: not a whole number: {text!r}") from None

    return read


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


def parse_threshold(text: str, *, what: str, duration: bool = False) -> Threshold:
    """`CRIT` or `WARN,CRIT`, each a number (more than it alerts) or a Nagios range."""
    return nagios.parse_threshold(text, _seconds if duration else _whole_number(what), what=what)


def parse_max_age(items: list[str]) -> dict[str, Threshold]:
    """`ENTRYPOINT=DURATION[,DURATION]`; `*` means every entrypoint."""
    result = {}
    for item in items:
        entrypoint, sep, limit = item.partition("=")
        if not sep or not entrypoint.strip():
            raise ConsoleError(f"--max-age: expected ENTRYPOINT=DURATION, got {item!r}")
        result[entrypoint.strip()] = parse_threshold(
            limit, what=f"--max-age {entrypoint.strip()}", duration=True
        )
    return result


# -- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    database: str
    profile: str | None
    taken_at: datetime
    rows: tuple[EntrypointRow, ...]
    stale: int
    stale_after: timedelta
    # Every entrypoint name the queue, log and schedules know (None: not read); `check` warns
    # of a --max-age entrypoint that is none of them (a typo would never fire).
    known: frozenset[str] | None = None

    def age_s(self, row: EntrypointRow) -> float | None:
        if row.oldest_ready_since is None:
            return None
        return max(0.0, (self.taken_at - row.oldest_ready_since).total_seconds())


def _script_target(target: Target) -> Target:
    """Scripts only read: one plain connection (psycopg when asked for, else asyncpg)."""
    from dataclasses import replace

    wanted = DriverKind(target.driver)
    driver = DriverKind.PSYCOPG if wanted.value.startswith("psycopg") else DriverKind.ASYNCPG
    return replace(target, driver=driver.value)


async def read(settings: Settings, stale_after: timedelta, *, known_names: bool = False) -> Reading:
    from pgq_console.core.checks import count_stale, database_now
    from pgq_console.core.enqueue.entrypoints import known_entrypoints
    from pgq_console.core.stats import fetch_durations, fetch_overview

    backend = await open_target(_script_target(settings.target))
    try:
        try:
            durations = await fetch_durations(backend, DURATIONS_WINDOW)
            rows = await fetch_overview(backend, durations)
            stale = await count_stale(backend, stale_after)
            now = await database_now(backend)
            # [] when they cannot be read: then no name is judged unknown.
            known = frozenset(await known_entrypoints(backend)) if known_names else frozenset()
        except ConsoleError:
            raise
        except Exception as exc:
            raise ConsoleError(f"reading {backend.label} failed: {one_line(exc)}") from None
        return Reading(
            backend.label, settings.target.profile, now, rows, stale, stale_after, known or None
        )
    finally:
        await backend.close()


# -- snapshot ---------------------------------------------------------------------------------


def snapshot_document(reading: Reading) -> dict[str, Any]:
    def row_document(row: EntrypointRow) -> dict[str, Any]:
        return {
            "entrypoint": row.entrypoint,
            "ready": row.ready,
            "deferred": row.deferred,
            "picked": row.picked,
            "held": row.held,
            "completed_1m": row.completed_1m,
            "exceptions_1m": row.exceptions_1m,
            "completed_1h": row.completed_1h,
            "exceptions_1h": row.exceptions_1h,
            "rate_in_per_s": row.rate_in,
            "rate_out_per_s": row.rate_out,
            "oldest_ready_age_s": reading.age_s(row),
            "p50_s": row.p50_s,
            "p95_s": row.p95_s,
        }

    from pgq_console.core.models import OverviewSnapshot

    totals = OverviewSnapshot(reading.taken_at, reading.rows, 0.0).totals
    total = row_document(totals)
    del total["entrypoint"], total["p50_s"], total["p95_s"]
    total["stale"] = reading.stale
    return {
        "taken_at": reading.taken_at.isoformat(),
        "database": reading.database,
        "profile": reading.profile,
        "stale_after_s": reading.stale_after.total_seconds(),
        "totals": total,
        "entrypoints": [row_document(row) for row in reading.rows],
    }


def json_text(document: object) -> str:
    """JSON that is plain ASCII: controls and invisible characters come out as \\u escapes
    (json escapes C0 and, with ensure_ascii, everything past ASCII; DEL it leaves raw)."""
    return json.dumps(document, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


def status_text(name: str) -> str:
    """An entrypoint in a status line: escaped like the TUI does, and no `|` (which starts
    Nagios perfdata)."""
    return printable(name).replace("|", "\\x7c")


def perfdata_label(label: str) -> str:
    """A quoted perfdata label (Nagios plugin guidelines): `'` doubled, no `=`."""
    return "'" + status_text(label).replace("=", "\\x3d").replace("'", "''") + "'"


def snapshot(settings: Settings, *, as_json: bool, stale_after: str) -> int:
    reading = asyncio.run(read(settings, parse_duration(stale_after)))
    document = snapshot_document(reading)
    if as_json:
        print(json_text(document))
        return 0
    from pgq_console.widgets import format as fmt

    print(f"{printable(reading.database)} at {reading.taken_at:%Y-%m-%d %H:%M:%S %Z}")
    header = f"{'entrypoint':24} {'ready':>7} {'picked':>7} {'held':>6} {'oldest':>8} {'err/1h':>7}"
    print(header)
    for row in reading.rows:
        age = reading.age_s(row)
        print(
            f"{printable(row.entrypoint, limit=24):24} {row.ready:7} {row.picked:7} {row.held:6} "
            f"{fmt.seconds(age):>8} {row.exceptions_1h:7}"
        )
    print(f"stale picked jobs (heartbeat > {stale_after}): {reading.stale}")
    return 0


# -- check -------------------------------------------------------------------------------------


def evaluate(
    reading: Reading,
    max_age: dict[str, Threshold],
    max_failed: Threshold | None,
    max_stale: Threshold | None,
) -> tuple[NagiosState, str]:
    """The state and the one-line summary (with Nagios perfdata after `|`)."""
    from pgq_console.widgets import format as fmt

    problems: list[tuple[NagiosState, str]] = []
    perfdata: list[str] = []
    by_entrypoint = {row.entrypoint: row for row in reading.rows}
    for entrypoint, threshold in max_age.items():
        rows = list(reading.rows) if entrypoint == "*" else [by_entrypoint.get(entrypoint)]
        if rows == [None] and reading.known is not None and entrypoint not in reading.known:
            problems.append(
                (
                    NagiosState.WARNING,
                    f"no entrypoint '{status_text(entrypoint)}' in the queue, log or schedules: "
                    "its --max-age cannot fire (a typo?)",
                )
            )
        for row in rows:
            name = row.entrypoint if row else entrypoint
            age = (reading.age_s(row) if row else None) or 0.0
            perfdata.append(f"{perfdata_label('age_' + name)}={age:.0f}s;{threshold.perfdata()}")
            state = threshold.state(age)
            if state:
                limit = threshold.violation(state, fmt.seconds)
                text = f"{status_text(name)} oldest ready {fmt.seconds(age)} {limit}"
                problems.append((state, text))
    held = sum(row.held for row in reading.rows)
    stale = reading.stale
    counted: tuple[tuple[str, int, Threshold | None], ...] = (
        ("held", held, max_failed),
        ("stale", stale, max_stale),
    )
    for label, value, count_limit in counted:
        perfdata.append(f"{label}={value};{count_limit.perfdata() if count_limit else ';'}")
        if count_limit is not None and (state := count_limit.state(value)):
            problems.append((state, f"{label} {value} {count_limit.violation(state, _number)}"))
    state = max((s for s, _ in problems), default=NagiosState.OK)
    if problems:
        summary = "; ".join(text for s, text in sorted(problems, key=lambda p: -p[0]))
    else:
        oldest = max(
            ((reading.age_s(row) or 0.0, row.entrypoint) for row in reading.rows),
            default=(0.0, "-"),
        )
        summary = (
            f"{len(reading.rows)} entrypoints, held {held}, stale {stale}, "
            f"oldest ready {fmt.seconds(oldest[0])} ({status_text(oldest[1])})"
        )
    return state, f"PGQ {state.name} - {summary} | {' '.join(perfdata)}"


def check(
    settings: Settings,
    *,
    max_age: list[str],
    max_failed: str | None,
    max_stale: str | None,
    stale_after: str,
) -> int:
    # Arguments first: a bad threshold is UNKNOWN even when the database is down.
    try:
        ages = parse_max_age(max_age)
        failed: Threshold | None = None
        stale: Threshold | None = None
        failed = parse_threshold(max_failed, what="--max-failed") if max_failed else None
        stale = parse_threshold(max_stale, what="--max-stale") if max_stale else None
        stale_window = parse_duration(stale_after)
        # A DSN that does not parse is configuration (UNKNOWN), not a queue incident.
        dsn_parts(settings.target.dsn)
    except ConsoleError as exc:
        print(unknown_line(str(exc)))
        return NagiosState.UNKNOWN
    try:
        reading = asyncio.run(read(settings, stale_window, known_names=bool(ages)))
    except ConsoleError as exc:
        print(f"PGQ CRITICAL - {printable(one_line(exc))}")
        return NagiosState.CRITICAL
    state, line = evaluate(reading, ages, failed, stale)
    print(line)
    return state


# -- serve -------------------------------------------------------------------------------------


def serve_command(settings: Settings, args: argparse.Namespace) -> list[str]:
    """The console's own command line for each browser session; never the DSN (nor a password).

    The DSN reaches the session through the environment (PGQ_CONSOLE_DSN) or the config file.
    """
    command = [sys.executable, "-m", "pgq_console"]
    if getattr(args, "config", None):
        command += ["--config", str(settings.config_path)]
    for option in ("profile", "driver", "schema", "prefix", "channel", "theme"):
        value = getattr(args, option, None)
        if value:
            command += [f"--{option}", str(value)]
    if getattr(args, "refresh", None):
        command += ["--refresh", str(args.refresh)]
    if getattr(args, "read_only", False):
        command.append("--read-only")
    command.append("--served")  # no `file` payloads: the browser is not this machine's user
    if getattr(args, "demo", False):
        command.append("--demo")  # each browser tab gets its own embedded demo database
    return command


def serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        import textual_serve  # noqa: F401  (its JavaScript and AppService)
    except ImportError:
        raise ConsoleError(
            "serve needs the serve extra: pip install 'pgq-console[serve]'"
        ) from None
    from pgq_console.serve import (
        DEFAULT_MAX_SESSIONS,
        ServeConfig,
        basic_auth_from,
        check_exposure,
        run_server,
    )

    auth = basic_auth_from(os.environ)
    check_exposure(args.host, auth, insecure=getattr(args, "insecure", False))
    max_sessions = getattr(args, "max_sessions", None)
    max_sessions = DEFAULT_MAX_SESSIONS if max_sessions is None else max_sessions
    if not 1 <= max_sessions <= 1000:
        raise ConsoleError("serve: --max-sessions must be from 1 to 1000")
    if not 1 <= args.port <= 65535:
        raise ConsoleError(f"serve: --port {args.port} is not a TCP port (1-65535)")
    if not getattr(args, "demo", False):
        # Fail here, in the terminal, rather than in every browser session.
        asyncio.run(_probe(settings.target))
    if getattr(args, "dsn", None):
        os.environ["PGQ_CONSOLE_DSN"] = args.dsn  # inherited by each session, never in argv
    title = "pgq-console" + (f" · {settings.target.profile}" if settings.target.profile else "")
    config = ServeConfig(
        shlex.join(serve_command(settings, args)),
        host=args.host,
        port=args.port,
        title=title,
        public_url=args.public_url,
        auth=auth,
        max_sessions=max_sessions,
    )

    def announce(url: str) -> None:
        # Like Jupyter: the token is in the URL, so only who sees this terminal can open it.
        print(f"pgq-console: serving on {url} (ctrl+c stops)", file=sys.stderr, flush=True)

    run_server(config, announce)
    return 0


async def _probe(target: Target) -> None:
    backend = await open_target(_script_target(target))
    await backend.close()
