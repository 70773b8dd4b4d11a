"""One running consumer: its manager, its instrumented executors, its reconnects and its log."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pgqueuer import QueueManager
from pgqueuer.core.executors import AbstractEntrypointExecutor
from pgqueuer.domain.errors import RetryRequested
from pgqueuer.domain.models import Context, Job
from pgqueuer.domain.types import JobId

from pgq_console.core import audit
from pgq_console.core.clock import Clock
from pgq_console.core.consumers.capture import _current_consumer
from pgq_console.core.consumers.spec import ConsumerSpec
from pgq_console.core.text import printable, printable_line

LOG_LINES = 2000
MAX_HANDLER_THREADS = 256
# The first reconnect waits about this long, doubling up to the overview's cap.
RECONNECT_BASE_S = 1.0
RATE_WINDOW_S = 10.0


# -- one consumer ------------------------------------------------------------------------------


class ConsumerState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DRAINING = "draining"
    CANCELLING = "cancelling"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (
            ConsumerState.STARTING,
            ConsumerState.RUNNING,
            ConsumerState.DRAINING,
            ConsumerState.CANCELLING,
            ConsumerState.RECONNECTING,
        )


@dataclass(frozen=True)
class ConsumerSnapshot:
    """One consumer's row, immutable, for the UI."""

    id: int
    name: str
    entrypoints: tuple[str, ...]
    handler: str
    state: ConsumerState
    done: int
    errors: int
    retried: int
    cancelled: int
    in_flight: int  # running now (sync handlers: holding a thread)
    waiting: int  # picked, waiting for one of the consumer's threads
    rate: float
    started_at: datetime
    uptime_s: float | None  # since the connection it runs on opened; None while it has none
    error: str | None
    warning: str | None
    log_lines: int  # total ever written: the UI appends what it has not seen yet
    reconnecting: str | None = None  # "attempt 3, next in 4 s, down since 12:03:07"
    cancelling: int = 0  # jobs cancelled from the console whose handlers have not ended

    @property
    def state_text(self) -> str:
        if self.state is ConsumerState.RECONNECTING and self.reconnecting:
            return f"reconnecting ({self.reconnecting})"
        if self.state is ConsumerState.DRAINING:
            return f"draining {self.in_flight}"
        if self.state is ConsumerState.CANCELLING:
            return f"cancelling {self.cancelling}"
        if self.warning and self.state.active:
            return f"{self.state.value} ⚠"
        return self.state.value


LISTED_IDS = 20  # job ids named on one line of a consumer's log


def listed_ids(job_ids: Iterable[int], limit: int | None = LISTED_IDS) -> str:
    """`12, 13, 14` (and with a limit: `12, 13, … and 40 more`)."""
    ids = [str(job_id) for job_id in job_ids]
    if limit is None or len(ids) <= limit:
        return ", ".join(ids)
    return ", ".join(ids[:limit]) + f", … and {len(ids) - limit} more"


@dataclass(frozen=True)
class CancelOutcome:
    """What a console cancel (`x`) did, for its toast, log line and audit record."""

    shown: tuple[JobId, ...]  # the running jobs the operator was asked about
    cancelled: tuple[JobId, ...]  # those of them still running: cancelled now
    gone: tuple[JobId, ...]  # those of them that had ended meanwhile: nothing to cancel
    spared: tuple[JobId, ...]  # running now but picked after they were shown: not cancelled

    def describe(self, listed: int | None = LISTED_IDS) -> str:
        text = f"cancelling {len(self.cancelled)} running job(s)"
        if self.cancelled:
            text += f": {listed_ids(self.cancelled, listed)}"
        parts = []
        if self.gone:
            parts.append(f"{len(self.gone)} of the {len(self.shown)} shown had already ended")
        if self.spared:
            parts.append(
                f"{len(self.spared)} started after the question was asked are not cancelled "
                "and run to the end"
            )
        return "; ".join([text, *parts])


class _InstrumentedExecutor(AbstractEntrypointExecutor):
    """Counts, logs and makes cancellable (or releasable) every job of one entrypoint.

    The handler runs inline in pgqueuer's dispatch task, as PgQueuer runs it (a task of its
    own per job costs a tenth of a no-op consumer's rate). A cancel from the console cancels
    that task: pgqueuer records the job `canceled`. A release (`Consumer.release_running`, for
    shutdowns) marks the job released and cancels the task too; `execute` turns that cancel
    back (`Task.uncancel`) into RetryRequested, so pgqueuer's dispatch never sees a
    cancellation (it would log the job `canceled` and delete it) and its retry path puts the
    job back to `queued`.
    """

    def __init__(self, inner: AbstractEntrypointExecutor, consumer: Consumer) -> None:
        self.inner = inner
        self.parameters = inner.parameters
        self.consumer = consumer

    async def execute(self, job: Job, context: Context) -> None:
        consumer = self.consumer
        reason = consumer.release_reason
        if reason is not None:  # picked in the batch that was being dispatched when it came
            consumer.released += 1
            raise RetryRequested(reason=reason)
        dispatch = asyncio.current_task()
        if dispatch is not None:
            consumer.running[job.id] = dispatch
        consumer.in_flight += 1
        interrupts = consumer.interrupts
        token = _current_consumer.set(consumer)  # the handler's log lines reach this consumer
        try:
            try:
                await self.inner.execute(job, context)
            except BaseException as exc:
                if job.id not in interrupts:
                    if isinstance(exc, (asyncio.CancelledError, Exception)):
                        raise
                    # SystemExit and KeyboardInterrupt would escape the event loop and end the
                    # console (and every other consumer's jobs with it): this job's failure.
                    raise HandlerExit(
                        f"the handler raised {type(exc).__name__}({printable_line(exc)}); "
                        "recorded as this job's failure, the console keeps running"
                    ) from exc
            finally:
                _current_consumer.reset(token)
            if job.id in interrupts:
                # Cancelled or released while it ran: that decides, however the handler ended
                # (it may have caught the CancelledError, or failed while cleaning up).
                reason = interrupts[job.id]
                if reason is None:
                    raise asyncio.CancelledError
                # Released: PgQueuer's own retry path puts the job back to `queued` (attempts
                # + 1, a `queued` log row with the reason) on this consumer's connection.
                consumer.released += 1
                if dispatch is not None:  # recorded once pgqueuer's dispatch has finished
                    dispatch.uncancel()  # the release's cancel: pgqueuer's dispatch goes on
                    consumer.releasing.add(job.id)
                    dispatch.add_done_callback(lambda _task: consumer.releasing.discard(job.id))
                raise RetryRequested(reason=reason)
        except RetryRequested:
            if job.id not in interrupts:
                consumer.retried += 1
            raise
        except asyncio.CancelledError:
            # Cancelled from the console: pgqueuer's dispatcher logs the job `canceled`.
            consumer.cancelled += 1
            consumer.cancelled_ids.append(job.id)
            consumer.log(f"job {job.id} {job.entrypoint}: cancelled from the console")
            raise
        except Exception as exc:
            consumer.errors += 1
            consumer.log_exception(job, exc)
            raise
        else:
            if context.cancellation.cancel_called:
                # Cancelled elsewhere (the Jobs screen, `Queries.mark_job_as_cancelled`): the
                # handler finished anyway, but pgqueuer records it `canceled`, not done.
                consumer.cancelled += 1
                consumer.cancelled_ids.append(job.id)
                consumer.log(f"job {job.id} {job.entrypoint}: cancelled while it ran")
                return
            consumer.done += 1
            consumer.last_done_mono = consumer.clock.monotonic()
            if consumer.first_done_mono is None:
                consumer.first_done_mono = consumer.last_done_mono
        finally:
            # No await below: once a job leaves `running`, no console cancel can reach it, so
            # a cancel never interrupts pgqueuer recording the job's final status.
            consumer.running.pop(job.id, None)
            interrupts.pop(job.id, None)
            consumer.in_flight -= 1


class HandlerExit(Exception):  # noqa: N818 - it reports an exit, it is not one
    """A handler raised SystemExit, KeyboardInterrupt or another BaseException: reported as
    that job's failure (pgqueuer's usual failure path) instead of ending the console."""


# A server that refuses a new connection for a while (too many clients, the database closed
# to connections, starting up): a reconnect waits it out, as on psycopg (OperationalError) and
# as the overview does, instead of ending the consumer at its first attempt.
_PASSING_REFUSALS = ("53", "55000", "57P03")


async def _open_consumer_connection(backend: Any) -> Any:
    """A consumer's own connection (one place, so how it is opened can change in one place)."""
    try:
        return await backend.new_connection()
    except Exception as exc:
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_PASSING_REFUSALS):
            message = f"the server refused a connection: {printable_line(exc)}"
            raise ConnectionError(message) from exc
        raise


def _connection_gone(connection: Any) -> bool:
    """The connection is closed or broken (asyncpg's is_closed, psycopg's closed/broken)."""
    is_closed = getattr(connection, "is_closed", None)
    if callable(is_closed):
        return bool(is_closed())
    return bool(getattr(connection, "closed", False) or getattr(connection, "broken", False))


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


async def _reclaim_picked_by(queries: Any, queue_manager_ids: list[Any]) -> list[int]:
    """Put back in the queue the jobs still `picked` by managers whose connection died (their
    handlers have all returned; their outcome was never recorded): exactly those managers'
    rows, each with a `queued` log row, as PgQueuer's own retry writes. Returns their ids."""
    if not queue_manager_ids:
        return []
    names = queries.qbq.settings.qualified
    rows = await queries.driver.fetch(
        f"""WITH released AS (
            UPDATE {names.queue_table}
            SET status = 'queued', updated = NOW(), queue_manager_id = NULL
            WHERE status = 'picked' AND queue_manager_id = ANY($1::uuid[])
            RETURNING id, entrypoint, priority
        )
        INSERT INTO {names.queue_table_log} (job_id, status, entrypoint, priority)
        SELECT id, 'queued', entrypoint, priority FROM released
        RETURNING job_id""",
        queue_manager_ids,
    )
    return [int(row["job_id"]) for row in rows]


class Consumer:
    """A running (or finished) consumer; mutated only on the event loop."""

    def __init__(self, consumer_id: int, spec: ConsumerSpec, clock: Clock) -> None:
        self.id = consumer_id
        self.spec = spec
        self.clock = clock
        self.name = f"c{consumer_id}"
        self.state = ConsumerState.STARTING
        self.entrypoints: tuple[str, ...] = spec.entrypoints
        self.done = self.errors = self.retried = self.cancelled = self.in_flight = 0
        # Jobs handed back to PgQueuer unfinished when the console shut down.
        self.released = 0
        self.cancelled_ids: list[JobId] = []  # for the audit trail: deleted, never run again
        self.database = ""  # the label of the database it works on (audit records)
        self.releasing: set[JobId] = set()  # handed back, not yet recorded by pgqueuer
        # Sync handlers run on the consumer's own threads (never the loop's default pool, which
        # the console needs too), as many as it may run jobs at once.
        self.thread_limit = (
            min(MAX_HANDLER_THREADS, spec.concurrency_limit * max(1, len(spec.entrypoints)))
            if spec.concurrency_limit
            else 2 * spec.batch_size
        )
        self._thread_slots: asyncio.Semaphore | None = None
        self._threads_lock = threading.Lock()
        self.threads_busy = 0  # sync handlers executing now (the rest of in_flight wait)
        # Set once running jobs are to be handed back to PgQueuer (the reason).
        self.release_reason: str | None = None
        self.started_at = clock.now()
        self.started_mono = clock.monotonic()
        # Reconnecting after a lost connection; uptime counts from connected_mono.
        self.connected_since = self.started_at
        self.connected_mono: float | None = self.started_mono
        self.reconnect_attempt = 0
        self.reconnects = 0
        self.down_since: datetime | None = None
        self.next_try_mono: float | None = None
        self.lost_managers: set[Any] = set()  # queue_manager_ids whose connection died
        self.ended_mono: float | None = None
        # When the first and the latest job succeeded (rates over exactly the busy time).
        self.first_done_mono: float | None = None
        self.last_done_mono: float | None = None
        self.error: str | None = None
        self.shutdown = asyncio.Event()
        self.queue_manager: QueueManager | None = None
        self.task: asyncio.Task[None] | None = None
        # The dispatch task of each job whose handler runs now (the loop watch looks here).
        self.running: dict[JobId, asyncio.Task[Any]] = {}
        # Running jobs cancelled from the console (None) or released (the reason): `execute`
        # decides their outcome by this once the handler has ended.
        self.interrupts: dict[JobId, str | None] = {}
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.lines_written = 0
        # A printed line not finished yet, per stream and writing thread: print() writes the
        # text and its newline separately, so handlers running in threads side by side would
        # otherwise splice their lines together.
        self._output: dict[tuple[str, int], str] = {}
        self.warning: str | None = None  # e.g. a handler blocking the event loop
        self._samples: deque[tuple[float, int]] = deque()

    # -- log -------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        stamp = self.clock.now().strftime("%H:%M:%S")
        for index, line in enumerate(str(text).splitlines() or [""]):
            self.lines.append(f"{stamp if index == 0 else ' ' * len(stamp)} {printable(line)}")
            self.lines_written += 1

    def on_connected(self, reclaimed: int | None) -> None:
        """Connected again after a lost connection; `reclaimed`: jobs handed back."""
        if self.down_since is None:
            return
        down_s = (self.clock.now() - self.down_since).total_seconds()
        self.reconnects += 1
        message = (
            f"reconnected after {self.reconnect_attempt} attempt(s), down {down_s:.0f} s "
            f"since {self.down_since:%H:%M:%S}"
        )
        if reclaimed is None:
            message += (
                "; jobs in flight when the connection died stay picked until PgQueuer "
                "re-runs them (stale heartbeat)"
            )
        else:
            message += (
                f"; {reclaimed} job(s) were in flight when the connection died and their "
                "outcome was not recorded: put back in the queue to run again"
            )
        self.log(message)
        self.down_since = None
        self.reconnect_attempt = 0
        self.connected_since = self.clock.now()
        self.connected_mono = self.clock.monotonic()
        if self.state is ConsumerState.RECONNECTING:
            self.state = ConsumerState.RUNNING

    def take_output(self, stream: str, text: str, writer: int = 0) -> None:
        """What a handler printed (`writer`: its thread): complete lines go to the log, a
        partial one waits for the rest of its line from the same thread."""
        key = (stream, writer)
        pending = self._output.get(key, "") + text
        *lines, self._output[key] = pending.split("\n")
        prefix = "" if stream == "stdout" else f"{stream}: "
        for line in lines:
            self.log(prefix + line)

    def note_loop_block(self, seconds: float, where: str) -> None:
        self.warning = f"handler blocks the event loop: {seconds:.1f} s in {where}"
        self.log(
            f"{self.warning} (the whole console froze meanwhile: await asyncio.sleep, or make "
            "the handler a plain def so it runs in a thread)"
        )

    def flush_output(self) -> None:
        for (stream, writer), pending in list(self._output.items()):
            if pending:
                self.take_output(stream, "\n", writer)

    def log_exception(self, job: Job, exc: BaseException) -> None:
        """One line per failed job. The traceback is pgqueuer's to keep: it is in the job's log
        row (the job's detail shows it); here, with the console's own wrapper frames in it,
        it read like a crash of the console."""
        message = printable_line(exc)
        what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        self.log(f"job {job.id} {printable_line(job.entrypoint)} failed: {what}")

    def new_lines(self, seen: int) -> tuple[list[str], int]:
        """Lines written after the first `seen` ones (those still buffered), and the new total."""
        missing = self.lines_written - seen
        if missing <= 0:
            return [], self.lines_written
        buffered = list(self.lines)
        return buffered[-min(missing, len(buffered)) :], self.lines_written

    # -- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop picking; running jobs finish (draining), then the consumer ends."""
        if self.state is ConsumerState.RECONNECTING and not self.shutdown.is_set():
            self.log("stop requested while reconnecting: not reconnecting")
        if self.state in (ConsumerState.STARTING, ConsumerState.RUNNING):
            self.state = ConsumerState.DRAINING
            self.log(f"stop requested: draining {self.in_flight} running job(s)")
        self.shutdown.set()

    def running_ids(self) -> tuple[JobId, ...]:
        """The jobs whose handlers run now and that no cancel or release has reached yet: what
        `x` shows the operator, and the most a cancel may reach."""
        return tuple(job_id for job_id in self.running if job_id not in self.interrupts)

    def cancel_running(self, job_ids: Iterable[JobId]) -> CancelOutcome:
        """Stop picking and cancel exactly `job_ids` (the jobs the operator was shown) among
        those still running: their handlers get CancelledError at their next await and
        pgqueuer records each as `canceled`. Jobs picked after they were shown are not
        touched: they run to the end (the consumer is draining) and are counted as `spared`.
        """
        shown = tuple(dict.fromkeys(job_ids))
        self.request_stop()
        reachable = set(self.running_ids())
        cancelled = tuple(job_id for job_id in shown if job_id in reachable)
        gone = tuple(job_id for job_id in shown if job_id not in reachable)
        chosen = set(cancelled)
        spared = tuple(job_id for job_id in reachable if job_id not in chosen)
        if cancelled and self.state.active:
            self.state = ConsumerState.CANCELLING
        for job_id in cancelled:
            self.interrupts[job_id] = None
            self.running[job_id].cancel()
        outcome = CancelOutcome(shown=shown, cancelled=cancelled, gone=gone, spared=spared)
        self.log(outcome.describe(listed=None))
        self.audit(
            "consumer cancel running jobs",
            count=len(cancelled),
            previewed=len(shown),
            job_ids=cancelled,
        )
        return outcome

    @property
    def cancelling(self) -> int:
        """Jobs cancelled from the console whose handlers have not ended yet."""
        return sum(1 for reason in self.interrupts.values() if reason is None)

    def describe(self) -> str:
        listed = ", ".join(self.entrypoints) or "(no entrypoints)"
        return f"{self.name}: {self.spec.label} on {listed}"

    def audit(
        self,
        action: str,
        *,
        count: int = 0,
        job_ids: Iterable[int] = (),
        previewed: int | None = None,
    ) -> None:
        """One record in the console's audit file (core/audit.py), as every write gets;
        `previewed`: how many the operator was shown, when that is not `count`."""
        ids = tuple(int(job_id) for job_id in job_ids)
        record = audit.AuditRecord(
            action=action,
            predicate=self.describe(),
            count=count,
            previewed=count if previewed is None else previewed,
            job_ids=ids,
            database=self.database,
        )
        try:
            audit.append(record)
        except OSError as exc:
            self.log(f"the audit file could not be written: {printable_line(exc)}")

    async def run_in_thread(self, function: Callable[[], Any]) -> Any:
        """Run a sync handler on a thread of this consumer (at most `thread_limit` at once), in
        the job's context (its log).

        Daemon threads, one per job: a handler still running when its job was handed back at
        shutdown must not keep the process alive (and run on beside the job's next attempt);
        a pool's threads are joined at exit.
        """
        if self._thread_slots is None:
            self._thread_slots = asyncio.Semaphore(self.thread_limit)
        async with self._thread_slots:
            loop = asyncio.get_running_loop()
            outcome: asyncio.Future[Any] = loop.create_future()
            context = contextvars.copy_context()

            def settle(result: Any, error: BaseException | None) -> None:
                if outcome.done():  # abandoned (handed back, cancelled)
                    return
                if error is not None:
                    outcome.set_exception(error)
                else:
                    outcome.set_result(result)

            def run() -> None:
                with self._threads_lock:
                    self.threads_busy += 1
                result: Any = None
                error: BaseException | None = None
                try:
                    result = context.run(function)
                except BaseException as exc:  # SystemExit too: the job's failure, not ours
                    error = exc
                finally:
                    with self._threads_lock:
                        self.threads_busy -= 1
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(settle, result, error)

            threading.Thread(target=run, name=f"pgqc-{self.name}-handler", daemon=True).start()
            return await outcome

    @property
    def waiting_for_thread(self) -> int:
        """Jobs picked and handed to a sync handler that have no thread yet."""
        return max(0, self.in_flight - self.threads_busy) if self._thread_slots is not None else 0

    def release_running(self, reason: str) -> int:
        """Stop picking and hand the running jobs back unfinished: each handler is interrupted
        (cancelled) and its job goes back to `queued` through PgQueuer's retry path (never
        `canceled`). For shutdowns only. Returns how many were running."""
        self.request_stop()
        if self.release_reason is not None:
            return 0
        self.release_reason = reason
        released = [job_id for job_id in self.running if job_id not in self.interrupts]
        for job_id in released:  # not those cancelled from the console already
            self.interrupts[job_id] = reason
            self.running[job_id].cancel()
        if released:
            self.log(
                f"{reason}: {len(released)} unfinished job(s) interrupted and put back in the "
                "queue (queued, attempts + 1) for PgQueuer to run again"
            )
        return len(released)

    def snapshot(self) -> ConsumerSnapshot:
        now = self.clock.monotonic()
        end = self.ended_mono if self.ended_mono is not None else now
        reconnecting = None
        if self.state is ConsumerState.RECONNECTING and self.down_since is not None:
            reconnecting = f"attempt {self.reconnect_attempt}"
            if self.next_try_mono is not None:
                reconnecting += f", next in {max(0.0, self.next_try_mono - now):.0f} s"
            else:
                reconnecting += ", connecting"
            reconnecting += f", down since {self.down_since:%H:%M:%S}"
        connected = self.connected_mono
        cancelling = self.cancelling
        state = self.state
        if state is ConsumerState.CANCELLING and not cancelling:
            state = ConsumerState.DRAINING  # what is left runs to the end (picked after `x`)
        return ConsumerSnapshot(
            id=self.id,
            name=self.name,
            entrypoints=self.entrypoints,
            handler=self.spec.label,
            state=state,
            cancelling=cancelling,
            done=self.done,
            errors=self.errors,
            retried=self.retried,
            cancelled=self.cancelled,
            in_flight=self.in_flight - self.waiting_for_thread,
            waiting=self.waiting_for_thread,
            rate=self._rate(now) if self.ended_mono is None else 0.0,
            started_at=self.started_at,
            uptime_s=max(0.0, end - connected) if connected is not None else None,
            reconnecting=reconnecting,
            error=self.error,
            warning=self.warning,
            log_lines=self.lines_written,
        )

    def _rate(self, now: float) -> float:
        finished = self.done + self.errors + self.cancelled + self.retried
        samples = self._samples
        samples.append((now, finished))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        first_at, first_count = samples[0]
        if now - first_at <= 0:
            return 0.0
        return (finished - first_count) / (now - first_at)

    def instrument(self, manager: QueueManager) -> None:
        self.queue_manager = manager
        for name, executor in list(manager.entrypoint_registry.items()):
            if not isinstance(executor, _InstrumentedExecutor):
                manager.entrypoint_registry[name] = _InstrumentedExecutor(executor, self)
        self.entrypoints = tuple(str(name) for name in manager.entrypoint_registry)
