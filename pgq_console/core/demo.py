"""Live demo traffic: real PgQueuer producers and consumers inside the current event loop.

Everything runs as asyncio tasks on private asyncpg connections (application_name
``pgq-console-demo``). Nothing here prints: the console's TUI owns the terminal, so
problems go to ``logging`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager

logger = logging.getLogger(__name__)
# Never fall back to logging's last-resort stderr handler while the TUI is up.
logger.addHandler(logging.NullHandler())

APPLICATION_NAME: Final = "pgq-console-demo"

DEMO_ENTRYPOINTS: tuple[str, ...] = (
    "send_email",
    "resize_image",
    "sync_crm",
    "charge_card",
    "build_report",
)

# Uneven mix so the per-entrypoint views differ visibly.
_WEIGHTS: Final[tuple[float, ...]] = (40.0, 25.0, 15.0, 12.0, 8.0)
# Handler sleep range in ms per entrypoint.
_LATENCY_MS: Final[dict[str, tuple[float, float]]] = {
    "send_email": (2.0, 6.0),
    "resize_image": (5.0, 20.0),
    "sync_crm": (3.0, 10.0),
    "charge_card": (2.0, 8.0),
    "build_report": (80.0, 200.0),
}
# build_report is slow *and* globally limited to 2 in flight (~14 jobs/s), below its
# ~24 jobs/s arrival rate at the default 300 jobs/s, so a backlog visibly grows there.
_BUILD_REPORT_LIMIT: Final = 2
_CHARGE_CARD_FAIL: Final = 0.05  # held (on_failure="hold") -> status 'failed' rows
_SYNC_CRM_FAIL: Final = 0.03  # default delete policy -> 'exception' log rows

_TICK_S: Final = 0.1
_MAX_BATCH: Final = 2000
_PRIORITY_SHARE: Final = 0.15
_DEFERRED_SHARE: Final = 0.04
_DEFERRED_RANGE_S: Final = (5.0, 60.0)
# Slow sine on the rate so throughput charts have some shape.
_WAVE_AMPLITUDE: Final = 0.3
_WAVE_PERIOD_S: Final = 40.0

_CONSUMERS: Final = 2
_BATCH_SIZE: Final = 10
_DEQUEUE_TIMEOUT: Final = timedelta(seconds=2)
_CONNECT_TIMEOUT_S: Final = 5.0
_PRODUCER_STOP_S: Final = 2.0
_CONSUMER_STOP_S: Final = 5.0
_CLOSE_TIMEOUT_S: Final = 2.0
_MAX_BACKOFF_S: Final = 5.0


class DemoJobError(RuntimeError):
    """Deliberate, simulated handler failure."""


class SimulatedFailureOneLine(logging.Filter):
    """pgqueuer logs every failed job with its traceback; a simulated one is a single line.

    Without this, one demo run wrote thousands of identical tracebacks into the console's log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, DemoJobError):
            record.msg = f"{record.getMessage()}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


PGQUEUER_LOGGER: Final = logging.getLogger("pgqueuer")


@dataclass(frozen=True, slots=True)
class DemoStats:
    """Counters since start: jobs enqueued, handlers that succeeded, handlers that raised."""

    enqueued: int = 0
    processed: int = 0
    failed: int = 0


async def _connect(dsn: str) -> Any:
    return await asyncpg.connect(
        dsn,
        timeout=_CONNECT_TIMEOUT_S,
        server_settings={"application_name": APPLICATION_NAME},
    )


async def _close(conn: Any) -> None:
    """Close without ever raising or hanging (the server may already be gone)."""
    if conn is None:
        return
    try:
        await asyncio.wait_for(conn.close(), timeout=_CLOSE_TIMEOUT_S)
    except Exception:
        with contextlib.suppress(Exception):
            conn.terminate()


async def install_schema(dsn: str) -> None:
    """Install the PgQueuer schema on ``dsn`` unless (part of) it is already there."""
    conn = await _connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        if not await queries.schema_is_installed():
            await queries.install()
            logger.info("installed the PgQueuer schema")
    finally:
        await _close(conn)


class DemoTraffic:
    """One producer plus two consumers (QueueManagers) generating realistic queue load."""

    def __init__(self, dsn: str, *, jobs_per_second: float = 300.0, seed: int = 7) -> None:
        if jobs_per_second < 0 or not math.isfinite(jobs_per_second):
            raise ValueError("jobs_per_second must be a finite number >= 0")
        self._dsn = dsn
        self._rate = jobs_per_second
        # Separate streams so the producer's job mix does not depend on consumer timing.
        self._producer_rng = random.Random(seed)
        self._handler_rng = random.Random(seed + 1)
        self._enqueued = 0
        self._processed = 0
        self._failed = 0
        self._stopping = asyncio.Event()
        self._producer: asyncio.Task[None] | None = None
        self._consumers: list[asyncio.Task[None]] = []
        self._managers: list[QueueManager | None] = [None] * _CONSUMERS
        self._connections: set[Any] = set()
        self._one_line_failures = SimulatedFailureOneLine()

    @property
    def stats(self) -> DemoStats:
        """Snapshot of the counters."""
        return DemoStats(self._enqueued, self._processed, self._failed)

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._producer is not None

    async def start(self) -> None:
        """Start the producer and consumer tasks; returns at once (connections open lazily)."""
        if self._producer is not None:
            return
        self._stopping = asyncio.Event()
        self._managers = [None] * _CONSUMERS
        PGQUEUER_LOGGER.addFilter(self._one_line_failures)
        self._consumers = [
            asyncio.create_task(self._consumer_loop(i), name=f"pgq-demo-consumer-{i}")
            for i in range(_CONSUMERS)
        ]
        self._producer = asyncio.create_task(self._producer_loop(), name="pgq-demo-producer")

    async def stop(self) -> None:
        """Stop producing, let consumers finish in-flight jobs, close connections. Never raises."""
        producer, self._producer = self._producer, None
        consumers, self._consumers = self._consumers, []
        self._stopping.set()
        try:
            if producer is not None:
                await self._finish([producer], _PRODUCER_STOP_S)
            for qm in self._managers:
                if qm is not None:
                    qm.shutdown.set()
            await self._finish(consumers, _CONSUMER_STOP_S)
        except Exception:
            logger.exception("error while stopping demo traffic")
        finally:
            conns, self._connections = list(self._connections), set()
            for conn in conns:
                await _close(conn)
            PGQUEUER_LOGGER.removeFilter(self._one_line_failures)

    # -- internals -----------------------------------------------------------------

    @staticmethod
    async def _finish(tasks: list[asyncio.Task[None]], grace: float) -> None:
        """Wait up to ``grace`` seconds, then cancel whatever is left."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT_S)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.warning("demo task %s ended with %r", task.get_name(), task.exception())

    async def _open(self) -> Any:
        conn = await _connect(self._dsn)
        self._connections.add(conn)
        return conn

    async def _release(self, conn: Any) -> None:
        if conn is not None:
            self._connections.discard(conn)
            await _close(conn)

    async def _backoff(self, delay: float) -> float:
        """Sleep ``delay`` (cut short by stop()); return the next, longer delay."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        return min(delay * 2, _MAX_BACKOFF_S)

    def _make_batch(
        self, n: int
    ) -> tuple[list[str], list[bytes | None], list[int], list[timedelta | None]]:
        rng = self._producer_rng
        names = rng.choices(DEMO_ENTRYPOINTS, weights=_WEIGHTS, k=n)
        payloads: list[bytes | None] = []
        priorities: list[int] = []
        delays: list[timedelta | None] = []
        for name in names:
            payloads.append(_payload(name, rng))
            priorities.append(rng.randint(1, 9) if rng.random() < _PRIORITY_SHARE else 0)
            delays.append(
                timedelta(seconds=rng.uniform(*_DEFERRED_RANGE_S))
                if rng.random() < _DEFERRED_SHARE
                else None
            )
        return names, payloads, priorities, delays

    async def _producer_loop(self) -> None:
        conn: Any = None
        queries: Queries | None = None
        delay = 0.5
        failing = False
        started = last = time.monotonic()
        debt = 0.0
        while not self._stopping.is_set():
            try:
                if queries is None:
                    conn = await self._open()
                    queries = Queries(AsyncpgDriver(conn))
                    last = time.monotonic()
                    debt = 0.0
                now = time.monotonic()
                # Cap the catch-up so a stall (or a slow batch) does not become a burst.
                elapsed = min(now - last, 1.0)
                last = now
                wave = 1.0 + _WAVE_AMPLITUDE * math.sin(
                    2 * math.pi * (now - started) / _WAVE_PERIOD_S
                )
                debt += self._rate * wave * elapsed
                n = min(int(debt), _MAX_BATCH)
                debt -= n
                if n:
                    names, payloads, priorities, delays = self._make_batch(n)
                    ids = await queries.enqueue(names, payloads, priorities, delays)
                    self._enqueued += len(ids)
                if failing:
                    logger.info("demo producer recovered")
                    failing = False
                delay = 0.5
                await self._backoff(_TICK_S)
            except asyncio.CancelledError:
                await self._release(conn)
                raise
            except Exception as exc:
                # Typically the database went away: drop the connection and retry later.
                logger.warning(
                    "demo producer error: %s; retrying in %.1fs",
                    exc,
                    delay,
                    exc_info=not failing,
                )
                failing = True
                await self._release(conn)
                conn, queries = None, None
                delay = await self._backoff(delay)
        await self._release(conn)

    async def _consumer_loop(self, index: int) -> None:
        delay = 0.5
        failing = False
        while not self._stopping.is_set():
            conn: Any = None
            try:
                conn = await self._open()
                qm = QueueManager(Queries(AsyncpgDriver(conn)))
                self._register(qm)
                self._managers[index] = qm
                # stop() may have run while we were connecting; it only signals managers
                # it could see, so check again before entering run().
                if self._stopping.is_set():
                    break
                if failing:
                    logger.info("demo consumer %d reconnected", index)
                    failing = False
                await qm.run(dequeue_timeout=_DEQUEUE_TIMEOUT, batch_size=_BATCH_SIZE)
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning(
                    "demo consumer %d error: %s; retrying in %.1fs",
                    index,
                    exc,
                    delay,
                    exc_info=not failing,
                )
                failing = True
            finally:
                self._managers[index] = None
                await self._release(conn)
            if self._stopping.is_set():
                break
            delay = await self._backoff(delay)

    def _register(self, qm: QueueManager) -> None:
        for name in DEMO_ENTRYPOINTS:
            qm.entrypoint(
                name,
                accepts_context=False,
                concurrency_limit=_BUILD_REPORT_LIMIT if name == "build_report" else 0,
                on_failure="hold" if name == "charge_card" else "delete",
            )(self._handler(name))

    def _handler(self, name: str) -> Callable[[Job], Awaitable[None]]:
        low, high = _LATENCY_MS[name]
        fail_rate = {"charge_card": _CHARGE_CARD_FAIL, "sync_crm": _SYNC_CRM_FAIL}.get(name, 0.0)
        rng = self._handler_rng

        async def handle(job: Job) -> None:
            await asyncio.sleep(rng.uniform(low, high) / 1000.0)
            if fail_rate and rng.random() < fail_rate:
                self._failed += 1
                if name == "charge_card":
                    raise DemoJobError(f"card declined for job {job.id} (simulated)")
                raise DemoJobError(f"CRM API timed out for job {job.id} (simulated)")
            self._processed += 1

        handle.__name__ = name
        return handle


def _payload(name: str, rng: random.Random) -> bytes:
    """Small JSON body that looks plausible for each entrypoint."""
    user = rng.randint(1, 50_000)
    body: dict[str, object]
    if name == "send_email":
        body = {"to": f"user{user}@example.com", "template": rng.choice(["welcome", "reset"])}
    elif name == "resize_image":
        body = {"image_id": rng.randint(1, 10**6), "sizes": [64, 256, 1024]}
    elif name == "sync_crm":
        body = {"account_id": user, "fields": rng.randint(1, 12)}
    elif name == "charge_card":
        body = {"customer": user, "amount_cents": rng.randint(199, 99_999), "currency": "EUR"}
    else:
        body = {"report": rng.choice(["daily", "weekly", "monthly"]), "owner": user}
    return json.dumps(body, separators=(",", ":")).encode()
