"""Workers (queue managers) and their stale jobs, and the guarded reclaim of a dead worker's jobs.

PgQueuer records which queue manager holds a job only while it is picked (`queue_manager_id`),
and a live job's heartbeat every `heartbeat_timeout / 8`. A worker whose newest heartbeat is older
than a few heartbeat timeouts is presumed dead; its jobs stay `picked` until a worker serving the
same entrypoint re-dequeues them as stale, which never happens when no such worker runs.
`ReclaimAction` puts them back to `queued` through the shared preview/confirm/audit framework.

PgQueuer keeps no list of workers: the console sees a worker only through the jobs it holds.
States (`worker_state`), as the help explains them:

- busy: it holds picked jobs and at least one beat within the stale threshold, or it held jobs
  less than `BUSY_GRACE` ago (a consumer between short jobs is working, not idle: no flicker);
- idle: it held jobs earlier (seen by this console in the last 10 minutes), none for
  `BUSY_GRACE`, and its jobs were beating when last seen: it finished them;
- dead: it holds picked jobs and none has beaten within the threshold (a `kill -9`), or it was
  dead when its jobs were last seen (they were since re-picked as stale or reclaimed).

One read (`fetch_workers`) returns both the per-worker summary and the stale jobs, so the two
tables always agree. Ages are returned as timestamps: the UI measures them with its own clock.
It lists at most `WORKER_LIMIT` workers, dead ones first (every picked job with its own queue
manager: 100,000 workers at 10M jobs took seconds to send and draw), with the exact number of
workers holding jobs and of dead ones counted beside (`holding_total`, `dead_total`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pgq_console.core.actions import Predicate, _QueueAction, notify_table_changed

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend, Tx

# pgqueuer's default heartbeat_timeout is 30 s; a healthy worker beats every 30/8 s.
DEFAULT_STALE_AFTER = timedelta(seconds=90)
STALE_JOB_LIMIT = 500
# Workers listed (dead first); the totals are exact beyond it.
WORKER_LIMIT = 200
# Workers no longer holding jobs stay listed this long (seen by this console), marked idle.
REMEMBER_IDLE = timedelta(minutes=10)
# A worker that held jobs this recently is still busy (pgqueuer's default heartbeat timeout).
BUSY_GRACE = timedelta(seconds=30)
# The "worker" of picked jobs that record none (queue_manager_id NULL).
NO_WORKER = "(none)"


class WorkerState(StrEnum):
    BUSY = "busy"
    IDLE = "idle"
    DEAD = "dead"


@dataclass(frozen=True)
class WorkerRow:
    """One queue manager as seen holding picked jobs."""

    queue_manager_id: str
    entrypoints: tuple[str, ...]
    picked: int
    stale: int  # its picked jobs whose heartbeat is older than the threshold
    newest_heartbeat: datetime | None
    oldest_heartbeat: datetime | None
    last_seen: datetime | None = None  # the console's clock when it last held jobs
    idle: bool = False  # held nothing at the last read
    gone_dead: bool = False  # holds nothing now, but was dead when its jobs were last seen

    def dead(self, now: datetime, stale_after: timedelta) -> bool:
        """No job of it is beating: its newest heartbeat is older than the threshold (or was,
        when it last held jobs)."""
        if self.gone_dead:
            return True
        if self.idle or self.newest_heartbeat is None:
            return False
        return now - self.newest_heartbeat > stale_after

    def state(self, now: datetime, stale_after: timedelta) -> WorkerState:
        if self.dead(now, stale_after):
            return WorkerState.DEAD
        if not self.idle:
            return WorkerState.BUSY
        if self.last_seen is not None and now - self.last_seen < BUSY_GRACE:
            return WorkerState.BUSY  # between jobs
        return WorkerState.IDLE


@dataclass(frozen=True)
class StaleJob:
    id: int
    entrypoint: str
    queue_manager_id: str | None
    heartbeat: datetime
    priority: int
    attempts: int


@dataclass(frozen=True)
class WorkersSnapshot:
    taken_at: datetime  # the database's now()
    stale_after: timedelta
    workers: tuple[WorkerRow, ...]
    stale_jobs: tuple[StaleJob, ...]
    stale_total: int  # may exceed len(stale_jobs) (capped)
    # Every worker holding picked jobs, and of those the dead ones (the read's clock); the
    # rows holding jobs in `workers` stop at the read's limit, dead ones first.
    holding_total: int = 0
    dead_total: int = 0

    @property
    def holding_listed(self) -> int:
        return sum(1 for w in self.workers if not w.idle)

    @property
    def truncated(self) -> bool:
        """Some workers holding jobs are not listed (over the read's limit)."""
        return self.holding_total > self.holding_listed

    def stale_of(self, queue_manager_id: str) -> tuple[StaleJob, ...]:
        return tuple(j for j in self.stale_jobs if j.queue_manager_id == queue_manager_id)


def workers_sql(backend: Backend) -> str:
    """One statement: the workers (grouped straight from the table, by the uuid), the stale jobs
    (the oldest heartbeats first, through PgQueuer's heartbeat index: it stops at the limit),
    and the totals. The listed workers' entrypoints are looked up per worker (PgQueuer's
    `queue_manager_id` index): with 100,000 picked jobs, each its own worker, it takes 0.7 of
    the time it took when every picked job was first copied aside and joined back
    (`bench/workers_read_ab.py`)."""
    table = backend.installation.settings.qualified.queue_table
    stale_before = "coalesce($2, now()) - $1::interval"
    return f"""
WITH per_worker AS MATERIALIZED (
    SELECT queue_manager_id AS qm, count(*) AS picked,
        count(*) FILTER (WHERE heartbeat < {stale_before}) AS stale,
        max(heartbeat) AS newest, min(heartbeat) AS oldest
    FROM {table}
    WHERE status = 'picked'
    GROUP BY queue_manager_id
),
listed AS (
    SELECT * FROM per_worker
    ORDER BY newest < {stale_before} DESC, qm NULLS FIRST
    LIMIT $3
),
stale AS (
    SELECT id, entrypoint, queue_manager_id, heartbeat, priority, attempts
    FROM {table}
    WHERE status = 'picked' AND heartbeat < {stale_before}
    ORDER BY heartbeat, id LIMIT {STALE_JOB_LIMIT}
)
SELECT 'worker' AS kind, l.qm::text AS qm, l.picked, l.stale, l.newest, l.oldest,
    CASE WHEN l.qm IS NULL THEN
        (SELECT array_agg(DISTINCT p.entrypoint ORDER BY p.entrypoint) FROM {table} p
         WHERE p.status = 'picked' AND p.queue_manager_id IS NULL)
    ELSE
        (SELECT array_agg(DISTINCT p.entrypoint ORDER BY p.entrypoint) FROM {table} p
         WHERE p.queue_manager_id = l.qm AND p.status = 'picked')
    END AS entrypoints,
    NULL::bigint AS id, NULL::text AS entrypoint, NULL::timestamptz AS heartbeat,
    NULL::int AS priority, NULL::int AS attempts, NULL::bigint AS dead, now() AS db_now
FROM listed l
UNION ALL
SELECT 'stale', queue_manager_id::text, NULL, NULL, NULL, NULL, NULL, id, entrypoint, heartbeat,
    priority, attempts, NULL, now()
FROM stale
UNION ALL
SELECT 'now', NULL, count(*), coalesce(sum(stale), 0), NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, count(*) FILTER (WHERE newest < {stale_before}), now()
FROM per_worker
"""


async def fetch_workers(
    backend: Backend,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    now: datetime | None = None,
    limit: int | None = WORKER_LIMIT,
) -> WorkersSnapshot:
    """Workers holding picked jobs (at most `limit`, dead first; None: all), and the stale jobs
    (oldest heartbeat first), in one read.

    `now` is the console's clock (the one ages are shown with); None: the database's. The
    reclaim itself always re-checks against the database's clock.
    """
    rows = await backend.read(workers_sql(backend), stale_after, now, limit)
    workers: list[WorkerRow] = []
    stale: list[StaleJob] = []
    taken_at: datetime | None = None
    stale_total = holding_total = dead_total = 0
    for row in rows:
        taken_at = row["db_now"]
        if row["kind"] == "worker":
            workers.append(
                WorkerRow(
                    queue_manager_id=row["qm"] or NO_WORKER,
                    entrypoints=tuple(str(e) for e in row["entrypoints"] or ()),
                    picked=int(row["picked"]),
                    stale=int(row["stale"]),
                    newest_heartbeat=row["newest"],
                    oldest_heartbeat=row["oldest"],
                )
            )
        elif row["kind"] == "stale":
            stale.append(
                StaleJob(
                    id=int(row["id"]),
                    entrypoint=str(row["entrypoint"]),
                    queue_manager_id=row["qm"],
                    heartbeat=row["heartbeat"],
                    priority=int(row["priority"]),
                    attempts=int(row["attempts"]),
                )
            )
        else:
            stale_total = int(row["stale"])
            holding_total = int(row["picked"])
            dead_total = int(row["dead"])
    assert taken_at is not None  # the 'now' row is always there
    return WorkersSnapshot(
        taken_at=taken_at,
        stale_after=stale_after,
        workers=tuple(workers),
        stale_jobs=tuple(stale),
        stale_total=stale_total,
        holding_total=holding_total,
        dead_total=dead_total,
    )


@dataclass
class WorkerMemory:
    """Keeps workers that stopped holding jobs listed (idle) for `remember`, as seen by us.

    The database forgets a queue manager the moment its last job completes; an on-call engineer
    still wants to see "worker X went idle 2 minutes ago" next to the busy ones.
    """

    remember: timedelta = REMEMBER_IDLE
    _seen: dict[str, WorkerRow] = field(default_factory=dict)

    def known(self) -> tuple[WorkerRow, ...]:
        """Every worker remembered at the last merge (for the incident bundle)."""
        return tuple(self._seen.values())

    def merge(self, snapshot: WorkersSnapshot, now: datetime) -> WorkersSnapshot:
        current = {w.queue_manager_id: replace(w, last_seen=now) for w in snapshot.workers}
        kept: dict[str, WorkerRow] = {}
        for key, old in list(self._seen.items()):
            if key in current:
                continue
            if snapshot.truncated:
                # Not listed: maybe still holding jobs past the read's limit. Remembered as it
                # was (not idle), left out of the capped list, where idle rows come last anyway.
                if now - (old.last_seen or now) <= self.remember:
                    kept[key] = old
                continue
            last_seen = old.last_seen or now
            if now - last_seen > self.remember:
                del self._seen[key]
                continue
            # Its jobs are gone: finished (idle) or, if it was dead, taken over by another
            # worker or reclaimed (still dead: it did not come back). Dead as of the read that
            # last saw them, not as of now: a read that comes late (a slow query, a starved
            # machine, a refresh interval longer than the threshold) finds a worker that just
            # finished its jobs idle, not dead for good.
            died = old.dead(last_seen, snapshot.stale_after)
            current[key] = replace(old, picked=0, stale=0, idle=True, gone_dead=died)
        self._seen = current | kept
        ordered = sorted(current.values(), key=lambda w: (w.idle, w.queue_manager_id))
        return replace(snapshot, workers=tuple(ordered))


@dataclass
class ReclaimAction(_QueueAction):
    """A dead worker's stale jobs back to `queued`, so any live worker picks them up at once.

    The predicate (picked, held by that worker, heartbeat older than the threshold) is evaluated
    again by the UPDATE under the row lock at commit time: a job whose worker came back and beat
    in the meantime, or that completed, is left alone. Logged 'queued' like a requeue; attempts
    are kept (the job did not fail); a table_changed_event wakes idle workers (UPDATEs do not
    notify).
    """

    def __post_init__(self) -> None:
        self.name, self.title, self.verb = "reclaim", "Reclaim stale jobs", "reclaim"

    @classmethod
    def for_worker(
        cls, backend: Backend, queue_manager_id: str, stale_after: timedelta
    ) -> ReclaimAction:
        seconds = int(stale_after.total_seconds())
        predicate = Predicate(
            "job.status = 'picked' AND job.queue_manager_id::text = $1"
            " AND job.heartbeat < now() - $2::interval",
            (queue_manager_id, stale_after),
            f"picked by worker {queue_manager_id} with no heartbeat for over {seconds}s",
        )
        action: ReclaimAction = cls.build(backend, predicate)
        return action

    def write_sql(self) -> str:
        # The predicate again in the UPDATE: re-checked on the locked, latest row version.
        return f""",
reclaimed AS (
    UPDATE {self.table} AS job
    SET status = 'queued', execute_after = NOW(), updated = NOW(),
        queue_manager_id = NULL, slot = NULL
    WHERE job.id IN (SELECT id FROM target) AND ({self.predicate.shifted(1)})
    RETURNING job.id, job.entrypoint, job.priority
),
logged AS (
    INSERT INTO {self.log_table} (job_id, status, entrypoint, priority)
    SELECT id, 'queued', entrypoint, priority FROM reclaimed
)
SELECT id FROM reclaimed"""

    def preview_notes(self) -> tuple[str, ...]:
        return (
            "If that worker is only slow (not dead), its jobs may run twice: PgQueuer is "
            "at-least-once.",
        )

    async def after_write(self, tx: Tx, changed: tuple[int, ...]) -> None:
        await notify_table_changed(tx, self.settings)


def heartbeat_age(row: WorkerRow, now: datetime) -> float | None:
    if row.newest_heartbeat is None:
        return None
    return max(0.0, (now - row.newest_heartbeat).total_seconds())


def as_dict(row: WorkerRow) -> dict[str, Any]:
    """For the palette/export: plain values."""
    return {
        "queue_manager_id": row.queue_manager_id,
        "entrypoints": list(row.entrypoints),
        "picked": row.picked,
        "stale": row.stale,
    }
