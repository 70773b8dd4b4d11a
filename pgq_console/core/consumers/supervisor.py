"""The console's in-process consumers: starting, stopping, draining and shutting them down."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pgqueuer import QueueManager
from pgqueuer.core.applications import PgQueuer
from pgqueuer.domain.types import Channel, JobId

from pgq_console.core.backend import Backend, DriverErrors
from pgq_console.core.clock import Clock, SystemClock
from pgq_console.core.consumers.capture import _ConsumerLogHandler, _ConsumerOutput, _LoopWatch
from pgq_console.core.consumers.handlers import (
    Handler,
    builtin_handler,
    load_target,
    user_handler,
)
from pgq_console.core.consumers.runtime import (
    RECONNECT_BASE_S,
    CancelOutcome,
    Consumer,
    ConsumerSnapshot,
    ConsumerState,
    _connection_gone,
    _open_consumer_connection,
    _reclaim_picked_by,
    _relay,
    listed_ids,
)
from pgq_console.core.consumers.spec import ConsumerSpec, HandlerKind, consumer_refusal
from pgq_console.core.errors import ConsoleError
from pgq_console.core.refresh_loop import backoff_delay
from pgq_console.core.text import printable_line

# How long a shutdown waits for PgQueuer to record the jobs it hands back (one UPDATE each on
# the consumer's own connection) before it gives up: those stay `picked` for stale reclaim.
RELEASE_WITHIN_S = 5.0
# How long an ending consumer tries to hand back jobs whose outcome was not recorded.
HAND_BACK_WITHIN_S = 5.0
# A consumer that finished a job this recently counts as busy (`ConsumerSupervisor.busy`).
BUSY_WITHIN_S = 1.0


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

    def busy(self) -> bool:
        """Whether a consumer runs a job now or finished one within `BUSY_WITHIN_S`."""
        recent = self.clock.monotonic() - BUSY_WITHIN_S
        for consumer in self.consumers.values():
            if consumer.in_flight or (
                consumer.last_done_mono is not None and consumer.last_done_mono >= recent
            ):
                return True
        return False

    def snapshots(self) -> list[ConsumerSnapshot]:
        return [consumer.snapshot() for consumer in self.consumers.values()]

    async def start(
        self, backend: Backend | None, spec: ConsumerSpec, *, read_only: bool = False
    ) -> Consumer:
        """Start a consumer; returns once it runs. ConsoleError (one line) if it cannot start."""
        problem = consumer_refusal(backend, read_only)
        if problem:
            raise ConsoleError(problem)
        assert backend is not None
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

        consumer.task = asyncio.create_task(
            self._supervise(consumer, body, started, backend.errors)
        )
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
        errors: DriverErrors,
    ) -> None:
        try:
            while True:
                try:
                    await body()
                    break
                except Exception as exc:
                    # A lost connection after the first start: reconnect.
                    if not started.done() or not errors.connection_lost(exc):
                        raise
                    if not await self._wait_to_reconnect(consumer, exc):
                        break  # stopped (s/x) while waiting, or out of attempts
        except Exception as exc:
            consumer.error = printable_line(exc) or type(exc).__name__
            consumer.state = ConsumerState.FAILED
            if errors.server_refused(exc):  # e.g. the role lost its privileges: the reason is all
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
            if consumer.shutdown.is_set():  # ending, not reconnecting
                await self._hand_back_unrecorded(consumer, backend, connection)
            # A connection killed mid-query can surface as any client error (asyncpg:
            # "another operation is in progress"): a closed connection says what it was.
            if lost or _connection_gone(connection):
                raise ConnectionError(
                    f"the connection to the database was lost: {printable_line(exc)}"
                ) from exc
            raise
        else:
            if consumer.shutdown.is_set():
                await self._hand_back_unrecorded(consumer, backend, connection)
        finally:
            relay.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)
        if lost and not consumer.shutdown.is_set():
            raise ConnectionError(lost[0])

    async def _hand_back_unrecorded(
        self, consumer: Consumer, backend: Any, connection: Any
    ) -> None:
        """The consumer ends: put back in the queue the jobs its managers still hold `picked`.

        Their handlers have all returned (PgQueuer's run waits for them), so these are outcomes
        PgQueuer never recorded: its last flush failed (the connection died while stopping)
        and it drops what it could not write after five tries, leaving the job `picked` by a
        manager that is gone, and nothing in this consumer's log."""
        managers = set(consumer.lost_managers)
        if consumer.queue_manager is not None:
            managers.add(consumer.queue_manager.queue_manager_id)
        if not managers:
            return
        fresh: Any = None
        try:
            if _connection_gone(connection):
                fresh = await asyncio.wait_for(
                    _open_consumer_connection(backend), HAND_BACK_WITHIN_S
                )
            queries = backend.installation.queries(backend.new_driver(fresh or connection))
            reclaimed = await asyncio.wait_for(
                _reclaim_picked_by(queries, sorted(managers, key=str)), HAND_BACK_WITHIN_S
            )
        except Exception as exc:
            consumer.log(
                "jobs whose outcome was not recorded could not be put back in the queue "
                f"({printable_line(exc) or type(exc).__name__}): they stay picked until "
                "PgQueuer re-runs them (stale heartbeat)"
            )
            return
        finally:
            if fresh is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(fresh.close(), 5)
        consumer.lost_managers.clear()
        if not reclaimed:
            return
        listed = listed_ids(reclaimed)
        consumer.log(
            f"{len(reclaimed)} job(s) whose outcome was not recorded put back in the queue: "
            f"{listed} (PgQueuer could not record how they ended: they run again)"
        )
        consumer.audit(
            f"consumer ending: {len(reclaimed)} job(s) whose outcome was not recorded put back "
            "in the queue",
            count=len(reclaimed),
            job_ids=reclaimed,
        )

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

    def cancel_running(self, consumer_id: int, job_ids: Iterable[JobId]) -> CancelOutcome:
        """Stop the consumer and cancel exactly `job_ids` among its running jobs (those the
        operator was shown); `Consumer.cancel_running`."""
        consumer = self.consumers.get(consumer_id)
        if consumer is None:
            shown = tuple(job_ids)
            return CancelOutcome(shown=shown, cancelled=(), gone=shown, spared=())
        return consumer.cancel_running(job_ids)

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
