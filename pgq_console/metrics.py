"""Prometheus / OpenMetrics: `snapshot --format openmetrics|prometheus` and `metrics --listen`.

The same numbers as `snapshot`, named the Prometheus way:

    pgqueuer_jobs{entrypoint,state}                   gauge: ready, deferred, picked, held
    pgqueuer_oldest_ready_age_seconds{entrypoint}     gauge: how long the oldest ready job waited
    pgqueuer_stale_picked_jobs                        gauge: picked, heartbeat past stale-after
    pgqueuer_log_jobs_total{entrypoint,status}        counter: pgqueuer_log rows per status
    pgqueuer_job_duration_seconds{entrypoint,quantile} summary: p50/p95 run time, last 5 minutes
    pgqueuer_console_up                               gauge: 1 when the last read worked

`metrics --listen` serves them over HTTP from a cache: whatever the scrape rate, the database
sees at most one read per interval (a scrape after the interval refreshes it; concurrent
scrapes share that one refresh). Entrypoint names are untrusted text: label values are escaped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from pgq_console.config import Settings
from pgq_console.core.backend import Backend
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line

log = logging.getLogger(__name__)

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_LISTEN = "127.0.0.1:9464"
JOB_STATES = ("ready", "deferred", "picked", "held")
QUANTILES = (("0.5", "p50_s"), ("0.95", "p95_s"))


@dataclass(frozen=True)
class MetricsReading:
    """One read of everything the metrics show."""

    jobs: tuple[tuple[str, str, int], ...]  # entrypoint, state, count
    oldest_ready_age_s: tuple[tuple[str, float], ...]
    stale_picked: int
    log_totals: tuple[tuple[str, str, int], ...]  # entrypoint, status, rows
    durations: tuple[tuple[str, str, float], ...]  # entrypoint, quantile, seconds


def log_totals_sql(backend: Backend) -> str:
    """Rows per entrypoint and status over the whole log: the aggregated buckets plus the rows
    not aggregated yet, in one statement (a row aggregated meanwhile is counted once)."""
    names = backend.installation.settings.qualified
    return f"""
SELECT entrypoint, status, sum(n)::bigint AS n FROM (
    SELECT entrypoint, status::text AS status, count AS n FROM {names.statistics_table}
    UNION ALL
    SELECT entrypoint, status::text, count(*) FROM {names.queue_table_log}
    WHERE NOT aggregated GROUP BY 1, 2
) AS rows GROUP BY 1, 2 ORDER BY 1, 2
"""


async def collect(backend: Backend, stale_after: timedelta) -> MetricsReading:
    from pgq_console.core.checks import count_stale, database_now
    from pgq_console.core.stats import fetch_durations, fetch_overview
    from pgq_console.scripting import DURATIONS_WINDOW

    durations = await fetch_durations(backend, DURATIONS_WINDOW)
    rows = await fetch_overview(backend, durations)
    stale = await count_stale(backend, stale_after)
    now = await database_now(backend)
    totals = await backend.read(log_totals_sql(backend))
    return MetricsReading(
        jobs=tuple(
            (row.entrypoint, state, int(getattr(row, state)))
            for row in rows
            for state in JOB_STATES
        ),
        oldest_ready_age_s=tuple(
            (row.entrypoint, max(0.0, (now - row.oldest_ready_since).total_seconds()))
            for row in rows
            if row.oldest_ready_since is not None
        ),
        stale_picked=stale,
        log_totals=tuple((str(r["entrypoint"]), str(r["status"]), int(r["n"])) for r in totals),
        durations=tuple(
            (row.entrypoint, quantile, float(value))
            for row in rows
            for quantile, field in QUANTILES
            if (value := getattr(row, field)) is not None
        ),
    )


# -- exposition -----------------------------------------------------------------------------


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs) + "}"


def _value(number: float) -> str:
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if isinstance(number, int) or number.is_integer():
        return str(int(number))
    return repr(float(number))


@dataclass(frozen=True)
class _Family:
    name: str  # without _total for counters (OpenMetrics); the sample name adds it
    kind: str  # gauge, counter, summary
    help: str
    samples: tuple[tuple[tuple[tuple[str, str], ...], float], ...]


def _families(reading: MetricsReading | None) -> list[_Family]:
    up = _Family(
        "pgqueuer_console_up",
        "gauge",
        "1 when the console's last read worked",
        (((), 1 if reading else 0),),
    )
    if reading is None:
        return [up]
    return [
        _Family(
            "pgqueuer_jobs",
            "gauge",
            "Jobs in the queue table by state (ready, deferred, picked, held failures)",
            tuple(
                ((("entrypoint", ep), ("state", state)), count) for ep, state, count in reading.jobs
            ),
        ),
        _Family(
            "pgqueuer_oldest_ready_age_seconds",
            "gauge",
            "Seconds the oldest ready job of the entrypoint has waited",
            tuple(((("entrypoint", ep),), age) for ep, age in reading.oldest_ready_age_s),
        ),
        _Family(
            "pgqueuer_stale_picked_jobs",
            "gauge",
            "Picked jobs whose heartbeat is older than the stale-after limit",
            (((), reading.stale_picked),),
        ),
        _Family(
            "pgqueuer_log_jobs",
            "counter",
            "Rows in pgqueuer's log by entrypoint and status (queued counts enqueues)",
            tuple(
                ((("entrypoint", ep), ("status", status)), n)
                for ep, status, n in reading.log_totals
            ),
        ),
        _Family(
            "pgqueuer_job_duration_seconds",
            "summary",
            "Job run time quantiles over the last 5 minutes",
            tuple(
                ((("entrypoint", ep), ("quantile", quantile)), seconds)
                for ep, quantile, seconds in reading.durations
            ),
        ),
        up,
    ]


def exposition(reading: MetricsReading | None, *, openmetrics: bool) -> str:
    """The text format: OpenMetrics 1.0, or Prometheus 0.0.4 (node_exporter's textfile)."""
    lines: list[str] = []
    for family in _families(reading):
        suffix = "_total" if family.kind == "counter" else ""
        declared = family.name if openmetrics else family.name + suffix
        lines.append(f"# HELP {declared} {family.help}")
        lines.append(f"# TYPE {declared} {family.kind}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_value(value)}")
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


# -- snapshot --format -------------------------------------------------------------------------


async def read_once(settings: Settings, stale_after: timedelta) -> MetricsReading:
    backend = await _open(settings)
    try:
        return await _collect_or_fail(backend, stale_after)
    finally:
        await backend.close()


async def _open(settings: Settings) -> Backend:
    from pgq_console.config import open_target
    from pgq_console.scripting import _script_target

    return await open_target(_script_target(settings.target))


async def _collect_or_fail(backend: Backend, stale_after: timedelta) -> MetricsReading:
    try:
        return await collect(backend, stale_after)
    except ConsoleError:
        raise
    except Exception as exc:
        raise ConsoleError(f"reading {backend.label} failed: {one_line(exc)}") from None


def snapshot(settings: Settings, *, openmetrics: bool, stale_after: str) -> int:
    from pgq_console.scripting import parse_duration

    reading = asyncio.run(read_once(settings, parse_duration(stale_after)))
    print(exposition(reading, openmetrics=openmetrics), end="")
    return 0


# -- metrics --listen ----------------------------------------------------------------------------


class CachedReader:
    """At most one database read per `interval_s`, whatever the scrape rate."""

    def __init__(self, settings: Settings, stale_after: timedelta, interval_s: float) -> None:
        self.settings = settings
        self.stale_after = stale_after
        self.interval_s = interval_s
        self.reads = 0  # database reads so far (the test counts them)
        self._backend: Backend | None = None
        self._reading: MetricsReading | None = None
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def reading(self) -> MetricsReading | None:
        async with self._lock:  # concurrent scrapes wait for the one refresh
            if time.monotonic() - self._read_at >= self.interval_s:
                await self._refresh()
            return self._reading

    async def _refresh(self) -> None:
        self._read_at = time.monotonic()
        self.reads += 1
        try:
            if self._backend is None:
                self._backend = await _open(self.settings)
            self._reading = await _collect_or_fail(self._backend, self.stale_after)
        except (ConsoleError, OSError) as exc:
            log.warning("metrics read failed: %s", exc)
            self._reading = None  # pgqueuer_console_up 0; no stale numbers
            await self.close()

    async def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            with contextlib.suppress(Exception):
                await backend.close()


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConsoleError(f"--listen: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cache: CachedReader
) -> None:
    try:
        request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    head = request.decode("latin-1").split("\r\n")
    method, _, rest = head[0].partition(" ")
    path = rest.partition(" ")[0].partition("?")[0]
    accept = next(
        (line.partition(":")[2] for line in head[1:] if line.lower().startswith("accept:")), ""
    )
    if method not in ("GET", "HEAD"):
        status, kind, body = "405 Method Not Allowed", "text/plain", b"GET /metrics\n"
    elif path == "/metrics":
        openmetrics = "application/openmetrics-text" in accept
        text = exposition(await cache.reading(), openmetrics=openmetrics)
        status, kind = "200 OK", OPENMETRICS_TYPE if openmetrics else PROMETHEUS_TYPE
        body = text.encode()
    elif path == "/":
        status, kind, body = "200 OK", "text/plain", b"pgq-console metrics: see /metrics\n"
    else:
        status, kind, body = "404 Not Found", "text/plain", b"not found: see /metrics\n"
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    if method != "HEAD":
        writer.write(body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def serve_metrics(
    settings: Settings, listen: str, interval_s: float, stale_after: timedelta
) -> None:
    host, port = parse_listen(listen)
    cache = CachedReader(settings, stale_after, interval_s)
    try:
        server = await asyncio.start_server(
            lambda r, w: _handle(r, w, cache), host, port, reuse_address=True
        )
    except OSError as exc:
        raise ConsoleError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    try:
        async with server:
            print(f"pgq-console metrics on http://{listen}/metrics", flush=True)
            await server.serve_forever()
    finally:
        await cache.close()


def metrics(settings: Settings, *, listen: str, interval: str, stale_after: str) -> int:
    from pgq_console.scripting import parse_duration

    interval_s = parse_duration(interval).total_seconds()
    if interval_s <= 0:
        raise ConsoleError(f"--interval must be above zero, got {interval!r}")
    parse_listen(listen)  # a bad address is one line before anything else
    stale = parse_duration(stale_after)
    asyncio.run(_probe_then_serve(settings, listen, interval_s, stale))
    return 0


async def _probe_then_serve(
    settings: Settings, listen: str, interval_s: float, stale_after: timedelta
) -> None:
    """A bad DSN or missing schema is one line at start; later outages only set up to 0."""
    backend = await _open(settings)
    await backend.close()
    await serve_metrics(settings, listen, interval_s, stale_after)
