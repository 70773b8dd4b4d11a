"""In-process PgQueuer consumers: start, drain, cancel, and watch them from the console.

Each consumer is a pgqueuer `QueueManager` on its own connection (`backend.new_connection()`),
run with `qm.run(...)` as a task on the console's event loop, so the UI's queries and the
consumer's dequeues never queue behind each other. A user factory (`module:create`, as `pgq run`
takes one) is entered and run exactly as pgqueuer's supervisor does.

Every entrypoint's executor is wrapped to count jobs, keep a per-consumer log (handler output and
tracebacks; untrusted text, the UI must not render it as markup) and make running jobs
cancellable on request. Stopping sets the manager's shutdown event: it stops picking, lets the
running jobs finish and flushes their status, so a stop neither loses a job nor runs one twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import logging
import os
import random
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pgqueuer import QueueManager
from pgqueuer.core.applications import PgQueuer
from pgqueuer.core.executors import AbstractEntrypointExecutor
from pgqueuer.domain.errors import RetryRequested
from pgqueuer.domain.models import Context, Job
from pgqueuer.domain.types import Channel, JobId
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pgq_console.core import audit
from pgq_console.core.backend import READ_ONLY_REFUSAL, AnyBackend, SyncPsycopgBackend
from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.enqueue import FormErrors
from pgq_console.core.errors import ConsoleError
from pgq_console.core.refresher import backoff_delay, connection_lost
from pgq_console.core.text import printable, printable_line

LOG_LINES = 2000
# How long a shutdown waits for PgQueuer to record the jobs it hands back (one UPDATE each on
# the consumer's own connection) before it gives up: those stay `picked` for stale reclaim.
RELEASE_WITHIN_S = 5.0
MAX_HANDLER_THREADS = 256
# The first reconnect waits about this long, doubling up to the overview's cap.
RECONNECT_BASE_S = 1.0
RATE_WINDOW_S = 10.0
_TARGET = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


class HandlerKind(StrEnum):
    NOOP = "noop"
    SLEEP = "sleep"
    LOG = "log"
    FAIL_SOMETIMES = "fail-p"
    FAIL_ALWAYS = "fail"
    USER = "handler"
    FACTORY = "factory"

    @property
    def argument_hint(self) -> str:
        return {
            HandlerKind.NOOP: "",
            HandlerKind.SLEEP: "milliseconds per job, e.g. 250",
            HandlerKind.LOG: "",
            HandlerKind.FAIL_SOMETIMES: "probability 0..1 or a percentage, e.g. 0.1 or 10%",
            HandlerKind.FAIL_ALWAYS: "",
            HandlerKind.USER: "package.module:function (async, or sync: run in a thread)",
            HandlerKind.FACTORY: "package.module:create (async context manager, as `pgq run`)",
        }[self]


HANDLER_LABELS: dict[HandlerKind, str] = {
    HandlerKind.NOOP: "no-op",
    HandlerKind.SLEEP: "sleep N ms",
    HandlerKind.LOG: "log the payload",
    HandlerKind.FAIL_SOMETIMES: "fail with probability p",
    HandlerKind.FAIL_ALWAYS: "fail always",
    HandlerKind.USER: "user handler module:function",
    HandlerKind.FACTORY: "user factory module:create",
}


def _error(message: str) -> PydanticCustomError:
    return PydanticCustomError("form", message)


def _whole(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        text = str(value).strip().replace("_", "").replace(",", "")
        if not re.fullmatch(r"[+-]?\d+", text):
            raise _error(f"{name} is a whole number from {low:,} to {high:,}")
        number = int(text)
    if not low <= number <= high:
        raise _error(f"{name} must lie between {low:,} and {high:,}")
    return number


class ConsumerSpec(BaseModel):
    """A consumer to start, validated. Build it from raw strings with `parse_consumer_form`."""

    model_config = ConfigDict(frozen=True)

    handler: HandlerKind = HandlerKind.NOOP
    entrypoints: tuple[str, ...] = ()
    argument: str = ""
    concurrency_limit: int = 0
    batch_size: int = 10
    on_failure: Literal["delete", "hold"] = "delete"
    heartbeat_timeout_s: float = 30.0
    dequeue_timeout_s: float = 30.0

    @field_validator("handler", mode="before")
    @classmethod
    def _handler(cls, value: object) -> HandlerKind:
        try:
            return HandlerKind(str(value).strip().lower() or "noop")
        except ValueError:
            kinds = ", ".join(kind.value for kind in HandlerKind)
            raise _error(f"handler is one of {kinds}") from None

    @field_validator("entrypoints", mode="before")
    @classmethod
    def _entrypoints(cls, value: object, info: ValidationInfo) -> tuple[str, ...]:
        items = value if isinstance(value, list | tuple) else re.split(r"[,\s]+", str(value))
        names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
        for name in names:
            if printable(name) != name:
                raise _error("an entrypoint name has control characters")
        if not names and info.data.get("handler") is not HandlerKind.FACTORY:
            raise _error("name at least one entrypoint (comma-separated)")
        return names

    @field_validator("argument", mode="before")
    @classmethod
    def _argument(cls, value: object, info: ValidationInfo) -> str:
        text = str(value).strip()
        kind = info.data.get("handler")
        if kind is HandlerKind.SLEEP:
            try:
                milliseconds = float(text.removesuffix("ms").strip() or "nan")
            except ValueError:
                milliseconds = float("nan")
            if not 0 <= milliseconds <= 3_600_000:
                raise _error("sleep takes milliseconds from 0 to 3,600,000, e.g. 250")
            return f"{milliseconds:g}"
        if kind is HandlerKind.FAIL_SOMETIMES:
            percent = text.endswith("%")
            try:
                probability = float(text.removesuffix("%").strip() or "nan") / (
                    100 if percent else 1
                )
            except ValueError:
                probability = float("nan")
            if not 0 <= probability <= 1:
                raise _error("failure probability is 0..1 or a percentage, e.g. 0.1 or 10%")
            return f"{probability:g}"
        if kind in (HandlerKind.USER, HandlerKind.FACTORY):
            if not _TARGET.fullmatch(text):
                raise _error(f"expected {kind.argument_hint}")
            return text
        return ""

    @field_validator("concurrency_limit", mode="before")
    @classmethod
    def _limit(cls, value: object) -> int:
        return _whole(str(value).strip() or "0", "concurrency limit (0 = none)", 0, 100_000)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch(cls, value: object) -> int:
        return _whole(str(value).strip() or "10", "batch size", 1, 10_000)

    @field_validator("on_failure", mode="before")
    @classmethod
    def _on_failure(cls, value: object) -> str:
        text = str(value).strip().lower() or "delete"
        if text not in ("delete", "hold"):
            raise _error("on failure is hold (keep for requeue) or delete")
        return text

    @field_validator("heartbeat_timeout_s", "dequeue_timeout_s", mode="before")
    @classmethod
    def _seconds(cls, value: object, info: ValidationInfo) -> float:
        text = str(value).strip().removesuffix("s").strip() or "30"
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
        if not 0.5 <= seconds <= 86_400:
            name = (info.field_name or "timeout").removesuffix("_s").replace("_", " ")
            raise _error(f"{name} is seconds from 0.5 to 86400, e.g. 30")
        return seconds

    @property
    def label(self) -> str:
        if self.handler in (HandlerKind.USER, HandlerKind.FACTORY):
            return self.argument
        if self.handler is HandlerKind.SLEEP:
            return f"sleep {self.argument}ms"
        if self.handler is HandlerKind.FAIL_SOMETIMES:
            return f"fail p={self.argument}"
        return HANDLER_LABELS[self.handler]


CONSUMER_FIELDS = (
    "handler",
    "entrypoints",
    "argument",
    "concurrency_limit",
    "batch_size",
    "on_failure",
    "heartbeat_timeout_s",
)


def parse_consumer_form(raw: Mapping[str, str]) -> ConsumerSpec:
    try:
        return ConsumerSpec.model_validate(dict(raw))
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "handler"
            errors.setdefault(name, error["msg"])
        raise FormErrors(errors) from None


def consumer_refusal(backend: AnyBackend | None, read_only: bool) -> str | None:
    """Why consumers cannot run on this console, or None."""
    if backend is None:
        return "not connected yet"
    if isinstance(backend, SyncPsycopgBackend):
        return (
            "consumers need an async driver: psycopg-sync can only enqueue "
            "(restart with --driver asyncpg-pool, asyncpg or psycopg)"
        )
    if read_only or backend.read_only:
        return f"{READ_ONLY_REFUSAL}: consumers update and delete jobs"
    if backend.autocommit_problem:
        return f"{backend.autocommit_problem}: switch it to autocommit first"
    return None


# -- loading user code ---------------------------------------------------------------------------


def load_target(target: str) -> Callable[..., Any]:
    """Import `package.module:attr` (the working directory is importable, as for `pgq run`)."""
    module_name, _, attribute = target.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        loaded: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConsoleError(f"cannot import {module_name}: {exc}") from None
    except Exception as exc:
        raise ConsoleError(
            f"importing {module_name} failed: {type(exc).__name__}: {printable_line(exc)}"
        ) from None
    for part in attribute.split("."):
        try:
            loaded = getattr(loaded, part)
        except AttributeError:
            raise ConsoleError(f"{module_name} has no attribute {attribute}") from None
    if not callable(loaded):
        raise ConsoleError(f"{target} is a {type(loaded).__name__}, not a function")
    return loaded  # type: ignore[no-any-return]


Handler = Callable[[Job, Context], Awaitable[None]]


RunInThread = Callable[[Callable[[], Any]], Awaitable[Any]]


def user_handler(function: Callable[..., Any], run_in_thread: RunInThread) -> Handler:
    """An async handler (job, ctx) around a user function: async, or sync (run by
    `run_in_thread`: pgqueuer needs async handlers and a blocking one must not stall the UI's
    event loop), with or without ctx."""
    try:
        parameters = [
            p
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        takes_context = len(parameters) >= 2
    except (TypeError, ValueError):
        takes_context = False
    if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - async callable objects
    ):

        async def run_async(job: Job, context: Context) -> None:
            await (function(job, context) if takes_context else function(job))

        return run_async

    async def run_sync(job: Job, context: Context) -> None:
        result = await run_in_thread(
            (lambda: function(job, context)) if takes_context else (lambda: function(job))
        )
        if inspect.isawaitable(result):
            await result

    return run_sync


def builtin_handler(spec: ConsumerSpec, log: Callable[[str], None]) -> Handler:
    kind = spec.handler
    if kind is HandlerKind.SLEEP:
        seconds = float(spec.argument) / 1000

        async def sleep(job: Job, context: Context) -> None:
            await asyncio.sleep(seconds)

        return sleep
    if kind is HandlerKind.LOG:

        async def log_payload(job: Job, context: Context) -> None:
            payload = (
                "(no payload)"
                if job.payload is None
                else job.payload.decode("utf-8", errors="replace")
            )
            log(f"job {job.id} {job.entrypoint}: {payload}")

        return log_payload
    if kind is HandlerKind.FAIL_SOMETIMES:
        probability = float(spec.argument)

        async def fail_sometimes(job: Job, context: Context) -> None:
            if random.random() < probability:
                raise RuntimeError(f"simulated failure (p={probability:g}) of job {job.id}")

        return fail_sometimes
    if kind is HandlerKind.FAIL_ALWAYS:

        async def fail_always(job: Job, context: Context) -> None:
            raise RuntimeError(f"simulated failure of job {job.id}")

        return fail_always

    async def noop(job: Job, context: Context) -> None:
        return None

    return noop


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
    uptime_s: float
    error: str | None
    warning: str | None
    log_lines: int  # total ever written: the UI appends what it has not seen yet
    reconnecting: str | None = None  # "attempt 3, next in 4 s, down since 12:03:07"

    @property
    def state_text(self) -> str:
        if self.state is ConsumerState.RECONNECTING and self.reconnecting:
            return f"reconnecting ({self.reconnecting})"
        if self.state is ConsumerState.DRAINING:
            return f"draining {self.in_flight}"
        if self.state is ConsumerState.CANCELLING:
            return f"cancelling {self.in_flight}"
        if self.warning and self.state.active:
            return f"{self.state.value} ⚠"
        return self.state.value


_current_consumer: contextvars.ContextVar[Consumer | None] = contextvars.ContextVar(
    "pgq_console_consumer", default=None
)


class _InstrumentedExecutor(AbstractEntrypointExecutor):
    """Counts, logs and makes cancellable (or releasable) every job of one entrypoint.

    The handler runs in a task of its own, so a shutdown can stop waiting for it and hand the
    job back to PgQueuer (`Consumer.release_running`) without cancelling pgqueuer's dispatch
    task: a cancelled dispatch is logged `canceled` and the job deleted.
    """

    def __init__(self, inner: AbstractEntrypointExecutor, consumer: Consumer) -> None:
        self.inner = inner
        self.parameters = inner.parameters
        self.consumer = consumer

    async def _isolated(self, job: Job, context: Context) -> None:
        # In a task, SystemExit and KeyboardInterrupt escape the event loop and end the console
        # (and every other consumer's jobs with it): make them this job's failure.
        try:
            await self.inner.execute(job, context)
        except (asyncio.CancelledError, Exception):
            raise
        except BaseException as exc:
            raise HandlerExit(
                f"the handler raised {type(exc).__name__}({printable_line(exc)}); "
                "recorded as this job's failure, the console keeps running"
            ) from exc

    async def execute(self, job: Job, context: Context) -> None:
        consumer = self.consumer
        release = consumer.release_signal()
        if release.done():  # picked in the batch that was being dispatched when it came
            consumer.released += 1
            raise RetryRequested(reason=release.result())
        consumer.in_flight += 1
        released = False
        token = _current_consumer.set(consumer)
        try:
            # The task copies this context: the handler's log lines reach this consumer.
            handler = asyncio.ensure_future(self._isolated(job, context))
        finally:
            _current_consumer.reset(token)
        consumer.handler_tasks.add(handler)
        handler.add_done_callback(consumer.handler_tasks.discard)
        dispatch = asyncio.current_task()
        if dispatch is not None:
            consumer.running[job.id] = dispatch
        try:
            try:
                waited: set[asyncio.Future[Any]] = {handler, release}
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                handler.cancel()
                raise
            if not handler.done():
                # Released: PgQueuer's own retry path puts the job back to `queued` (attempts
                # + 1, a `queued` log row with the reason) on this consumer's connection.
                handler.cancel()
                handler.add_done_callback(_discard_outcome)
                consumer.released += 1
                released = True
                if dispatch is not None:  # recorded once pgqueuer's dispatch has finished
                    consumer.releasing.add(job.id)
                    dispatch.add_done_callback(lambda _task: consumer.releasing.discard(job.id))
                raise RetryRequested(reason=release.result())
            handler.result()
        except RetryRequested:
            if not released:
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


def _database_refusal(exc: BaseException) -> bool:
    """The server refused (a privilege, a missing table): its message says it all."""
    import asyncpg
    import psycopg

    return isinstance(exc, asyncpg.PostgresError | psycopg.DatabaseError)


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    """An abandoned handler's late result or error is not an unretrieved-exception warning."""
    if not task.cancelled():
        task.exception()


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
        self._release: asyncio.Future[str] | None = None
        self.started_at = clock.now()
        self.started_mono = clock.monotonic()
        # Reconnecting after a lost connection (issue 18); uptime counts from connected_mono.
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
        self.running: dict[JobId, asyncio.Task[Any]] = {}
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.lines_written = 0
        self._output: dict[str, str] = {}  # a printed line not finished yet, per stream
        self.handler_tasks: set[asyncio.Task[None]] = set()  # for the loop watch
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

    def take_output(self, stream: str, text: str) -> None:
        """What a handler printed: complete lines go to the log, a partial one waits."""
        pending = self._output.get(stream, "") + text
        *lines, self._output[stream] = pending.split("\n")
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
        for stream, pending in list(self._output.items()):
            if pending:
                self.take_output(stream, "\n")

    def log_exception(self, job: Job, exc: BaseException) -> None:
        formatted = "".join(traceback.format_exception(exc)).rstrip()
        self.log(f"job {job.id} {job.entrypoint} failed: {type(exc).__name__}: {exc}\n{formatted}")

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

    def cancel_running(self) -> int:
        """Cancel the jobs still running (their handlers get CancelledError at their next
        await); pgqueuer records each as `canceled`. Returns how many."""
        self.request_stop()
        if self.state.active:
            self.state = ConsumerState.CANCELLING
        running = dict(self.running)
        for task in running.values():
            task.cancel()
        self.log(f"cancelling {len(running)} running job(s)")
        self.audit("consumer cancel running jobs", count=len(running), job_ids=list(running))
        return len(running)

    def describe(self) -> str:
        listed = ", ".join(self.entrypoints) or "(no entrypoints)"
        return f"{self.name}: {self.spec.label} on {listed}"

    def audit(self, action: str, *, count: int = 0, job_ids: Iterable[int] = ()) -> None:
        """One record in the console's audit file (core/audit.py), as every write gets."""
        ids = tuple(int(job_id) for job_id in job_ids)
        record = audit.AuditRecord(
            action=action,
            predicate=self.describe(),
            count=count,
            previewed=count,
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

    def release_signal(self) -> asyncio.Future[str]:
        """Resolved (with the reason) once running jobs are to be handed back to PgQueuer."""
        if self._release is None:
            self._release = asyncio.get_running_loop().create_future()
        return self._release

    def release_running(self, reason: str) -> int:
        """Stop picking and hand the running jobs back unfinished: each handler is interrupted
        and its job goes back to `queued` through PgQueuer's retry path (never `canceled`).
        For shutdowns only. Returns how many were running."""
        self.request_stop()
        release = self.release_signal()
        if release.done():
            return 0
        release.set_result(reason)
        count = len(self.running)
        if count:
            self.log(
                f"{reason}: {count} unfinished job(s) interrupted and put back in the queue "
                "(queued, attempts + 1) for PgQueuer to run again"
            )
        return count

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
        return ConsumerSnapshot(
            id=self.id,
            name=self.name,
            entrypoints=self.entrypoints,
            handler=self.spec.label,
            state=self.state,
            done=self.done,
            errors=self.errors,
            retried=self.retried,
            cancelled=self.cancelled,
            in_flight=self.in_flight - self.waiting_for_thread,
            waiting=self.waiting_for_thread,
            rate=self._rate(now) if self.ended_mono is None else 0.0,
            started_at=self.started_at,
            uptime_s=max(0.0, end - connected) if connected is not None else 0.0,
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


# -- the supervisor --------------------------------------------------------------------------


class _ConsumerLogHandler(logging.Handler):
    """Routes log records emitted while a consumer's job runs into that consumer's log."""

    def emit(self, record: logging.LogRecord) -> None:
        consumer = _current_consumer.get()
        if consumer is None:
            return
        try:
            consumer.log(f"{record.levelname} {record.name}: {self.format(record)}")
        except Exception:  # a log line must never break a job
            self.handleError(record)


class _ConsumerOutput:
    """sys.stdout / sys.stderr while consumers run: what a handler prints goes to the log of
    the consumer whose job is running (a context variable, so consumers never mix, threads
    included); everything else goes where it went before. Never to the TUI's terminal."""

    def __init__(self, wrapped: Any, stream: str) -> None:
        self.wrapped = wrapped
        self.stream = stream
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def write(self, text: str) -> int:
        consumer = _current_consumer.get()
        if consumer is None:
            return int(self.wrapped.write(text) or 0)
        if threading.get_ident() == self._loop_thread:
            consumer.take_output(self.stream, text)
        else:  # a sync handler's thread: the log belongs to the loop
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(consumer.take_output, self.stream, text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _current_consumer.get() is None:
            self.wrapped.flush()

    def isatty(self) -> bool:
        return False if _current_consumer.get() is not None else bool(self.wrapped.isatty())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


class _LoopWatch:
    """Names the handler that blocks the event loop (an async handler calling time.sleep).

    The loop stamps a beat every BEAT_S; a thread notices when the beat stops for longer than
    BLOCKED_AFTER_S and looks at which task the loop is running. When that is a consumer's
    handler, the stall is reported on that consumer once the loop runs again.
    """

    BEAT_S = 0.1
    BLOCKED_AFTER_S = 1.0

    def __init__(self, supervisor: ConsumerSupervisor) -> None:
        self.supervisor = supervisor
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.beat = time.monotonic()
        # (consumer, where, since): set by the thread, reported and cleared by the loop.
        self.culprit: tuple[Consumer, str, float] | None = None
        self.stopped = threading.Event()
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(self.BEAT_S, self._on_beat)
        self.thread = threading.Thread(target=self._watch, name="pgqc-loop-watch", daemon=True)
        self.thread.start()

    def _on_beat(self) -> None:
        now = time.monotonic()
        culprit, self.culprit = self.culprit, None
        if culprit is not None:
            consumer, where, since = culprit
            consumer.note_loop_block(now - since, where)
        self.beat = now
        if not self.stopped.is_set():
            self._timer = self.loop.call_later(self.BEAT_S, self._on_beat)

    def _watch(self) -> None:
        while not self.stopped.wait(self.BEAT_S):
            since = self.beat
            if self.culprit is not None or time.monotonic() - since < self.BLOCKED_AFTER_S:
                continue
            with contextlib.suppress(RuntimeError):  # dicts changing under a racy read
                task = asyncio.current_task(self.loop)
                for consumer in list(self.supervisor.consumers.values()):
                    if task is not None and task in consumer.handler_tasks:
                        where = _running_coroutine(self.loop_thread)
                        self.culprit = (consumer, where, since)
                        break

    def stop(self) -> None:
        self.stopped.set()
        if self._timer is not None:
            self._timer.cancel()


def _running_coroutine(thread_id: int) -> str:
    """The name of the innermost async function the thread is executing (no await is
    pending while it blocks, so the task's await chain does not show it: the frames do)."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_flags & inspect.CO_COROUTINE:
            return printable(frame.f_code.co_name, limit=80)
        frame = frame.f_back
    return "?"


@dataclass(frozen=True)
class ShutdownReport:
    """What a shutdown did with the jobs that were running."""

    running: int  # running when the shutdown began
    released: int  # handed back to `queued` unfinished (PgQueuer runs them again)
    unsettled: int  # still running when the console stopped waiting: left `picked`
    drain_s: float

    @property
    def finished(self) -> int:
        return max(0, self.running - self.released - self.unsettled)

    def describe(self) -> str:
        text = (
            f"{self.finished} of {self.running} running job(s) finished within "
            f"{self.drain_s:g} s; {self.released} put back in the queue"
        )
        if self.unsettled:
            text += (
                f"; {self.unsettled} left picked (PgQueuer re-runs them once their "
                "heartbeat is stale)"
            )
        return text


@dataclass
class StartOptions:
    """How the consumer's manager runs (the `pgq run` options the form offers)."""

    dequeue_timeout: timedelta
    batch_size: int
    heartbeat_timeout: timedelta
    max_concurrent_tasks: int | None = None


class ConsumerSupervisor:
    """The console's in-process consumers."""

    def __init__(
        self, resources: MutableMapping[str, Any] | None = None, clock: Clock | None = None
    ) -> None:
        self.resources: MutableMapping[str, Any] = resources if resources is not None else {}
        self.clock: Clock = clock or SystemClock()
        self.consumers: dict[int, Consumer] = {}
        self._next_id = 1
        self._log_handler: _ConsumerLogHandler | None = None
        self._hurry: asyncio.Event | None = None
        self._loop_watch: _LoopWatch | None = None
        # Reconnect attempts in a row before a consumer whose connection failed gives up.
        self.max_reconnect_attempts: int | None = None
        self._shutdown_deadline: float | None = None
        self._running_at_shutdown = 0

    def __iter__(self) -> Iterator[Consumer]:
        return iter(self.consumers.values())

    def get(self, consumer_id: int) -> Consumer | None:
        return self.consumers.get(consumer_id)

    @property
    def active(self) -> list[Consumer]:
        return [c for c in self.consumers.values() if c.state.active]

    def snapshots(self) -> list[ConsumerSnapshot]:
        return [consumer.snapshot() for consumer in self.consumers.values()]

    async def start(
        self, backend: AnyBackend | None, spec: ConsumerSpec, *, read_only: bool = False
    ) -> Consumer:
        """Start a consumer; returns once it runs. ConsoleError (one line) if it cannot start."""
        problem = consumer_refusal(backend, read_only)
        if problem:
            raise ConsoleError(problem)
        assert backend is not None and not isinstance(backend, SyncPsycopgBackend)
        target: Callable[..., Any] | None = None
        if spec.handler in (HandlerKind.USER, HandlerKind.FACTORY):
            target = await asyncio.to_thread(load_target, spec.argument)
        consumer = Consumer(self._next_id, spec, self.clock)
        consumer.database = backend.label
        self._next_id += 1
        self._install_log_capture()
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        options = StartOptions(
            dequeue_timeout=timedelta(seconds=spec.dequeue_timeout_s),
            batch_size=spec.batch_size,
            heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout_s),
        )
        if (
            target is not None
            and spec.handler is HandlerKind.USER
            and not inspect.iscoroutinefunction(target)
            and not spec.concurrency_limit
        ):
            # A sync handler picks no more jobs than it has threads: none waits picked.
            options.max_concurrent_tasks = consumer.thread_limit
        if spec.handler is HandlerKind.FACTORY:
            assert target is not None
            factory = target

            def body() -> Awaitable[None]:
                return self._run_factory(consumer, factory, options, started)

        else:
            handler = (
                user_handler(target, consumer.run_in_thread)
                if target is not None
                else builtin_handler(spec, consumer.log)
            )

            def body() -> Awaitable[None]:
                return self._run_builtin(consumer, backend, handler, options, started)

        consumer.task = asyncio.create_task(self._supervise(consumer, body, started))
        self.consumers[consumer.id] = consumer
        try:
            await asyncio.shield(started)
        except ConsoleError:
            self.consumers.pop(consumer.id, None)
            raise
        return consumer

    async def _supervise(
        self,
        consumer: Consumer,
        body: Callable[[], Awaitable[None]],
        started: asyncio.Future[None],
    ) -> None:
        try:
            while True:
                try:
                    await body()
                    break
                except Exception as exc:
                    # A lost connection after the first start: reconnect (issue 18).
                    if not started.done() or not connection_lost(exc):
                        raise
                    if not await self._wait_to_reconnect(consumer, exc):
                        break  # stopped (s/x) while waiting, or out of attempts
        except Exception as exc:
            consumer.error = printable_line(exc) or type(exc).__name__
            consumer.state = ConsumerState.FAILED
            if _database_refusal(exc):  # e.g. the role lost its privileges: the reason is all
                consumer.log(f"consumer ended: {consumer.error} ({type(exc).__name__})")
            else:
                consumer.log(
                    f"consumer ended with {type(exc).__name__}:\n"
                    + "".join(traceback.format_exception(exc)).rstrip()
                )
            if not started.done():
                started.set_exception(
                    ConsoleError(f"consumer did not start: {type(exc).__name__}: {consumer.error}")
                )
        else:
            consumer.state = ConsumerState.STOPPED
            consumer.log("stopped")
            if not started.done():  # drained before it was ever seen running
                started.set_result(None)
        finally:
            consumer.ended_mono = consumer.clock.monotonic()
            consumer.flush_output()
            if started.done() and started.exception() is None:  # it ran: say how it ended
                consumer.audit(
                    f"consumer {consumer.state.value}: done {consumer.done}, errors "
                    f"{consumer.errors}, retried {consumer.retried}, cancelled "
                    f"{consumer.cancelled}, put back in the queue {consumer.released}",
                    count=consumer.done,
                    job_ids=consumer.cancelled_ids,
                )

    async def _run_builtin(
        self,
        consumer: Consumer,
        backend: Any,
        handler: Handler,
        options: StartOptions,
        started: asyncio.Future[None],
    ) -> None:
        connection = await _open_consumer_connection(backend)
        # The manager stops when the consumer is stopped or its connection closes (asyncpg
        # says so at once: an idle consumer would only notice at its next dequeue).
        run_stop = asyncio.Event()
        lost: list[str] = []

        def on_closed(_connection: object) -> None:
            lost.append("the connection to the database was closed")
            run_stop.set()

        relay = asyncio.ensure_future(_relay(consumer.shutdown, run_stop))
        add_termination_listener = getattr(connection, "add_termination_listener", None)
        if add_termination_listener is not None:
            add_termination_listener(on_closed)
        try:
            queries = backend.installation.queries(backend.new_driver(connection))
            manager = QueueManager(
                queries,
                channel=Channel(backend.installation.channel),
                resources=self.resources,
            )
            manager.shutdown = run_stop
            await self._run_manager(consumer, manager, queries, handler, options, started)
        except Exception as exc:
            # A connection killed mid-query can surface as any client error (asyncpg:
            # "another operation is in progress"): a closed connection says what it was.
            if lost or _connection_gone(connection):
                raise ConnectionError(
                    f"the connection to the database was lost: {printable_line(exc)}"
                ) from exc
            raise
        finally:
            relay.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
        if lost and not consumer.shutdown.is_set():
            raise ConnectionError(lost[0])

    async def _run_manager(
        self,
        consumer: Consumer,
        manager: QueueManager,
        queries: Any,
        handler: Handler,
        options: StartOptions,
        started: asyncio.Future[None],
    ) -> None:
        spec = consumer.spec
        for name in spec.entrypoints:
            manager.entrypoint(
                name,
                concurrency_limit=spec.concurrency_limit,
                accepts_context=True,
                on_failure=spec.on_failure,
            )(handler)
        consumer.instrument(manager)
        await manager.verify_structure()
        if consumer.down_since is not None:
            reclaimed = await _reclaim_picked_by(queries, sorted(consumer.lost_managers))
            consumer.lost_managers.clear()
            consumer.on_connected(len(reclaimed))
            consumer.audit(
                f"consumer reconnected: {len(reclaimed)} job(s) in flight when the connection "
                "died put back in the queue",
                count=len(reclaimed),
                job_ids=reclaimed,
            )
        self._mark_running(consumer, started)
        await manager.run(
            dequeue_timeout=options.dequeue_timeout,
            batch_size=options.batch_size,
            heartbeat_timeout=options.heartbeat_timeout,
            max_concurrent_tasks=options.max_concurrent_tasks,
        )

    async def _run_factory(
        self,
        consumer: Consumer,
        factory: Callable[..., Any],
        options: StartOptions,
        started: asyncio.Future[None],
    ) -> None:
        from pgqueuer.adapters.cli.factories import validate_factory_result
        from pgqueuer.adapters.cli.supervisor import run_manager, setup_shutdown_handlers
        from pgqueuer.domain.types import QueueExecutionMode

        async with validate_factory_result(factory()) as entered:
            manager = setup_shutdown_handlers(entered, consumer.shutdown)
            if isinstance(manager, PgQueuer):
                consumer.instrument(manager.qm)
            elif isinstance(manager, QueueManager):
                consumer.instrument(manager)
            else:
                raise ConsoleError(
                    f"{consumer.spec.argument} yielded a {type(manager).__name__}; "
                    "a consumer needs a PgQueuer or a QueueManager"
                )
            consumer.on_connected(None)
            self._mark_running(consumer, started)
            await run_manager(
                manager,
                options.dequeue_timeout,
                options.batch_size,
                QueueExecutionMode.continuous,
                None,
                False,
                options.heartbeat_timeout,
            )

    async def _wait_to_reconnect(self, consumer: Consumer, exc: BaseException) -> bool:
        """After a lost connection: back off (the overview's backoff) unless stopped; False
        when the consumer is to end instead (stopped meanwhile, or out of attempts)."""
        if consumer.queue_manager is not None:  # its picked jobs: handed back on reconnect
            consumer.lost_managers.add(consumer.queue_manager.queue_manager_id)
        if consumer.shutdown.is_set():
            return False
        consumer.reconnect_attempt += 1
        if consumer.down_since is None:
            consumer.down_since = consumer.clock.now()
            consumer.log(f"connection lost: {printable_line(exc)} ({type(exc).__name__})")
        limit = self.max_reconnect_attempts
        if limit is not None and consumer.reconnect_attempt > limit:
            raise ConsoleError(
                f"gave up reconnecting after {limit} attempt(s): {printable_line(exc)}"
            ) from exc
        delay = backoff_delay(consumer.reconnect_attempt, RECONNECT_BASE_S)
        consumer.state = ConsumerState.RECONNECTING
        consumer.next_try_mono = consumer.clock.monotonic() + delay
        consumer.connected_mono = None
        consumer.log(consumer.snapshot().state_text)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consumer.shutdown.wait(), delay)
        consumer.next_try_mono = None
        if consumer.shutdown.is_set():
            consumer.log(
                "stopped while disconnected: jobs it had in flight stay picked until PgQueuer "
                "re-runs them (stale heartbeat)"
            )
            return False
        return True

    def _mark_running(self, consumer: Consumer, started: asyncio.Future[None]) -> None:
        if consumer.state is ConsumerState.STARTING:
            consumer.state = ConsumerState.RUNNING
        listed = ", ".join(consumer.entrypoints) or "(no entrypoints)"
        consumer.log(f"started: {consumer.spec.label} on {listed}")
        if not started.done():  # a reconnect is not another start (audited on its own)
            consumer.audit("consumer start")
            started.set_result(None)

    def stop(self, consumer_id: int) -> None:
        if consumer := self.consumers.get(consumer_id):
            consumer.request_stop()

    def cancel_running(self, consumer_id: int) -> int:
        consumer = self.consumers.get(consumer_id)
        return consumer.cancel_running() if consumer else 0

    def forget(self, consumer_id: int) -> None:
        """Drop a finished consumer's row."""
        consumer = self.consumers.get(consumer_id)
        if consumer is not None and not consumer.state.active:
            del self.consumers[consumer_id]

    async def wait(self, consumer_id: int, within: float | None = None) -> bool:
        """True once the consumer has ended (within `within` seconds)."""
        consumer = self.consumers.get(consumer_id)
        if consumer is None or consumer.task is None:
            return True
        done, _ = await asyncio.wait({consumer.task}, timeout=within)
        return bool(done)

    async def drain_all(self, within: float | None = None) -> bool:
        """Stop every consumer and wait for their running jobs; True if all ended in time."""
        for consumer in self.active:
            consumer.request_stop()
        tasks = {
            c.task for c in self.consumers.values() if c.task is not None and not c.task.done()
        }
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=within)
        return not pending

    def stop_picking(self) -> None:
        """Every consumer stops picking at once; running jobs go on (a shutdown's first step)."""
        for consumer in self.active:
            consumer.request_stop()

    def hurry(self) -> None:
        """Cut a running `shut_down`'s drain short: release the unfinished jobs now."""
        self._hurry_event().set()

    def _hurry_event(self) -> asyncio.Event:
        if self._hurry is None:
            self._hurry = asyncio.Event()
        return self._hurry

    async def shut_down(self, drain_s: float, reason: str) -> ShutdownReport:
        """End every consumer without losing a job, within about `drain_s` + RELEASE_WITHIN_S.

        Stop picking; let running handlers finish for up to `drain_s` seconds (or until
        `hurry`); hand every job still running back to PgQueuer (`queued`, never `canceled`);
        wait for that to be recorded. Calls after the first share its deadline.
        """
        loop = asyncio.get_running_loop()
        if self._shutdown_deadline is None:
            self._shutdown_deadline = loop.time() + drain_s
            self._running_at_shutdown = sum(c.in_flight for c in self.active)
        self.stop_picking()
        pending = {c.task for c in self.consumers.values() if c.task and not c.task.done()}
        hurry = asyncio.ensure_future(self._hurry_event().wait())
        try:
            while pending and not hurry.done():
                remaining = self._shutdown_deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*pending, hurry}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending = {task for task in pending if not task.done()}
        finally:
            hurry.cancel()
        for consumer in self.consumers.values():
            if consumer.task is not None and not consumer.task.done():
                consumer.release_running(reason)
        pending = {c.task for c in self.consumers.values() if c.task and not c.task.done()}
        if pending:
            await asyncio.wait(pending, timeout=RELEASE_WITHIN_S)
        unsettled = 0
        for consumer in self.consumers.values():
            stuck = len(consumer.running) + len(consumer.releasing)
            if consumer.task is not None and not consumer.task.done() and stuck:
                unsettled += stuck
                consumer.log(
                    f"{reason}: {stuck} job(s) could not be handed back in time; they stay "
                    "picked and PgQueuer re-runs them once their heartbeat is stale"
                )
        return ShutdownReport(
            running=self._running_at_shutdown,
            released=sum(c.released - len(c.releasing) for c in self.consumers.values()),
            unsettled=unsettled,
            drain_s=drain_s,
        )

    def _install_log_capture(self) -> None:
        if self._loop_watch is None:
            self._loop_watch = _LoopWatch(self)
        # Re-checked at every start: the TUI swaps sys.stdout while it runs.
        if not isinstance(sys.stdout, _ConsumerOutput):
            sys.stdout = _ConsumerOutput(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _ConsumerOutput):
            sys.stderr = _ConsumerOutput(sys.stderr, "stderr")
        if self._log_handler is not None:
            return
        handler = _ConsumerLogHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        # A standalone console has no logging set up: let handlers' INFO lines through to
        # the log pane. An embedding application's own configuration is left as it is.
        if len(root.handlers) == 1 and root.level > logging.INFO:
            root.setLevel(logging.INFO)
            for name in ("pgqueuer", "asyncio"):
                logging.getLogger(name).setLevel(logging.WARNING)
        self._log_handler = handler

    def close(self) -> None:
        if self._loop_watch is not None:
            self._loop_watch.stop()
            self._loop_watch = None
        for consumer in self.consumers.values():
            consumer.flush_output()
        if isinstance(sys.stdout, _ConsumerOutput):
            sys.stdout = sys.stdout.wrapped
        if isinstance(sys.stderr, _ConsumerOutput):
            sys.stderr = sys.stderr.wrapped
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None


__all__ = [
    "ConsumerSnapshot",
    "ConsumerSpec",
    "ConsumerState",
    "ConsumerSupervisor",
    "ShutdownReport",
    "HandlerKind",
    "consumer_refusal",
    "parse_consumer_form",
]
