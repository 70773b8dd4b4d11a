"""Loading user code (`module:attr`) and wrapping it, or a built-in handler, as an
entrypoint."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from pgqueuer.domain.models import Context, Job

from pgq_console.core.consumers.spec import ConsumerSpec, HandlerKind
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import printable

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
            f"importing {module_name} failed: {type(exc).__name__}: {_one_line(exc)}"
        ) from None
    for part in attribute.split("."):
        try:
            loaded = getattr(loaded, part)
        except AttributeError:
            raise ConsoleError(f"{module_name} has no attribute {attribute}") from None
    if not callable(loaded):
        raise ConsoleError(f"{target} is a {type(loaded).__name__}, not a function")
    return loaded  # type: ignore[no-any-return]


def _one_line(exc: BaseException) -> str:
    return printable(" ".join(str(exc).split()), limit=300)


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
