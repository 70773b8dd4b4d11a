"""Why isn't this job running? Every reason that applies, checked against the database.

One statement (`why_sql`) reads what the answer needs: the job (or, when it finished, its last
log row), its entrypoint's queue (ready, deferred, the jobs ahead of it), the picked jobs of
that entrypoint and their heartbeats (the only trace of a worker PgQueuer leaves: it keeps no
list of workers, see core/workers.py), the slots of a concurrency-limited entrypoint, the log's
recent picks and completions (when a worker last served it, and the drain rate), and who holds
its dedupe key. `explain` turns those facts into reasons, one line each.

What PgQueuer records, and so what can be said:
- a worker is seen only through the jobs it holds (`queue_manager_id`, `heartbeat`); an idle
  worker leaves no trace, so "no live worker" means: none holds a job of the entrypoint and none
  picked or finished one in the last `activity_window`;
- a `concurrency_limit` is not stored: while picked under a limit, a job holds a `slot`
  (0 .. limit-1), so slots in use say the entrypoint is limited and how many run;
- PgQueuer 1.x stores no rate limit (`requests_per_second` was removed in 1.0), and one kept
  in worker code (a limiter in the handler) leaves no trace: no reason is given for it, and the
  facts say once that it cannot be seen, never that there is none;
- the dedupe key is unique among queued and picked jobs only (a held job releases it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgq_console.core.errors import ConsoleError
from pgq_console.core.workers import DEFAULT_STALE_AFTER

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend

# Not "none": a limiter in the worker's own code is possible and invisible here.
RATE_LIMIT_FACT = "not visible (none stored; worker code may limit)"
# A worker that picked or finished a job of the entrypoint this recently is taken as serving it.
DEFAULT_ACTIVITY_WINDOW = timedelta(minutes=5)
# The drain rate is the entrypoint's finished jobs per minute over this window.
DRAIN_WINDOW = timedelta(minutes=5)
# A ready job waiting this long with live workers holding its entrypoint's jobs: they are busy
# (an idle worker is woken by the INSERT's NOTIFY, or polls at least every dequeue_timeout).
BUSY_WAIT = timedelta(seconds=5)
# A ready job no worker has touched this long while no worker holds any job: its workers are
# gone (an idle PgQueuer worker polls at least every dequeue_timeout, 30 s by default).
STOPPED_WAIT = timedelta(seconds=60)
# How far back pgqueuer's statistics are searched for the entrypoint's last worker activity.
ACTIVITY_LOOKBACK = timedelta(days=1)
WORKER_STATUSES = "'picked', 'successful', 'exception', 'failed'"
# What a worker logs when it is done with a job (the drain rate counts these).
WORKER_FINISHES = "'successful', 'exception', 'failed'"
# The drain rate is taken over at least this long, even when the workers started more recently.
MIN_DRAIN_SPAN = timedelta(seconds=30)


class UnknownJob(ConsoleError):
    """Neither the queue nor the log knows the job."""


class UnknownEntrypoint(ConsoleError):
    """No job, log row, statistics row or schedule has ever named the entrypoint (a typo, most
    likely: "no job waiting" would send the reader looking for workers)."""


# Close names suggested for an entrypoint never seen, at most this many.
CLOSE_NAMES = 3


@dataclass(frozen=True)
class Reason:
    code: str  # deferred, no_worker, busy, concurrency, ahead, held, cancelled, finished,
    # dedupe, stale_worker, running
    text: str  # one line


@dataclass(frozen=True)
class WhyResult:
    """The reasons (one line each) and the facts they were drawn from."""

    subject: str  # "job 42" or "entrypoint send_email"
    job_id: int | None
    entrypoint: str
    status: str | None  # queued/picked/failed, or the last logged status once it left the queue
    reasons: tuple[Reason, ...]
    facts: tuple[tuple[str, Any], ...]  # (name, plain value: str, int, float, bool or None)
    taken_at: datetime  # the database's now()

    def fact(self, name: str) -> Any:
        return dict(self.facts).get(name)

    def codes(self) -> tuple[str, ...]:
        return tuple(reason.code for reason in self.reasons)

    def as_document(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "job_id": self.job_id,
            "entrypoint": self.entrypoint,
            "status": self.status,
            "taken_at": self.taken_at.isoformat(),
            "reasons": [{"code": r.code, "text": r.text} for r in self.reasons],
            "facts": {name: _plain(value) for name, value in self.facts},
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def span(seconds: float) -> str:
    """A duration in words an operator reads at a glance: 45s, 4 min, 2 h 10 min, 3 days."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} days"


def drain_span_of(now: datetime, since: datetime | None) -> timedelta:
    """What the drain rate is taken over: the window, or less when the workers' first pick or
    finish in it came later (a worker restarted a minute ago), at least `MIN_DRAIN_SPAN`."""
    if since is None:
        return DRAIN_WINDOW
    return min(DRAIN_WINDOW, max(MIN_DRAIN_SPAN, now - since))


def _at(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def why_sql(backend: Backend) -> str:
    """$1 job id (or NULL), $2 entrypoint (when no job id), $3 stale threshold, $4 drain
    window, $5 how far back the statistics are searched for the entrypoint's last worker, $6
    how far back the log is. One row."""
    names = backend.installation.settings.qualified
    queue, log = names.queue_table, names.queue_table_log
    return f"""
WITH job AS (
    SELECT id, entrypoint, status::text AS status, priority, execute_after, heartbeat, updated,
        created, queue_manager_id::text AS qm, dedupe_key, attempts
    FROM {queue} WHERE id = $1::bigint
),
last_log AS (
    SELECT status::text AS status, created, entrypoint,
        traceback->>'exception_type' AS exception_type
    FROM {log} WHERE job_id = $1::bigint ORDER BY created DESC, id DESC LIMIT 1
),
ep AS (
    SELECT coalesce((SELECT entrypoint FROM job), (SELECT entrypoint FROM last_log),
        $2::text) AS name
),
queued AS (
    SELECT q.id, q.priority, q.execute_after FROM {queue} AS q, ep
    WHERE q.status = 'queued' AND q.entrypoint = ep.name
),
picked AS (
    SELECT p.id, p.queue_manager_id::text AS qm, p.heartbeat, p.slot,
        p.heartbeat >= now() - $3::interval AS live
    FROM {queue} AS p, ep
    WHERE p.status = 'picked' AND p.entrypoint = ep.name
),
-- The newest pick or finish of the entrypoint: the log over the activity window ($6, on its
-- created index); only when it has none, pgqueuer's per-second statistics (the log aggregated
-- by the workers, a far smaller table: the log has no entrypoint index) back to $5.
last_served AS (
    SELECT coalesce(
        (SELECT max(l.created) FROM {log} AS l, ep
         WHERE l.entrypoint = ep.name AND l.created > now() - $6::interval
            AND l.status IN ({WORKER_STATUSES})),
        (SELECT max(s.created) FROM {names.statistics_table} AS s, ep
         WHERE s.entrypoint = ep.name AND s.created > now() - $5::interval
            AND s.status IN ({WORKER_STATUSES}))
    ) AS created
),
-- What the workers finished (operators' cancels and deletes are no drain rate), and since when
-- they have been at it within the window: a worker that started a minute ago drains at its own
-- pace, not at a fifth of it.
drained AS (
    SELECT count(*) FILTER (WHERE l.status IN ({WORKER_FINISHES})) AS n,
        min(l.created) AS since
    FROM {log} AS l, ep
    WHERE l.entrypoint = ep.name AND l.created > now() - $4::interval
        AND l.status IN ({WORKER_STATUSES})
)
SELECT now() AS db_now, (SELECT name FROM ep) AS entrypoint,
    j.id AS job_id, j.status, j.priority, j.execute_after, j.heartbeat, j.updated, j.created,
    j.qm, j.dedupe_key, j.attempts,
    (SELECT status FROM last_log) AS log_status,
    (SELECT created FROM last_log) AS log_created,
    (SELECT exception_type FROM last_log) AS log_exception_type,
    (SELECT count(*) FROM queued WHERE execute_after <= now()) AS ready,
    (SELECT count(*) FROM queued WHERE execute_after > now()) AS deferred,
    (SELECT min(execute_after) FROM queued WHERE execute_after > now()) AS next_deferred,
    (SELECT min(execute_after) FROM queued WHERE execute_after <= now()) AS oldest_ready,
    (SELECT count(*) FROM queued, job WHERE queued.execute_after <= now()
        AND (queued.priority > job.priority
             OR (queued.priority = job.priority AND queued.id < job.id))) AS ahead,
    (SELECT count(*) FROM picked) AS picked,
    (SELECT count(*) FROM picked WHERE live) AS picked_live,
    (SELECT count(DISTINCT qm) FROM picked WHERE live) AS workers_live,
    (SELECT count(DISTINCT qm) FROM picked WHERE NOT live) AS workers_stale,
    (SELECT max(heartbeat) FROM picked) AS newest_heartbeat,
    (SELECT count(*) FROM picked WHERE slot IS NOT NULL) AS slots_used,
    (SELECT created FROM last_served) AS last_served,
    (SELECT count(*) FROM {queue} AS a WHERE a.status = 'picked'
        AND a.heartbeat >= now() - $3::interval) AS all_picked_live,
    (SELECT count(DISTINCT a.queue_manager_id) FROM {queue} AS a WHERE a.status = 'picked'
        AND a.heartbeat >= now() - $3::interval) AS all_workers_live,
    (SELECT count(*) FROM {queue} AS h, ep
        WHERE $1::bigint IS NULL AND h.status = 'failed' AND h.entrypoint = ep.name) AS held,
    (SELECT n FROM drained) AS drained,
    (SELECT since FROM drained) AS drained_since,
    (SELECT max(w.heartbeat) FROM {queue} AS w
        WHERE w.status = 'picked' AND j.qm IS NOT NULL
            AND w.queue_manager_id::text = j.qm) AS holder_heartbeat,
    (SELECT min(d.id) FROM {queue} AS d
        WHERE j.dedupe_key IS NOT NULL AND d.dedupe_key = j.dedupe_key AND d.id <> j.id
            AND d.status IN ('queued', 'picked')) AS dedupe_holder,
    (SELECT d.status::text FROM {queue} AS d
        WHERE j.dedupe_key IS NOT NULL AND d.dedupe_key = j.dedupe_key AND d.id <> j.id
            AND d.status IN ('queued', 'picked') ORDER BY d.id LIMIT 1) AS dedupe_holder_status
FROM (SELECT 1) AS one LEFT JOIN job AS j ON TRUE
"""


async def why_job(
    backend: Backend,
    job_id: int,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    activity_window: timedelta = DEFAULT_ACTIVITY_WINDOW,
) -> WhyResult:
    """Every reason job `job_id` is not running; UnknownJob when neither queue nor log has it."""
    row = await _read(backend, job_id, None, stale_after, activity_window)
    if row["job_id"] is None and row["log_status"] is None:
        raise UnknownJob(f"job {job_id} is neither in the queue nor in the log")
    return explain(row, job_id=job_id, stale_after=stale_after, activity_window=activity_window)


async def why_entrypoint(
    backend: Backend,
    entrypoint: str,
    *,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    activity_window: timedelta = DEFAULT_ACTIVITY_WINDOW,
) -> WhyResult:
    """Why the entrypoint's queue is not draining: the reasons for the job at its head.
    UnknownEntrypoint when nothing in the database has ever named it."""
    row = await _read(backend, None, entrypoint, stale_after, activity_window)
    if _nothing_current(row) and not await _entrypoint_seen(backend, entrypoint):
        from pgq_console.core.enqueue import known_entrypoints

        raise UnknownEntrypoint(never_seen(entrypoint, await known_entrypoints(backend)))
    return explain(row, job_id=None, stale_after=stale_after, activity_window=activity_window)


def _nothing_current(row: dict[str, Any]) -> bool:
    """Nothing queued, picked, served or finished for the entrypoint lately."""
    return (
        int(row["ready"]) == 0
        and int(row["deferred"]) == 0
        and int(row["picked"]) == 0
        and row["last_served"] is None
        and int(row["drained"] or 0) == 0
    )


def entrypoint_seen_sql(backend: Backend) -> str:
    """$1 entrypoint: is it named anywhere (any job, log row, statistics row, schedule)? Only
    asked when the entrypoint has nothing current, so the log (no entrypoint index) is scanned
    only for a name that is, most likely, a typo; EXISTS stops at the first row found."""
    names = backend.installation.settings.qualified
    return f"""
SELECT EXISTS (SELECT 1 FROM {names.queue_table} WHERE entrypoint = $1::text)
    OR EXISTS (SELECT 1 FROM {names.schedules_table} WHERE entrypoint = $1::text)
    OR EXISTS (SELECT 1 FROM {names.statistics_table} WHERE entrypoint = $1::text)
    OR EXISTS (SELECT 1 FROM {names.queue_table_log} WHERE entrypoint = $1::text) AS seen
"""


async def _entrypoint_seen(backend: Backend, entrypoint: str) -> bool:
    rows = await backend.read(entrypoint_seen_sql(backend), entrypoint)
    return bool(rows[0]["seen"])


def never_seen(entrypoint: str, known: list[str]) -> str:
    """The one line for an entrypoint nothing names, with the close names that exist."""
    from difflib import get_close_matches

    line = (
        f"entrypoint {_name(entrypoint)} was never seen: no job, log row or schedule has that name"
    )
    close = get_close_matches(entrypoint, known, n=CLOSE_NAMES, cutoff=0.6)
    if close:
        return f"{line}; did you mean {', '.join(_name(name) for name in close)}?"
    if known:
        shown = ", ".join(_name(name) for name in known[:8])
        more = f" and {len(known) - 8} more" if len(known) > 8 else ""
        return f"{line}; entrypoints seen: {shown}{more}"
    return f"{line}; no entrypoint has been seen yet"


# An entrypoint name in a one-line error is cut to this many characters (a 3,000-character name
# in the database must not make the line a screenful).
NAME_IN_ERROR = 60


def _name(name: str) -> str:
    """`name` quoted (repr: control characters escaped), its middle cut when long."""
    if len(name) <= NAME_IN_ERROR:
        return repr(name)
    half = NAME_IN_ERROR // 2
    return f"{name[:half]!r}…{name[-half:]!r} ({len(name)} characters)"


async def _read(
    backend: Backend,
    job_id: int | None,
    entrypoint: str | None,
    stale_after: timedelta,
    activity_window: timedelta,
) -> dict[str, Any]:
    rows = await backend.read(
        why_sql(backend),
        job_id,
        entrypoint,
        stale_after,
        DRAIN_WINDOW,
        ACTIVITY_LOOKBACK,
        max(activity_window, DRAIN_WINDOW) + timedelta(minutes=1),
    )
    return rows[0]


def explain(
    row: dict[str, Any],
    *,
    job_id: int | None,
    stale_after: timedelta,
    activity_window: timedelta,
) -> WhyResult:
    """The reasons and facts of one `why_sql` row (pure: no database)."""
    now: datetime = row["db_now"]
    entrypoint = str(row["entrypoint"] or "")
    status = row["status"] or row["log_status"]
    ready, deferred = int(row["ready"]), int(row["deferred"])
    picked_live, workers_live = int(row["picked_live"]), int(row["workers_live"])
    slots_used = int(row["slots_used"])
    drained = int(row["drained"] or 0)
    drain_span = drain_span_of(now, row.get("drained_since"))
    rate_per_min = drained / (drain_span.total_seconds() / 60)
    last_served: datetime | None = row["last_served"]
    oldest_ready: datetime | None = row["oldest_ready"]
    reasons: list[Reason] = []

    def add(code: str, text: str) -> None:
        reasons.append(Reason(code, text))

    in_queue = row["job_id"] is not None
    # Is the job (or, for an entrypoint, its queue) waiting to be picked right now?
    if job_id is not None:
        waiting = in_queue and row["status"] == "queued" and row["execute_after"] <= now
        waited = (now - row["execute_after"]) if waiting else timedelta(0)
    else:
        waiting = ready > 0
        waited = (now - oldest_ready) if oldest_ready is not None else timedelta(0)

    # -- the job's own state -------------------------------------------------------------
    if job_id is not None and not in_queue:
        when = _at(row["log_created"])
        log_status = str(row["log_status"])
        if log_status == "canceled":
            add("cancelled", f"it was cancelled at {when}: it will not run")
        elif log_status == "successful":
            add("finished", f"it already ran: completed at {when}")
        elif log_status == "exception":
            kind = row["log_exception_type"] or "an exception"
            add("finished", f"it ran and failed with {kind} at {when}; the queue no longer has it")
        elif log_status == "deleted":
            add("finished", f"it was deleted from the queue at {when}")
        else:
            add("finished", f"it left the queue (last logged {log_status} at {when})")
    if in_queue and row["status"] == "failed":
        kind = row["log_exception_type"]
        cause = f" with {kind}" if kind else ""
        add(
            "held",
            f"it is held: it failed{cause} at {_at(row['updated'])} and waits for a requeue "
            "(r on the job, in Jobs or in Failures)",
        )
    if in_queue and row["status"] == "queued" and row["execute_after"] > now:
        add(
            "deferred",
            f"it is deferred: ready at {_at(row['execute_after'])} "
            f"(in {span((row['execute_after'] - now).total_seconds())})",
        )
    if in_queue and row["status"] == "picked":
        holder = row["qm"] or "(unknown)"
        beat: datetime | None = row["holder_heartbeat"] or row["heartbeat"]
        age = (now - beat).total_seconds() if beat is not None else None
        if age is not None and age > stale_after.total_seconds():
            add(
                "stale_worker",
                f"it is picked by worker {holder}, whose last heartbeat was {span(age)} ago: "
                "the worker looks dead; reclaim is one key away (Workers screen, R)",
            )
        else:
            add(
                "running",
                f"it is running: picked by worker {holder} at {_at(row['updated'])}"
                + (f", heartbeat {span(age)} ago" if age is not None else ""),
            )
    next_deferred: datetime | None = row["next_deferred"]
    if job_id is None and ready == 0 and deferred > 0 and next_deferred is not None:
        add(
            "deferred",
            f"all {deferred} of its queued jobs are deferred: the first is ready at "
            f"{_at(next_deferred)} (in {span((next_deferred - now).total_seconds())})",
        )

    held = int(row.get("held") or 0)
    if job_id is None and held > 0:
        add(
            "held",
            f"{held} of its jobs {'are' if held != 1 else 'is'} held: failed and waiting for a "
            "requeue (Failures screen, r)",
        )

    # -- workers and capacity (only when it waits to be picked) ----------------------------
    workers_stale = int(row["workers_stale"])
    all_workers_live = int(row.get("all_workers_live") or 0)
    all_picked_live = int(row.get("all_picked_live") or 0)
    ready_since = (now - waited) if waiting else None
    # The workers seen holding its jobs are all dead (stale heartbeats), and none picked or
    # finished one of its jobs since this one became ready: whatever served it lately is gone,
    # however recent its last pick (the window alone would call it served).
    served_by_the_dead = (
        picked_live == 0
        and workers_stale > 0
        and waited >= BUSY_WAIT
        and ready_since is not None
        and (last_served is None or last_served < ready_since)
    )
    if waiting:
        if served_by_the_dead and last_served is not None:
            newest: datetime | None = row["newest_heartbeat"]
            gone = f" {span((now - newest).total_seconds())} ago" if newest is not None else ""
            add(
                "no_worker",
                f"no live worker serves {entrypoint}: the worker"
                f"{'s' if workers_stale != 1 else ''} holding its jobs stopped heartbeating"
                f"{gone} (dead? reclaim in the Workers screen, R), and none picked or finished "
                f"one of its jobs since it became ready {span(waited.total_seconds())} ago; one "
                f"last did at {_at(last_served)} ({span((now - last_served).total_seconds())} ago)",
            )
        elif picked_live == 0 and (last_served is None or now - last_served > activity_window):
            last = (
                f"one last did at {_at(last_served)} ({span((now - last_served).total_seconds())}"
                " ago)"
                if last_served is not None
                else "none did in the last day"
            )
            add(
                "no_worker",
                f"no live worker serves {entrypoint}: none holds or picked one of its jobs in "
                f"the last {span(activity_window.total_seconds())}; {last}",
            )
        elif (
            all_workers_live == 0
            and waited >= STOPPED_WAIT
            and ready_since is not None
            and last_served is not None
            and last_served < ready_since
        ):
            add(
                "no_worker",
                f"no live worker serves {entrypoint}: no worker holds a job of any entrypoint, "
                f"and none picked one of its jobs in the {span(waited.total_seconds())} it has "
                f"been ready; one last did at {_at(last_served)} "
                f"({span((now - last_served).total_seconds())} ago): its workers look stopped",
            )
        elif slots_used > 0:
            add(
                "concurrency",
                f"its concurrency limit is reached: {slots_used} running job"
                f"{'s hold' if slots_used != 1 else ' holds'} its slot"
                f"{'s' if slots_used != 1 else ''}; the next starts when one finishes",
            )
        elif workers_live > 0 and waited >= BUSY_WAIT:
            add(
                "busy",
                f"the {workers_live} live worker{'s' if workers_live != 1 else ''} serving it "
                f"{'are' if workers_live != 1 else 'is'} busy: {picked_live} of its jobs "
                f"running, and it has waited {span(waited.total_seconds())}",
            )
        elif (
            picked_live == 0
            and all_workers_live > 0
            and waited >= BUSY_WAIT
            and ready_since is not None
            and last_served is not None
            and last_served < ready_since
        ):
            # A worker served it lately, none has touched it since this job became ready, and
            # none is idle enough to take it: the live workers are taken by other entrypoints'
            # jobs (PgQueuer does not record which entrypoints a worker serves, so which of
            # them serve this one cannot be said).
            add(
                "busy",
                f"it has waited {span(waited.total_seconds())} though a worker picked or "
                f"finished one of {entrypoint}'s jobs {span((now - last_served).total_seconds())}"
                f" ago: the live workers look busy with other entrypoints' jobs "
                f"({all_picked_live} running on {all_workers_live} worker"
                f"{'s' if all_workers_live != 1 else ''})",
            )

    # -- the queue ahead of it -------------------------------------------------------------
    # For an entrypoint: how long its whole ready queue takes to drain.
    ahead = int(row["ahead"]) if job_id is not None else ready
    if job_id is not None:
        queue_words = "ready job is ahead of it" if ahead == 1 else "ready jobs are ahead of it"
    else:
        queue_words = "ready jobs wait"
    if waiting and ahead > 0 and (job_id is not None or ahead > 1):
        if rate_per_min > 0:
            eta = f"about {span(ahead / rate_per_min * 60)} at the current rate"
            pace = f"{rate_per_min:.1f}/min over the last {span(drain_span.total_seconds())}"
            add("ahead", f"{ahead} {queue_words}: {eta} ({pace})")
        else:
            add(
                "ahead",
                f"{ahead} {queue_words}, and none of {entrypoint} finished in the "
                f"last {span(DRAIN_WINDOW.total_seconds())}: no drain rate to estimate from",
            )

    # -- dedupe key ------------------------------------------------------------------------
    key = row["dedupe_key"]
    if key is not None:
        holder_id = row["dedupe_holder"]
        if holder_id is not None:
            add(
                "dedupe",
                f"its dedupe key {key!r} is taken by job {holder_id} "
                f"({row['dedupe_holder_status']}): a requeue or copy with that key is refused "
                "until it finishes",
            )
        elif row["status"] in ("queued", "picked"):
            add(
                "dedupe",
                f"its dedupe key {key!r} blocks a copy: enqueuing that key again is refused "
                "(or skipped) until it finishes",
            )

    if not reasons:
        if waiting:
            add("clear", "nothing holds it back: it is ready and next in line for a worker")
        elif job_id is None:
            add("clear", f"{entrypoint} has no job waiting to be picked")

    facts: list[tuple[str, Any]] = [
        ("entrypoint", entrypoint),
        ("status", status),
    ]
    if in_queue:
        facts += [
            ("priority", row["priority"]),
            ("attempts", row["attempts"]),
            ("created", row["created"]),
            ("execute_after", row["execute_after"]),
            ("queue_manager_id", row["qm"]),
            ("heartbeat", row["heartbeat"]),
            ("dedupe_key", row["dedupe_key"]),
            ("jobs_ahead", int(row["ahead"])),
        ]
    elif row["log_status"] is not None:
        facts += [("last_logged", row["log_created"])]
    facts += [
        ("ready", ready),
        ("deferred", deferred),
    ]
    if job_id is None:
        facts += [("held", held)]
    facts += [
        ("oldest_ready", oldest_ready),
        ("picked", int(row["picked"])),
        ("picked_live", picked_live),
        ("workers_live", workers_live),
        ("workers_stale", workers_stale),
        ("all_workers_live", all_workers_live),
        ("newest_heartbeat", row["newest_heartbeat"]),
        ("slots_used", slots_used),
        ("last_served", last_served),
        ("finished_per_min", round(rate_per_min, 2)),
        ("drain_span_s", drain_span.total_seconds()),
        ("stale_after_s", stale_after.total_seconds()),
        ("activity_window_s", activity_window.total_seconds()),
        ("rate_limit", RATE_LIMIT_FACT),
        ("db_now", now),
    ]
    subject = f"job {job_id}" if job_id is not None else f"entrypoint {entrypoint}"
    return WhyResult(
        subject=subject,
        job_id=job_id,
        entrypoint=entrypoint,
        status=status,
        reasons=tuple(reasons),
        facts=tuple(facts),
        taken_at=now,
    )


def fact_text(value: Any) -> str:
    """A fact's value as one line of text (not yet escaped: callers pass it to `printable`)."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return _at(value)
    return str(value)
