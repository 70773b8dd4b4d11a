"""Guarded write actions: preview, confirm, apply in one transaction, audit.

Every write the console makes goes through this module, so every write is previewed, confirmed,
re-checked, transactional and audited the same way:

1. `action.preview(backend)` reads (read-only transaction) what the action would touch and
   returns an `ActionPreview`: the exact count, the keys it will touch (`ids`), a few sample
   rows, the statement it will run and a human description of the predicate.
2. The UI (`screens/action_confirm.py`, `ActionConfirmScreen`) shows the preview; above
   `TYPED_CONFIRMATION_ABOVE` rows the operator must type the count. An optional reason is asked.
3. `await execute(backend, action, preview, typed=..., reason=...)` checks the confirmation,
   refuses in read-only mode, then calls `action.apply(tx, preview)` inside ONE
   `backend.transaction()`, announces the write on the audit channel inside the same
   transaction (delivered only on commit), and after commit appends the audit line
   (core/audit.py). It returns an `ActionResult` ("previewed N, changed M").

Row actions (`RowAction`) re-check the preview's predicate at apply time and only touch rows
that were previewed AND still match AND are not locked right now:

    WITH target AS MATERIALIZED (
        SELECT job.id FROM <table> AS job
        WHERE job.id = ANY($1::bigint[]) AND (<predicate>)
        ORDER BY job.id FOR UPDATE SKIP LOCKED)
    <the action's write, over `target`, ending in SELECT id ...>

so a worker racing the action (dequeue, completion, a second console) is never double-touched:
a row it locked is skipped, a row it changed no longer matches. `changed <= previewed` always.

How to add an action
--------------------
A write over rows of one table: subclass `RowAction` and give it

* `name` (audit/palette id, e.g. "reclaim"), `title` ("Reclaim stale jobs"), `verb` ("reclaim");
* `table` (qualified, from `backend.installation.settings.qualified`) and `predicate`
  (a `Predicate`: SQL over the alias `job` with `$1..$n` placeholders, its args, a description);
* `write_sql()`: the statement's tail after the `target` CTE; it must end with a SELECT that
  returns the touched (or created) ids as column `id`. `$1` is the previewed ids; the
  predicate's own placeholders are shifted by one (use `self.arg(n)` for extra args you add
  in `extra_args()`);
* optionally `after_write(tx, changed_ids)` for NOTIFYs that belong to the same transaction
  (`notify_table_changed` wakes idle workers; `notify_cancellation` is PgQueuer's cancel).

Anything else (schema upgrade, a schedule change): subclass `Action` and implement `preview`
and `apply` yourself; `execute()` still gives you confirmation, read-only refusal and the audit.
Register a palette command and a key in the screen, open `ActionConfirmScreen(action)`.
"""

from __future__ import annotations

from pgq_console.core.actions.base import (
    Action,
    ActionPreview,
    ActionResult,
    OutcomeUnknown,
    Predicate,
    confirmation_problem,
    connection_lost,
    execute,
    ids_predicate,
)
from pgq_console.core.actions.queue import (
    CancelAction,
    RequeueAction,
    _QueueAction,
    cancel,
    copy,
    requeue,
)
from pgq_console.core.actions.rows import notify_table_changed

__all__ = [
    "Action",
    "ActionPreview",
    "ActionResult",
    "CancelAction",
    "OutcomeUnknown",
    "Predicate",
    "RequeueAction",
    "_QueueAction",
    "cancel",
    "confirmation_problem",
    "connection_lost",
    "copy",
    "execute",
    "ids_predicate",
    "notify_table_changed",
    "requeue",
]
