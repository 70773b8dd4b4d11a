"""Enqueueing test jobs: the form's input as pydantic models, and batched enqueue.

`parse_enqueue_form` turns the raw strings of the form into an `EnqueueRequest`, or raises
`FormErrors` with one message per field. `Enqueuer` writes the request through pgqueuer's own batch
enqueue (`Queries.enqueue` with lists, or `SyncQueries.enqueue` in a thread for the sync driver):
one INSERT statement per batch, so each batch commits whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from pgq_console.core.actions import connection_lost
from pgq_console.core.audit import MAX_LISTED_IDS, AuditRecord
from pgq_console.core.backend import (
    READ_ONLY_REFUSAL,
    AnyBackend,
    AsyncpgPoolBackend,
    Backend,
    SyncPsycopgBackend,
)
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import printable

MAX_COPIES = 1_000_000
DEFAULT_BATCH_SIZE = 5_000
# One INSERT carries at most this much (the client builds each statement whole in memory, and
# PostgreSQL refuses a message over 1 GB): a big payload goes a few rows per batch, and a
# batch in flight, which esc waits for, stays short.
BATCH_BYTES = 16 * 1024 * 1024
# payload × copies above this is refused in the form: a typo, not a test.
MAX_TOTAL_BYTES = 1024 * 1024 * 1024
# What a row costs besides its payload, headers, entrypoint and dedupe key (ids, timestamps...).
ROW_OVERHEAD_BYTES = 100
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_ENTRYPOINT_CHARS = 200
INT32 = (-(2**31), 2**31 - 1)
# Longest delay PostgreSQL's interval arithmetic and the UI can sensibly take.
MAX_DELAY = timedelta(days=3650)

FIELDS = (
    "entrypoint",
    "payload_kind",
    "payload",
    "priority",
    "execute_after",
    "dedupe_key",
    "headers",
    "copies",
)


class PayloadKind(StrEnum):
    JSON = "json"
    TEXT = "text"
    HEX = "hex"
    FILE = "file"


def _error(message: str) -> PydanticCustomError:
    # A custom error keeps pydantic's "Value error, " prefix out of the operator's view.
    return PydanticCustomError("form", message)


_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def parse_delay(text: str, now: datetime) -> timedelta:
    """`30s`, `5m`, `1h30m`, `2d`, `+90` (seconds), `now`/empty, or an absolute time.

    Absolute: ISO 8601 (`2026-11-24T18:00`, `2026-11-24 18:00:00+01:00`) or `HH:MM[:SS]`
    (the next such time). Times without an offset are UTC. ValueError with a readable reason.
    """
    value = text.strip().lower()
    if value in ("", "now", "0"):
        return timedelta(0)
    relative = value.removeprefix("in ").removeprefix("+").strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", relative):
        return _bounded(timedelta(seconds=float(relative)))
    parts = _DURATION.findall(relative)
    if parts and _DURATION.sub("", relative).strip() == "":
        seconds = sum(float(number) * _UNITS[unit.lower()] for number, unit in parts)
        return _bounded(timedelta(seconds=seconds))
    clock = _CLOCK.fullmatch(value)
    if clock:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"{text.strip()!r} is not a time of day")
        at = now.astimezone(UTC).replace(hour=hour, minute=minute, second=second, microsecond=0)
        if at <= now:
            at += timedelta(days=1)
        return at - now
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot read {printable(text.strip(), limit=30)!r} as a delay: "
            "use 30s, 5m, 1h30m, 2d, 18:00 or 2026-11-24T18:00"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    if at <= now:
        raise ValueError(f"{at.isoformat()} is in the past")
    return _bounded(at - now)


def _bounded(delay: timedelta) -> timedelta:
    if delay > MAX_DELAY:
        raise ValueError("a delay longer than 10 years is surely a typo")
    return delay


def read_payload_file(path_text: str) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES. Devices (/dev/zero never ends), FIFOs
    (opening one waits for a writer) and directories are refused before a byte is read."""
    path = Path(path_text.strip()).expanduser()
    shown = printable(str(path))
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says what it is.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except IsADirectoryError:
        raise ValueError(f"{shown} is a directory") from None
    except OSError as exc:
        raise ValueError(f"cannot read {shown}: {exc.strerror or type(exc).__name__}") from None
    status = os.fstat(descriptor)
    problem = None
    if stat.S_ISDIR(status.st_mode):
        problem = f"{shown} is a directory"
    elif not stat.S_ISREG(status.st_mode):
        problem = f"{shown} is not a regular file (a device, FIFO or socket)"
    elif status.st_size > MAX_FILE_BYTES:
        problem = f"{shown} is {status.st_size:,} bytes; the limit is {MAX_FILE_BYTES:,}"
    if problem:
        os.close(descriptor)
        raise ValueError(problem)
    with os.fdopen(descriptor, "rb") as file:
        try:
            data = file.read(MAX_FILE_BYTES + 1)  # a file that grows meanwhile stays bounded
        except OSError as exc:
            raise ValueError(f"cannot read {shown}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"{shown} is larger than the limit of {MAX_FILE_BYTES:,} bytes")
    return data


def parse_payload(kind: PayloadKind, text: str) -> bytes | None:
    """The payload bytes (None when empty); ValueError with a readable reason."""
    if kind is PayloadKind.FILE:
        path_text = text.strip()
        if not path_text:
            return None
        return read_payload_file(path_text)
    if text == "":
        return None
    if kind is PayloadKind.JSON:
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise ValueError("invalid JSON: nested too deeply") from None
        return text.encode()
    if kind is PayloadKind.HEX:
        digits = re.sub(r"\s+", "", text)
        digits = digits[2:] if digits[:2].lower() == "0x" else digits
        try:
            return bytes.fromhex(digits)
        except ValueError:
            if len(digits) % 2:
                raise ValueError("hex payload has an odd number of digits") from None
            raise ValueError("hex payload has a character that is not 0-9 or a-f") from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise ValueError("text payload has an unpaired surrogate character") from None


class EnqueueRequest(BaseModel):
    """What the form asks for, validated. Build it from raw strings with `parse_enqueue_form`."""

    model_config = ConfigDict(frozen=True)

    entrypoint: str
    payload_kind: PayloadKind = PayloadKind.JSON
    payload: bytes | None = None
    priority: int = 0
    execute_after: timedelta = timedelta(0)
    dedupe_key: str | None = None
    headers: dict[str, Any] | None = None
    copies: int = 1

    @field_validator("entrypoint", mode="before")
    @classmethod
    def _entrypoint(cls, value: object) -> str:
        text = str(value).strip()
        if not text:
            raise _error("entrypoint is required")
        if len(text) > MAX_ENTRYPOINT_CHARS:
            raise _error(f"entrypoint is longer than {MAX_ENTRYPOINT_CHARS} characters")
        if printable(text) != text or "\x00" in text:
            # Invisible ones too: `send_email\u2060` would read as `send_email` everywhere.
            raise _error("entrypoint has control or invisible characters (e.g. \\u2060)")
        return text

    @field_validator("payload_kind", mode="before")
    @classmethod
    def _payload_kind(cls, value: object) -> PayloadKind:
        try:
            return PayloadKind(str(value).strip().lower() or "json")
        except ValueError:
            raise _error("payload kind is one of json, text, hex, file") from None

    @field_validator("payload", mode="before")
    @classmethod
    def _payload(cls, value: object, info: ValidationInfo) -> bytes | None:
        if value is None or isinstance(value, bytes):
            return value
        kind = info.data.get("payload_kind")
        if kind is None:
            raise _error("choose a payload kind first")
        try:
            return parse_payload(kind, str(value))
        except ValueError as exc:
            raise _error(str(exc)) from None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip() or "0"
            if not re.fullmatch(r"[+-]?\d+", text):
                raise _error("priority is a whole number, e.g. 0, 10 or -5 (higher runs first)")
            number = int(text)
        if not INT32[0] <= number <= INT32[1]:
            raise _error(f"priority must lie between {INT32[0]} and {INT32[1]}")
        return number

    @field_validator("execute_after", mode="before")
    @classmethod
    def _execute_after(cls, value: object, info: ValidationInfo) -> timedelta:
        if isinstance(value, timedelta):
            return value
        context = info.context or {}
        now = context.get("now") or datetime.now(UTC)
        try:
            return parse_delay(str(value), now)
        except (ValueError, OverflowError) as exc:
            raise _error(str(exc) or "cannot read the delay") from None

    @field_validator("dedupe_key", mode="before")
    @classmethod
    def _dedupe_key(cls, value: object) -> str | None:
        if value is None:
            return None
        text = str(value)
        if not text.strip():
            return None
        if "\x00" in text:
            raise _error("dedupe key has a NUL character, which PostgreSQL text cannot hold")
        if not _encodable(text):
            raise _error("dedupe key has an unpaired surrogate character")
        return text

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: object) -> dict[str, Any] | None:
        if value is None or isinstance(value, dict):
            return value
        text = str(value).strip()
        if not text:
            return None
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(
                f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except RecursionError:
            raise _error("invalid JSON: nested too deeply") from None
        if not isinstance(parsed, dict):
            raise _error(
                f'headers must be a JSON object like {{"k": "v"}}, not {_json_kind(parsed)}'
            )
        if "\\u0000" in text:
            raise _error("headers contain \\u0000, which PostgreSQL jsonb cannot hold")
        if not _encodable(json.dumps(parsed, ensure_ascii=False)):
            raise _error("headers contain an unpaired surrogate character (e.g. \\ud800)")
        try:  # Python reads NaN, Infinity and 1e400 (as inf); jsonb refuses them at enqueue
            json.dumps(parsed, allow_nan=False)
        except ValueError:
            raise _error("headers contain NaN, Infinity or a number too large for jsonb") from None
        return parsed

    @field_validator("copies", mode="before")
    @classmethod
    def _copies(cls, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip().replace(",", "").replace("_", "") or "1"
            if not re.fullmatch(r"[+-]?\d+", text):
                raise _error("copies is a whole number from 1 to 1,000,000")
            number = int(text)
        if number < 1:
            raise _error("copies must be at least 1")
        if number > MAX_COPIES:
            raise _error(f"copies is at most {MAX_COPIES:,}")
        return number

    @_model_validator(mode="after")
    def _dedupe_with_copies(self) -> EnqueueRequest:
        if self.dedupe_key is not None and self.copies > 1:
            raise PydanticCustomError(
                "form",
                "a dedupe key allows one queued job: copies must be 1 (or clear the key)",
            )
        total = self.row_bytes * self.copies
        if total > MAX_TOTAL_BYTES:
            raise PydanticCustomError(
                "form",
                f"payload × copies is {_size(total)}; the limit is {_size(MAX_TOTAL_BYTES)}: "
                "fewer copies or a smaller payload",
            )
        return self

    @property
    def row_bytes(self) -> int:
        """About what one job weighs on the wire (and in the client's statement buffer)."""
        headers = len(json.dumps(self.headers)) if self.headers else 0
        return (
            len(self.payload or b"")
            + headers
            + len(self.entrypoint.encode())
            + len((self.dedupe_key or "").encode(errors="replace"))
            + ROW_OVERHEAD_BYTES
        )

    @property
    def rows_per_batch(self) -> int:
        """How many jobs one INSERT may carry without exceeding `BATCH_BYTES` (at least one)."""
        return max(1, BATCH_BYTES // self.row_bytes)


def _size(count: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= factor:
            return f"{count / factor:,.1f} {unit}"
    return f"{count:,} bytes"


def _encodable(text: str) -> bool:
    """False for a lone surrogate (typed, or a JSON \\ud800 escape): not valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


@dataclass(frozen=True)
class FormErrors(Exception):
    """One operator-facing message per field name (see FIELDS)."""

    by_field: Mapping[str, str]

    def __str__(self) -> str:
        return "; ".join(f"{name}: {message}" for name, message in self.by_field.items())


def parse_enqueue_form(raw: Mapping[str, object], now: datetime) -> EnqueueRequest:
    """Validate the form's raw strings; FormErrors (by field) if anything is wrong."""
    try:
        return EnqueueRequest.model_validate(dict(raw), context={"now": now})
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for error in exc.errors():
            location = error["loc"]
            # The cross-field rule (dedupe key with copies) belongs next to the copies field.
            name = str(location[0]) if location else "copies"
            errors.setdefault(name, error["msg"])
        raise FormErrors(errors) from None


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


def refusal(backend: AnyBackend | None, read_only: bool) -> str | None:
    """Why this console cannot enqueue now, or None."""
    if backend is None:
        return "not connected yet"
    if read_only or (isinstance(backend, Backend) and backend.read_only):
        return READ_ONLY_REFUSAL
    return backend.autocommit_problem


@dataclass
class Enqueuer:
    """Batched enqueue through pgqueuer, on any of the console's drivers."""

    backend: AnyBackend
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
        parallel = 2 if isinstance(self.backend, AsyncpgPoolBackend) else 1
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
        if probe is None or not isinstance(self.backend, Backend):
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
        detail = printable(" ".join(str(exc).split()) or type(exc).__name__, limit=120)
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
        if isinstance(self.backend, SyncPsycopgBackend):
            if self.backend.connection.closed:
                # The sync connection is never replaced: nothing can be sent, so the outcome is
                # known (nothing written), unlike a reply lost on the way back.
                raise ConsoleError(
                    "the connection to the database is lost: nothing was sent; "
                    "restart the console to reconnect"
                )
            return await self.backend.enqueue(*arguments)
        job_ids = await self.backend.queries.enqueue(*arguments)
        return [int(i) for i in job_ids]


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
    text = " ".join(str(exc).split()) or type(exc).__name__
    return printable(f"{type(exc).__name__}: {text}", limit=300)


# -- entrypoint suggestions -------------------------------------------------------------------


def known_entrypoints_sql(backend: AnyBackend) -> str:
    """Entrypoints seen in the queue (skip scan over the queued index), recent log, statistics
    and schedules; cheap on a million-row queue."""
    names = backend.installation.settings.qualified
    return f"""
WITH RECURSIVE queued(entrypoint) AS (
    (SELECT entrypoint FROM {names.queue_table} WHERE status = 'queued'
        ORDER BY entrypoint LIMIT 1)
    UNION ALL
    SELECT (SELECT q.entrypoint FROM {names.queue_table} q
            WHERE q.status = 'queued' AND q.entrypoint > queued.entrypoint
            ORDER BY q.entrypoint LIMIT 1)
    FROM queued WHERE queued.entrypoint IS NOT NULL
)
SELECT entrypoint FROM queued WHERE entrypoint IS NOT NULL
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.queue_table}
    WHERE status <> 'queued' LIMIT 10000) others
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.queue_table_log}
    ORDER BY id DESC LIMIT 5000) recent
UNION SELECT entrypoint FROM (SELECT entrypoint FROM {names.statistics_table}
    ORDER BY id DESC LIMIT 5000) stats
UNION SELECT entrypoint FROM {names.schedules_table}
ORDER BY 1 LIMIT 500
"""


async def known_entrypoints(backend: AnyBackend) -> list[str]:
    """Entrypoint names for the form's suggestions; [] if they cannot be read."""
    try:
        if isinstance(backend, SyncPsycopgBackend):
            if backend.autocommit_problem:
                return []
            stats = await backend.queue_size()
            return sorted({stat.entrypoint for stat in stats})
        if backend.autocommit_problem:
            return []
        rows = await backend.read(known_entrypoints_sql(backend))
        return [str(row["entrypoint"]) for row in rows]
    except Exception:  # suggestions are a nicety: the form works without them
        return []
