"""The action contract: predicates, previews, results, confirmation, and `execute` (one
transaction, audited, with unknown outcomes reported as such)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgq_console.core import audit
from pgq_console.core.backend import READ_ONLY_REFUSAL
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import error_line

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx


# Above this many rows the operator types the number to confirm.
TYPED_CONFIRMATION_ABOVE = 100
# One action touches at most this many rows; the preview says when more match.
ACTION_ROW_CAP = 50_000
SAMPLE_SIZE = 5
# NOTIFY payloads must stay below 8000 bytes: cancellation events carry at most this many ids.
_IDS_PER_NOTIFY = 400

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Predicate:
    """A boolean SQL expression over the alias `job`, `$1..$n` bound to `args`, and its meaning."""

    sql: str
    args: tuple[object, ...] = ()
    description: str = ""

    def shifted(self, by: int) -> str:
        """The SQL with every `$n` renumbered to `$(n + by)`, to follow other parameters."""
        return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + by}", self.sql)

    def and_(self, other: Predicate) -> Predicate:
        """Both predicates; `other`'s placeholders follow this one's.

        An empty predicate is a bug upstream (a filter word that parsed to nothing): dropping
        it would widen the result to everything, so it is refused instead.
        """
        if not self.sql.strip() or not other.sql.strip():
            raise ValueError("an empty predicate cannot be combined: it would match everything")
        sql = f"({self.sql}) AND ({other.shifted(len(self.args))})"
        # "held (failed) and held" says one thing twice: a description the other already
        # contains is left out.
        first, second = self.description, other.description
        if second and second in first:
            second = ""
        elif first and first in second:
            first = ""
        description = " and ".join(d for d in (first, second) if d)
        return Predicate(sql, self.args + other.args, description)


TRUE = Predicate("TRUE", (), "")


def ids_predicate(ids: Sequence[int]) -> Predicate:
    """Exactly these job ids."""
    shown = ", ".join(str(i) for i in list(ids)[:5]) + (", …" if len(ids) > 5 else "")
    label = f"id {shown}" if len(ids) == 1 else f"{len(ids)} marked jobs ({shown})"
    return Predicate("job.id = ANY($1::bigint[])", (list(ids),), label)


@dataclass(frozen=True)
class ActionPreview:
    """What an action will do, as read just now. UI-free: cells are plain (untrusted) strings."""

    action: str  # the action's name
    title: str
    verb: str
    count: int  # rows it will touch (the length of `ids` for row actions)
    matching: int  # rows matching the predicate (more than `count` when capped)
    ids: tuple[int, ...]
    columns: tuple[str, ...]
    sample: tuple[tuple[str, ...], ...]
    statement: str
    predicate: str
    notes: tuple[str, ...] = ()
    parameters: tuple[str, ...] = ()  # "$2 = [31, 32]": the statement's other bound values
    # Rows previewed that a live job with the same dedupe key keeps from being written now.
    blocked_by_dedupe: int = 0
    noun: str = "job"  # what `count` counts: "job" or "schedule"
    # What an empty preview means, when "No job matches" would not say it ("The schema is up
    # to date"); the dialog adds ": nothing to do."
    nothing: str | None = None
    # What the dialog calls `statement` (None: "statement ($1 = the previewed ids; …)", a row
    # action's); a statement with no placeholders says just "statement".
    statement_label: str | None = None
    # The sample is the lines of one text block (a query plan), its one column's label saying
    # what of: shown whole, each line wrapped, not cut to a table cell.
    sample_lines: bool = False

    @property
    def nothing_to_do(self) -> str:
        """The sentence shown when the preview has nothing to write."""
        return f"{self.nothing or f'No {self.noun} matches'}: nothing to do."

    def counted(self, count: int | None = None) -> str:
        """`count` (default: this preview's) with the noun: "1 job", "3 schedules"."""
        n = self.count if count is None else count
        return f"{n} {self.noun}{'' if n == 1 else 's'}"

    @property
    def needs_typed_confirmation(self) -> bool:
        return self.count > TYPED_CONFIRMATION_ABOVE


@dataclass(frozen=True)
class ActionResult:
    """What an applied action did."""

    action: str
    verb: str
    previewed: int
    changed: int
    ids: tuple[int, ...]  # the rows changed, or created (copies)
    notes: tuple[str, ...] = ()
    audit_problem: str | None = None  # the write committed but the audit file could not be written
    blocked_by_dedupe: int = 0  # left alone: a live job holds the same dedupe key
    created: bool = False  # `ids` are new jobs (copies): the summary names them

    @property
    def summary(self) -> str:
        text = f"{self.verb}: previewed {self.previewed}, changed {self.changed}"
        if self.created and self.ids:
            shown = ", ".join(str(i) for i in self.ids[:5]) + (", …" if len(self.ids) > 5 else "")
            text += f" (new job{'s' if len(self.ids) != 1 else ''} {shown})"
        reasons = []
        if self.blocked_by_dedupe:
            reasons.append(f"{self.blocked_by_dedupe} {DEDUPE_BLOCKED}")
        other = self.previewed - self.changed - self.blocked_by_dedupe
        if other > 0:
            reasons.append(
                f"{other} had changed, were locked by a worker or no longer matched,"
                " and were left alone"
            )
        if reasons:
            text += f" ({'; '.join(reasons)})"
        return text


@dataclass
class Action(ABC):
    """A guarded write. Subclasses set `name`, `title`, `verb` and implement preview/apply."""

    name: str = field(init=False, default="action")
    title: str = field(init=False, default="Action")
    verb: str = field(init=False, default="changed")
    # What the ids `apply` returns are, as the audit records them: "job_ids" or "schedule_ids";
    # "" when the write has no ids (an index build): `apply` returns one placeholder per thing
    # changed, which counts it, and the audit records no ids (`audited` says what changed).
    changed_ids_are: str = field(init=False, default="job_ids")
    # The ids `apply` returns are jobs it created (copies), not rows it changed.
    creates_jobs: bool = field(init=False, default=False)

    @abstractmethod
    async def preview(self, backend: Backend) -> ActionPreview:
        """Read what the action would do (read-only)."""

    @abstractmethod
    async def apply(self, tx: Tx, preview: ActionPreview) -> tuple[int, ...]:
        """Do it inside `tx` (re-checking the preview's predicate); the ids changed."""

    def predicate_description(self) -> str:
        return ""

    def audited(self, record: audit.AuditRecord) -> audit.AuditRecord:
        """The audit record of this write, with what only the action knows (an index's name)."""
        return record

    def audit_ids(self, ids: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """`ids` (what `apply` returned) as the audit record's id fields."""
        return {
            "job_ids": ids if self.changed_ids_are == "job_ids" else (),
            "schedule_ids": ids if self.changed_ids_are == "schedule_ids" else (),
        }

    async def count_blocked_by_dedupe(
        self, tx: Tx, preview: ActionPreview, changed: tuple[int, ...]
    ) -> int:
        """Of the previewed rows left unchanged, how many a live job's dedupe key blocked."""
        return 0

    async def observe(self, backend: Backend, preview: ActionPreview) -> Observation:
        """After a lost reply to COMMIT: what is now true of what the action would change."""
        return Observation((), "the console cannot tell for this action; look before retrying")


@dataclass(frozen=True)
class Observation:
    """What a re-read after an unknown outcome found: the rows that look written, in words."""

    ids: tuple[int, ...]
    text: str


class OutcomeUnknown(ConsoleError):
    """The write's COMMIT was sent but its reply was lost: it may or may not have committed."""


def reply_lost(exc: BaseException) -> bool:
    """Whether an error raised while committing leaves the outcome unknown: anything but an
    answer from the server (an SQLSTATE outside class 08, connection exception), which
    means it rolled back."""
    sqlstate = getattr(exc, "sqlstate", None)
    return not (isinstance(sqlstate, str) and sqlstate and not sqlstate.startswith("08"))


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` says the connection went away (rather than the server refusing): a
    statement sent before it may or may not have committed."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        return sqlstate.startswith("08")
    if isinstance(exc, OSError | TimeoutError | EOFError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionDoesNotExistError", "OperationalError", "InterfaceError"})


DEDUPE_BLOCKED = "blocked by a live job with the same dedupe key"


def confirmation_problem(preview: ActionPreview, typed: str | None) -> str | None:
    """Why the operator's confirmation does not allow the action, or None."""
    if preview.count == 0:
        return preview.nothing_to_do
    if preview.needs_typed_confirmation:
        entered = (typed or "").strip().replace(",", "").replace("_", "")
        if entered != str(preview.count):
            return f"type {preview.count} to confirm {preview.verb} of {preview.counted()}"
    return None


async def execute(
    backend: Backend,
    action: Action,
    preview: ActionPreview,
    *,
    typed: str | None = None,
    reason: str | None = None,
) -> ActionResult:
    """Apply a previewed action in one transaction, announce and audit it.

    Raises ConsoleError (a one-line message; nothing was written) when read-only, when the
    confirmation does not match, or when the database refuses.
    """
    if backend.read_only:
        raise ConsoleError(READ_ONLY_REFUSAL)
    problem = confirmation_problem(preview, typed)
    if problem:
        raise ConsoleError(problem)
    reason = (reason or "").strip() or None
    committing = False
    try:
        async with backend.transaction() as tx:
            changed = await action.apply(tx, preview)
            blocked = await action.count_blocked_by_dedupe(tx, preview, changed)
            ids = action.audit_ids(changed)
            record = action.audited(
                audit.AuditRecord(
                    action=action.name,
                    predicate=preview.predicate,
                    count=len(changed),
                    previewed=preview.count,
                    job_ids=ids["job_ids"],
                    schedule_ids=ids["schedule_ids"],
                    database=backend.label,
                    reason=reason,
                )
            )
            if changed:
                await audit.announce(tx, backend.installation.channel, record)
            committing = True  # leaving the block sends COMMIT
    except ConsoleError:
        raise
    except Exception as exc:
        if committing and reply_lost(exc):
            await _unknown_outcome(backend, action, preview, reason, exc)
        message = f"{action.title} failed, nothing was changed: {error_line(exc, limit=300)}"
        raise ConsoleError(message) from None
    audit_problem = None
    if changed:
        try:
            audit.append(record)
        except OSError as exc:
            audit_problem = f"the audit file could not be written: {error_line(exc, limit=300)}"
    return ActionResult(
        action=action.name,
        verb=action.verb,
        previewed=preview.count,
        changed=len(changed),
        ids=changed if action.changed_ids_are else (),
        notes=preview.notes,
        audit_problem=audit_problem,
        blocked_by_dedupe=blocked,
        created=action.creates_jobs,
    )


async def _unknown_outcome(
    backend: Backend,
    action: Action,
    preview: ActionPreview,
    reason: str | None,
    exc: BaseException,
) -> None:
    """Re-read what is now true, audit it as `outcome: unknown`, raise OutcomeUnknown."""
    try:
        found = await action.observe(backend, preview)
    except Exception as reread:
        found = Observation(
            (), f"the re-read failed too ({error_line(reread, limit=300)}); look before retrying"
        )
    ids = action.audit_ids(found.ids)
    record = action.audited(
        audit.AuditRecord(
            action=action.name,
            predicate=preview.predicate,
            count=len(found.ids),
            previewed=preview.count,
            job_ids=ids["job_ids"],
            schedule_ids=ids["schedule_ids"],
            database=backend.label,
            reason=reason,
            outcome="unknown",
            found=found.text,
        )
    )
    audit_note = ""
    try:
        audit.append(record)
    except OSError as problem:
        audit_note = f"; the audit file could not be written: {error_line(problem, limit=300)}"
    raise OutcomeUnknown(
        f"{action.title}: the outcome is unknown: the connection was lost after COMMIT was "
        f"sent ({error_line(exc, limit=300)}). Re-read: {found.text}. Applying again is safe: "
        f"it re-checks every row and cannot write twice{audit_note}"
    )
