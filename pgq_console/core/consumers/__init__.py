"""In-process PgQueuer consumers: start, drain, cancel, and watch them from the console.

Each consumer is a pgqueuer `QueueManager` on its own connection (`backend.new_connection()`),
run with `qm.run(...)` as a task on the console's event loop, so the UI's queries and the
consumer's dequeues never queue behind each other. A user factory (`module:create`, as `pgq run`
takes one) is entered and run exactly as pgqueuer's supervisor does.

Every entrypoint's executor is wrapped to count jobs, keep a per-consumer log (handler output and
one line per failed job, whose traceback pgqueuer keeps in its log table; untrusted text, the
UI must not render it as markup) and make running jobs
cancellable on request. Stopping sets the manager's shutdown event: it stops picking, lets the
running jobs finish and flushes their status, so a stop neither loses a job nor runs one twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgq_console.core.consumers.runtime import (
        CancelOutcome,
        Consumer,
        ConsumerSnapshot,
        ConsumerState,
    )
    from pgq_console.core.consumers.spec import (
        CONSUMER_FIELDS,
        HANDLER_LABELS,
        ConsumerSpec,
        HandlerKind,
        consumer_refusal,
        parse_consumer_form,
    )
    from pgq_console.core.consumers.supervisor import (
        RELEASE_WITHIN_S,
        ConsumerSupervisor,
        ShutdownReport,
    )

# Imported on first use, not with the package: the console's first paint needs none of it (the
# supervisor is created when a consumer is started or asked about; `context.py`), and
# `capture` (the app's logging state) is imported without the rest.
_WHERE = {
    "CancelOutcome": "runtime",
    "Consumer": "runtime",
    "ConsumerSnapshot": "runtime",
    "ConsumerState": "runtime",
    "CONSUMER_FIELDS": "spec",
    "HANDLER_LABELS": "spec",
    "ConsumerSpec": "spec",
    "HandlerKind": "spec",
    "consumer_refusal": "spec",
    "parse_consumer_form": "spec",
    "RELEASE_WITHIN_S": "supervisor",
    "ConsumerSupervisor": "supervisor",
    "ShutdownReport": "supervisor",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CONSUMER_FIELDS",
    "CancelOutcome",
    "Consumer",
    "ConsumerSnapshot",
    "ConsumerSpec",
    "ConsumerState",
    "ConsumerSupervisor",
    "HANDLER_LABELS",
    "HandlerKind",
    "RELEASE_WITHIN_S",
    "ShutdownReport",
    "consumer_refusal",
    "parse_consumer_form",
]
