"""Fault-injection plumbing: a restartable throwaway server, a producer and a real PgQueuer worker
that survive restarts, and the accounting of every job enqueued before and during the faults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import asyncpg
from pgqueuer import QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

from pgq_console.core.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)
ENTRYPOINT = "resilient"


@dataclass
class RestartableServer:
    """An embedded server on a kept data directory: stop/start keeps the same socket URI."""

    data_dir: Path
    server: EmbeddedPostgres | None = None
    uri: str = ""

    def start(self) -> str:
        self.server = EmbeddedPostgres(data_dir=self.data_dir)
        uri = self.server.start()
        assert not self.uri or uri == self.uri, "the restarted server moved"
        self.uri = uri
        return uri

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def database(self, name: str) -> str:
        assert self.server is not None
        return self.server.create_database(name)


@contextlib.contextmanager
def restartable_server() -> Iterator[RestartableServer]:
    # Not pytest's tmp_path: concurrent pytest runs on this machine prune each other's old
    # numbered base directories, data directory included.
    root = Path(tempfile.mkdtemp(prefix="pgqc-restart-"))
    server = RestartableServer(root / "pgdata")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Traffic:
    """A producer and a worker that keep going across outages, and what they saw."""

    dsn: str
    enqueued: set[int] = field(default_factory=set)  # ids whose enqueue committed
    completed: list[int] = field(default_factory=list)  # handler runs that finished
    stop_producing: asyncio.Event = field(default_factory=asyncio.Event)
    stop_working: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._produce()), asyncio.create_task(self._work())]

    async def _produce(self) -> None:
        while not self.stop_producing.is_set():
            try:
                connection = await asyncpg.connect(self.dsn, timeout=3)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            try:
                queries = Queries(AsyncpgDriver(connection))
                while not self.stop_producing.is_set():
                    ids = await queries.enqueue([ENTRYPOINT] * 3, [b"x"] * 3, [0] * 3)
                    self.enqueued.update(int(i) for i in ids)
                    await asyncio.sleep(0.05)
            except Exception as exc:  # the outage: reconnect
                log.info("producer lost its connection: %s", exc)
            finally:
                with contextlib.suppress(Exception):
                    connection.terminate()

    async def _work(self) -> None:
        while not self.stop_working.is_set():
            try:
                connection = await asyncpg.connect(self.dsn, timeout=3)
            except Exception:
                await asyncio.sleep(0.2)
                continue
            qm = QueueManager(Queries(AsyncpgDriver(connection)))

            @qm.entrypoint(ENTRYPOINT)
            async def handle(job: Job) -> None:
                self.completed.append(int(job.id))

            watcher = asyncio.create_task(self._stop_when_told(qm))
            try:
                await qm.run(
                    dequeue_timeout=timedelta(seconds=1),
                    batch_size=10,
                    # Jobs picked when the server went away are re-picked as stale soon after.
                    heartbeat_timeout=timedelta(seconds=2),
                )
            except Exception as exc:
                log.info("worker lost its connection: %s", exc)
            finally:
                watcher.cancel()
                with contextlib.suppress(Exception):
                    connection.terminate()
            await asyncio.sleep(0.2)

    async def _stop_when_told(self, qm: QueueManager) -> None:
        await self.stop_working.wait()
        qm.shutdown.set()

    async def stop(self) -> None:
        self.stop_producing.set()
        self.stop_working.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)


async def account(dsn: str, ids: set[int]) -> dict[str, set[int]]:
    """Where every job is: completed (logged successful), queued, picked or held.

    The log and the queue are read in one snapshot: PgQueuer records a job's outcome by
    deleting its queue row and writing its log row in one statement, so two reads one after
    the other miss a job recorded between them (neither picked nor logged: "lost")."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            done = {
                int(r["job_id"])
                for r in await connection.fetch(
                    "SELECT DISTINCT job_id FROM pgqueuer_log"
                    " WHERE status = 'successful' AND job_id = ANY($1::bigint[])",
                    list(ids),
                )
            }
            live = await connection.fetch(
                "SELECT id, status::text AS s FROM pgqueuer WHERE id = ANY($1::bigint[])",
                list(ids),
            )
    finally:
        await connection.close()
    where: dict[str, set[int]] = {
        "completed": done,
        "queued": set(),
        "picked": set(),
        "held": set(),
    }
    for row in live:
        where[{"failed": "held"}.get(row["s"], row["s"])].add(int(row["id"]))
    where["missing"] = ids - set().union(*where.values())
    return where


async def install(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()
