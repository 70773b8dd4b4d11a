"""Writing an `EnqueueRequest` through pgqueuer's batch enqueue: batches, progress, cancel,
idempotent resubmission and the audit record."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pgq_console.core.actions import connection_lost
from pgq_console.core.audit import MAX_LISTED_IDS, AuditRecord
from pgq_console.core.backend import (
    READ_ONLY_REFUSAL,
    Backend,
)
from pgq_console.core.enqueue.form import DEFAULT_BATCH_SIZE, EnqueueRequest
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import error_line, printable

# -- enqueueing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueProgress:
    done: int
    total: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True)
class EnqueueResult:
    """What was written: every batch in `ids` committed; nothing else was."""

    requested: int
    ids: tuple[int, ...]
    elapsed_s: float
    cancelled: bool = False
    error: str | None = None
    # Jobs an earlier attempt of the same submission had written (their batches were skipped).
    already_written: int = 0

    @property
    def complete(self) -> bool:
        written = len(self.ids) + self.already_written
        return written == self.requested and self.error is None and not self.cancelled

    def summary(self) -> str:
        count = len(self.ids)
        rate = (
            f" ({count / self.elapsed_s:,.0f} jobs/s)" if self.elapsed_s > 0 and count > 1 else ""
        )
        head = f"Enqueued {count:,} job{'s' if count != 1 else ''}{rate}"
        if self.cancelled:
            head = f"Cancelled: enqueued {count:,} of {self.requested:,} (whole batches only)"
        elif self.error is not None:
            if count:
                head = f"Stopped after {count:,} of {self.requested:,}: {self.error}"
            else:
                head = f"Nothing enqueued: {self.error}"
        if count:
            head += f"; ids {format_ids(self.ids)}"
        if self.already_written:
            head += f"; {self.already_written:,} already written by an earlier try of this form"
        return head


def format_ids(ids: tuple[int, ...], shown: int = 5) -> str:
    if len(ids) <= shown:
        return ", ".join(str(i) for i in ids)
    return f"{', '.join(str(i) for i in ids[:3])} … {ids[-1]}"


@dataclass
class CancelToken:
    """Set by the UI; checked between batches (a batch in flight still commits whole)."""

    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


def duplicate_message(dedupe_key: str) -> str:
    return (
        f"dedupe key {printable(dedupe_key, limit=60)!r} is already taken by a queued or "
        "picked job: nothing was enqueued"
    )


def refusal(backend: Backend | None, read_only: bool) -> str | None:
    """Why this console cannot enqueue now, or None."""
    if backend is None:
        return "not connected yet"
    if read_only or backend.read_only:
        return READ_ONLY_REFUSAL
    return backend.autocommit_problem


@dataclass
class Enqueuer:
    """Batched enqueue through pgqueuer, on any of the console's drivers."""

    backend: Backend
    batch_size: int = DEFAULT_BATCH_SIZE
    monotonic: Callable[[], float] = time.perf_counter

    async def enqueue(
        self,
        request: EnqueueRequest,
        *,
        on_progress: Callable[[EnqueueProgress], None] | None = None,
        cancel: CancelToken | None = None,
        read_only: bool = False,
        submission: str | None = None,
        on_written: Callable[[list[int]], None] | None = None,
    ) -> EnqueueResult:
        """Write `request.copies` jobs in batches; never raises for database trouble.

        A dedupe key can only go with one copy, so a dedupe clash always leaves nothing
        written. Cancelling stops before the next batch.

        `submission` is the form submission's idempotency token: the first job of each batch
        carries the dedupe key `submission_key(submission, offset)` (unless the request has a
        key of its own), so submitting the same form again after a lost reply skips the batches
        already written while they are queued. A batch whose reply was lost is re-read and
        reported as an unknown outcome (and audited), never as "nothing was written".
        `on_written` gets each committed batch's ids as it lands, so a caller that is itself
        cancelled still knows them.
        """
        problem = refusal(self.backend, read_only)
        if problem:
            return EnqueueResult(request.copies, (), 0.0, error=problem)
        started = self.monotonic()
        total = request.copies
        headers = dict(request.headers) if request.headers else None
        # A pool can take two batches at once: while the server inserts one, the client encodes
        # the next. One connection serialises anyway, so it gets one at a time.
        parallel = self.backend.capabilities.parallel_enqueue
        batches: dict[int, list[int]] = {}
        pending: dict[asyncio.Task[list[int]], int] = {}
        scheduled = written = already = 0
        keys: dict[int, tuple[int, str | None]] = {}  # batch offset -> (size, its dedupe key)
        error: str | None = None
        cancelled = False
        try:
            while True:
                cancelled = cancelled or (cancel is not None and cancel.cancelled)
                while len(pending) < parallel and scheduled < total and not cancelled and not error:
                    size = min(self.batch_size, request.rows_per_batch, total - scheduled)
                    key = submission_key(submission, scheduled) if submission else None
                    if request.dedupe_key is not None:
                        key = None  # the request's own key already makes it idempotent
                    keys[scheduled] = (size, key)
                    task = asyncio.ensure_future(self._batch(request, size, headers, key))
                    pending[task] = scheduled
                    scheduled += size
                if not pending:
                    break
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    offset = pending.pop(task)
                    exc = task.exception()
                    size, key = keys[offset]
                    if exc is None:
                        batches[offset] = task.result()
                        written += len(batches[offset])
                        if on_written is not None:
                            on_written(batches[offset])
                    elif key is not None and _is_duplicate(exc):
                        already += size  # an earlier try of this submission wrote this batch
                    elif error is None and isinstance(exc, Exception) and connection_lost(exc):
                        error = await self._unknown_outcome(request, offset, size, key, exc)
                    elif error is None:
                        error = (
                            _describe(exc, request)
                            if isinstance(exc, Exception) and not isinstance(exc, ConsoleError)
                            else str(exc)
                        )
                    # One report per batch, even when two pool batches finish together.
                    if on_progress is not None and not error:
                        on_progress(EnqueueProgress(written, total, self.monotonic() - started))
        except asyncio.CancelledError:
            # Our caller is going away (the console exits under a running enqueue). A batch in
            # flight commits or fails whole on the server whatever we do: wait for its answer,
            # briefly, so that what was written is known (and audited), never guessed.
            for landed in await _settle(pending):
                if on_written is not None:
                    on_written(landed)
            raise
        finally:
            for task in pending:  # only when our own caller was cancelled
                task.cancel()
        # Two batches in flight draw from the id sequence together: sorted, ids read in order.
        ids = tuple(sorted(job_id for batch in batches.values() for job_id in batch))
        elapsed = self.monotonic() - started
        if error is not None:
            return EnqueueResult(total, ids, elapsed, error=error, already_written=already)
        return EnqueueResult(
            total,
            ids,
            elapsed,
            cancelled=cancelled and len(ids) + already < total,
            already_written=already,
        )

    async def _unknown_outcome(
        self, request: EnqueueRequest, offset: int, size: int, key: str | None, exc: Exception
    ) -> str:
        """A batch's reply was lost: re-read it by its dedupe key, audit, and say so."""
        from pgq_console.core import audit

        what = f"jobs {offset + 1:,}-{offset + size:,}"
        probe = key or request.dedupe_key
        found: list[int] = []
        if probe is None or not self.backend.capabilities.can_read:
            seen = f"the console cannot tell whether {what} were written; look before retrying"
        else:
            try:
                rows = await self.backend.read(
                    f"SELECT id FROM {self.backend.installation.settings.qualified.queue_table} "
                    "WHERE dedupe_key = $1",
                    probe,
                )
            except Exception as reread:
                seen = f"the re-read failed too ({printable(str(reread), limit=120)})"
            else:
                found = [int(r["id"]) for r in rows]
                seen = (
                    f"{what} are in the queue (the first is job {found[0]})"
                    if found
                    else f"{what} are not in the queue: not written (or already run)"
                )
        record = audit.AuditRecord(
            action="enqueue",
            predicate=f"entrypoint {request.entrypoint!r}, {what} of {request.copies:,}",
            count=size if found else 0,
            previewed=size,
            job_ids=tuple(found),
            database=self.backend.label,
            outcome="unknown",
            found=seen,
        )
        with contextlib.suppress(OSError):
            audit.append(record)
        detail = printable(error_line(exc), limit=120)
        return (
            f"the outcome is unknown: the connection was lost before the reply ({detail}). "
            f"Re-read: {seen}. Submitting the same form again skips what was written"
        )

    async def _batch(
        self,
        request: EnqueueRequest,
        size: int,
        headers: dict[str, Any] | None,
        key: str | None = None,
    ) -> list[int]:
        dedupe_keys = [key] + [None] * (size - 1) if key else [request.dedupe_key] * size
        arguments: tuple[Any, ...] = (
            [request.entrypoint] * size,
            [request.payload] * size,
            [request.priority] * size,
            [request.execute_after] * size,
            dedupe_keys,
            [headers] * size,
        )
        return await self.backend.enqueue(*arguments)


# Dedupe keys of the form's idempotency tokens start with this: see `Enqueuer.enqueue`.
SUBMISSION_KEY_PREFIX = "pgq-console-enqueue:"


def submission_key(submission: str, offset: int) -> str:
    return f"{SUBMISSION_KEY_PREFIX}{submission}:{offset}"


def _is_duplicate(exc: BaseException) -> bool:
    from pgqueuer.errors import DuplicateJobError

    return isinstance(exc, DuplicateJobError)


# A batch is bounded by the statement timeout; this is only a backstop.
IN_FLIGHT_WAIT_S = 10.0


async def _settle(pending: Mapping[asyncio.Task[list[int]], int]) -> list[list[int]]:
    """The ids of the batches in flight that commit within `IN_FLIGHT_WAIT_S`, even when the
    waiting task is cancelled again meanwhile (an app shutting down cancels more than once)."""
    if not pending:
        return []
    waiter = asyncio.ensure_future(asyncio.wait(set(pending), timeout=IN_FLIGHT_WAIT_S))
    while not waiter.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(waiter)
    return [
        task.result()
        for task in pending
        if task.done() and not task.cancelled() and task.exception() is None
    ]


def audit_record(
    request: EnqueueRequest, ids: list[int], database: str, outcome: str
) -> AuditRecord:
    """The audit line of one enqueue from the form: what was asked, what was written.

    `outcome` says how it ended (done, cancelled, stopped by quit, failed: ...)."""
    ordered = sorted(ids)
    return AuditRecord(
        action="enqueue",
        predicate=printable(
            f"{request.copies:,} × entrypoint {request.entrypoint!r}: {outcome}", limit=300
        ),
        count=len(ordered),
        previewed=request.copies,
        job_ids=tuple(ordered) if len(ordered) <= MAX_LISTED_IDS else (),
        database=database,
        entrypoint=request.entrypoint,
        first_id=ordered[0] if ordered else None,
        last_id=ordered[-1] if ordered else None,
    )


def _describe(exc: Exception, request: EnqueueRequest) -> str:
    from pgqueuer.errors import DuplicateJobError

    if isinstance(exc, DuplicateJobError) and request.dedupe_key is not None:
        return duplicate_message(request.dedupe_key)
    return printable(f"{type(exc).__name__}: {error_line(exc)}", limit=300)
