"""What a consumer runs: the form's fields, their validation, and whether this console can
run one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from pgq_console.core.backend import READ_ONLY_REFUSAL, Backend
from pgq_console.core.enqueue import FormErrors
from pgq_console.core.text import printable

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


def consumer_refusal(backend: Backend | None, read_only: bool) -> str | None:
    """Why consumers cannot run on this console, or None."""
    if backend is None:
        return "not connected yet"
    if not backend.capabilities.can_run_consumers:
        return (
            "consumers need an async driver: psycopg-sync can only enqueue "
            "(restart with --driver asyncpg-pool, asyncpg or psycopg)"
        )
    if read_only or backend.read_only:
        return f"{READ_ONLY_REFUSAL}: consumers update and delete jobs"
    if backend.autocommit_problem:
        return f"{backend.autocommit_problem}: switch it to autocommit first"
    return None
