"""Enqueueing test jobs: the form's input as pydantic models, and batched enqueue.

`parse_enqueue_form` turns the raw strings of the form into an `EnqueueRequest`, or raises
`FormErrors` with one message per field. `Enqueuer` writes the request through pgqueuer's own batch
enqueue (`Queries.enqueue` with lists, or `SyncQueries.enqueue` in a thread for the sync driver):
one INSERT statement per batch, so each batch commits whole or not at all.
"""

from __future__ import annotations

from pgq_console.core.enqueue.entrypoints import known_entrypoints, read_known_entrypoints
from pgq_console.core.enqueue.form import (
    BATCH_BYTES,
    DEFAULT_BATCH_SIZE,
    FIELDS,
    MAX_TOTAL_BYTES,
    EnqueueRequest,
    FormErrors,
    PayloadKind,
    parse_delay,
    parse_enqueue_form,
    parse_payload,
    read_payload_file,
)
from pgq_console.core.enqueue.writer import (
    CancelToken,
    EnqueueProgress,
    Enqueuer,
    EnqueueResult,
    audit_record,
    refusal,
)

__all__ = [
    "BATCH_BYTES",
    "CancelToken",
    "DEFAULT_BATCH_SIZE",
    "EnqueueProgress",
    "EnqueueRequest",
    "EnqueueResult",
    "Enqueuer",
    "FIELDS",
    "FormErrors",
    "MAX_TOTAL_BYTES",
    "PayloadKind",
    "audit_record",
    "known_entrypoints",
    "read_known_entrypoints",
    "parse_delay",
    "parse_enqueue_form",
    "parse_payload",
    "read_payload_file",
    "refusal",
]
