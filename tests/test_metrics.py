"""Prometheus / OpenMetrics output against real PostgreSQL, checked with prometheus_client's own
parsers: `snapshot --format openmetrics|prometheus` and the cached `metrics --listen` endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_parser,
)
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

from pgq_console.config import CliOptions, load_settings
from pgq_console.metrics import CachedReader, exposition, serve_metrics
from tests.conftest import drop_database, make_database
from tests.helpers import enqueue, wait_for
from tests.test_scripting import SEED, run


def parse_openmetrics(text: str) -> list[Any]:
    """prometheus_client's OpenMetrics parser (strict: it raises on any malformed line)."""
    return list(openmetrics_parser(text))  # type: ignore[no-untyped-call]


HOSTILE = 'quote"back\\slash\nnewline'
LOG_SEED = """
INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
SELECT g, 'successful', 'send_email', 0 FROM generate_series(1, 12) AS g;
INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority)
SELECT g, 'exception', 'charge_card', 0 FROM generate_series(1, 5) AS g;
"""


@pytest.fixture(scope="module")
def metrics_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "metrics")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(SEED)
            await connection.execute(LOG_SEED)
            await connection.execute(
                "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', $1)",
                HOSTILE,
            )
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def samples(families: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


def check_numbers(found: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    assert value(found, "pgqueuer_jobs", entrypoint="send_email", state="ready") == 30
    assert value(found, "pgqueuer_jobs", entrypoint="send_email", state="picked") == 3
    assert value(found, "pgqueuer_jobs", entrypoint="resize_image", state="deferred") == 6
    assert value(found, "pgqueuer_jobs", entrypoint="charge_card", state="held") == 7
    assert value(found, "pgqueuer_jobs", entrypoint=HOSTILE, state="ready") == 1
    age = value(found, "pgqueuer_oldest_ready_age_seconds", entrypoint="send_email")
    assert 590 <= age <= 3600  # ten minutes ago, as the database counts
    assert value(found, "pgqueuer_stale_picked_jobs") == 2
    assert (
        value(found, "pgqueuer_log_jobs_total", entrypoint="send_email", status="successful") == 12
    )
    assert (
        value(found, "pgqueuer_log_jobs_total", entrypoint="charge_card", status="exception") == 5
    )
    assert value(found, "pgqueuer_console_up") == 1


def test_snapshot_openmetrics_parses_and_matches_the_database(
    capsys: pytest.CaptureFixture[str], metrics_dsn: str
) -> None:
    code, out, err = run(capsys, "snapshot", "--format", "openmetrics", "--dsn", metrics_dsn)
    assert code == 0, err
    assert out.endswith("# EOF\n")
    families = list(parse_openmetrics(out))
    kinds = {family.name: family.type for family in families}
    assert kinds["pgqueuer_jobs"] == "gauge"
    assert kinds["pgqueuer_log_jobs"] == "counter"
    assert kinds["pgqueuer_job_duration_seconds"] == "summary"
    check_numbers(samples(families))


def test_snapshot_prometheus_text_parses_for_the_textfile_collector(
    capsys: pytest.CaptureFixture[str], metrics_dsn: str
) -> None:
    code, out, err = run(capsys, "snapshot", "--format", "prometheus", "--dsn", metrics_dsn)
    assert code == 0, err
    assert "# EOF" not in out
    families = list(parse_prometheus(out))
    assert {family.name: family.type for family in families}["pgqueuer_log_jobs"] == "counter"
    check_numbers(samples(families))


def test_durations_are_a_summary_with_quantiles() -> None:
    from pgq_console.metrics import MetricsReading

    reading = MetricsReading((), (), 0, (), (("a", "0.5", 0.25), ("a", "0.95", 1.5)))
    found = samples(parse_openmetrics(exposition(reading, openmetrics=True)))
    assert value(found, "pgqueuer_job_duration_seconds", entrypoint="a", quantile="0.5") == 0.25
    assert value(found, "pgqueuer_job_duration_seconds", entrypoint="a", quantile="0.95") == 1.5


async def test_scrapes_read_the_database_at_most_once_per_interval(metrics_dsn: str) -> None:
    settings = load_settings(CliOptions(dsn=metrics_dsn), {})
    cache = CachedReader(settings, timedelta(minutes=5), interval_s=3600)
    try:
        first, *others = await asyncio.gather(*(cache.reading() for _ in range(5)))
        assert cache.reads == 1 and all(other is first for other in others)
        await enqueue(metrics_dsn, "arrived_later")
        cached = await cache.reading()
        assert cache.reads == 1 and cached is first  # within the interval: the cache
        cache.interval_s = 0  # the interval is over
        fresh = await cache.reading()
        assert cache.reads == 2 and fresh is not None
        assert ("arrived_later", "ready", 1) in fresh.jobs
    finally:
        await cache.close()


def test_a_lost_database_reports_up_0_and_no_stale_numbers(server_dsn: str) -> None:
    dsn = make_database(server_dsn, "metrics_lost")
    settings = load_settings(CliOptions(dsn=dsn), {})
    cache = CachedReader(settings, timedelta(minutes=5), interval_s=0)

    async def read_twice() -> None:
        try:
            assert await cache.reading() is not None
            await asyncio.to_thread(drop_database, server_dsn, dsn, now=True)
            reading = await cache.reading()
            assert reading is None
            found = samples(parse_openmetrics(exposition(reading, openmetrics=True)))
            assert found == {("pgqueuer_console_up", frozenset()): 0}
        finally:
            await cache.close()

    try:
        asyncio.run(read_twice())
    finally:
        drop_database(server_dsn, dsn)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def test_the_endpoint_serves_both_formats(metrics_dsn: str) -> None:
    settings = load_settings(CliOptions(dsn=metrics_dsn), {})
    port = free_port()
    server = asyncio.create_task(
        serve_metrics(settings, f"127.0.0.1:{port}", 3600, timedelta(minutes=5))
    )
    try:

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", port), 1):
                return True

        await wait_for(listening, what=f"the metrics endpoint on {port}", step=0.1)
        base = f"http://127.0.0.1:{port}"
        status, kind, body = await asyncio.to_thread(
            get, f"{base}/metrics", "application/openmetrics-text; version=1.0.0"
        )
        assert status == 200 and kind.startswith("application/openmetrics-text")
        check_numbers(samples(parse_openmetrics(body)))
        status, kind, body = await asyncio.to_thread(get, f"{base}/metrics")
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        check_numbers(samples(parse_prometheus(body)))
        status, _, _ = await asyncio.to_thread(get, f"{base}/nope")
        assert status == 404
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


def test_metrics_command_starts_and_stops_cleanly(metrics_dsn: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    env["PGQ_CONSOLE_DSN"] = metrics_dsn
    process = subprocess.Popen(
        [sys.executable, "-m", "pgq_console", "metrics", "--listen", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert f"127.0.0.1:{port}/metrics" in process.stdout.readline()
        status, _, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "pgqueuer_jobs{" in body
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "nowhere"], "--listen: expected HOST:PORT"),
        (["--interval", "0"], "--interval must be above zero"),
        (["--dsn", "postgresql://u:hidden@127.0.0.1:1/d"], "cannot reach u@127.0.0.1:1/d"),
    ],
)
def test_metrics_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], metrics_dsn: str, args: list[str], message: str
) -> None:
    # A bad --dsn stands alone: two would be refused as several installations.
    target = [] if "--dsn" in args else ["--dsn", metrics_dsn]
    code, out, err = run(capsys, "metrics", *target, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "hidden" not in err, err
