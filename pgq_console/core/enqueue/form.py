"""The enqueue form's input as pydantic models: delays, payloads, bounds, one error per field."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

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
