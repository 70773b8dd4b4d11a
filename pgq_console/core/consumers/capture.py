"""Where a running job's output goes: the root logger's records, stdout/stderr, and the
watch that names a handler blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pgq_console.core.text import printable

if TYPE_CHECKING:
    from pgq_console.core.consumers.runtime import Consumer
    from pgq_console.core.consumers.supervisor import ConsumerSupervisor


_current_consumer: contextvars.ContextVar[Consumer | None] = contextvars.ContextVar(
    "pgq_console_consumer", default=None
)


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
        writer = threading.get_ident()
        if writer == self._loop_thread:
            consumer.take_output(self.stream, text, writer)
        else:  # a sync handler's thread: the log belongs to the loop
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(consumer.take_output, self.stream, text, writer)
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
                    # A job's dispatch task is in `running` exactly while its handler runs.
                    if task is not None and task in list(consumer.running.values()):
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
class LoggingState:
    """Level, handlers and propagation of the loggers the console may change while it runs
    (the consumers' capture above changes the root logger): the console's exit restores them."""

    loggers: tuple[tuple[logging.Logger, int, tuple[logging.Handler, ...], bool], ...]

    NAMES: ClassVar[tuple[str, ...]] = ("", "pgqueuer", "asyncio")

    @classmethod
    def capture(cls) -> LoggingState:
        return cls(
            tuple(
                (logger, logger.level, tuple(logger.handlers), logger.propagate)
                for logger in map(logging.getLogger, cls.NAMES)
            )
        )

    def restore(self) -> None:
        for logger, level, handlers, propagate in self.loggers:
            logger.setLevel(level)
            logger.propagate = propagate
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
