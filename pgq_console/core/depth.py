"""Queue depth per entrypoint: counted directly while the queue is small, else followed from
PgQueuer's log at a cost proportional to change, not to rows.

A small queue (under `FOLLOW_ABOVE` queued jobs at its last exact count) is counted directly on
every read: queued jobs per entrypoint on PgQueuer's partial index for queued rows (ready,
deferred and the oldest ready job in one pass), picked jobs and held failures on their own paced
cadence (`direct_sql`). That is exact whatever changed the table, and far cheaper than following
a busy log (0.62 ms against 10.7 ms of server CPU a read at 2,500 jobs/s, bench/README.md).
Once a direct count reaches `FOLLOW_ABOVE`, an exact count (with the log position) is taken at
once and the log is followed from there; once a followed total falls under `FOLLOW_BELOW`, an
exact count is asked for, and if it agrees, direct counting resumes. Both switches start from
an exact count, so the numbers on screen never jump. A direct read also checks how far the log
moved since the last one: more than `JUMP_LOG_ROWS` log rows (a bulk load, or a long pause)
means the queue may now be far larger, and the read starts over with the capped first look
below instead of counting a table that may hold millions of rows.

Counting 10M queued jobs takes seconds on every refresh. PgQueuer logs every transition of a job
(`queued`, `picked`, then `failed` or a terminal status) in its log table, so after one exact
count the depths follow from the log rows added since: an index range read on the log's
primary key. What each log row does to the counts depends on the job's state before it, which
the log row alone does not say:

- `queued`: an enqueue (from nothing), a retry (`RetryRequested`: from picked) or a requeue of a
  held failure (from failed);
- `picked`: a dequeue (from queued) or the reclaim of a job whose worker stopped heartbeating
  (from picked);
- a terminal status (`successful`, `exception`, `canceled`, `deleted`): from picked, or from
  queued/failed when a job is cancelled or deleted without running.

So the state before is read from the job's previous log row: in the same batch when it is
there, else with one probe of the log's `(job_id, created)` index; a job newer than every job
seen so far is known to be new without a probe. What the log does not record at all, and the
tracker therefore cannot follow:

- `TRUNCATE` of the queue table (`clear_queue()` without entrypoints): no log rows. Its NOTIFY
  (operation `truncate`) triggers an exact re-count;
- rows written to the queue table by hand, or log rows deleted before they were read
  (retention, `clear_queue_log`): caught by the exact re-count on a slow cadence
  (`RESYNC_EVERY_S`), and when the log's highest id goes backwards;
- deferred jobs becoming ready: time passes, nothing is logged. Ready and deferred are split by
  a separate, paced count of deferred jobs (usually few), capped at `DEFERRED_CAP`.

Log rows can commit out of id order (a transaction takes its id, another commits a higher one
first). Every read records the snapshot's in-progress transactions; the next read also takes
rows at or below the previous highest id whose inserting transaction was in progress then, back
to the highest id of the last read taken before the oldest of them began. Nothing is counted
twice or missed while PgQueuer allocates a log id after its transaction id (all its statements
write the queue table first).

Before the first exact count has finished (seconds at 10M rows), the numbers come from a capped
count (`FIRST_LOOK_CAP` queued per entrypoint, the first `FIRST_LOOK_PICKED_CAP` picked jobs)
and are marked as lower bounds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pgq_console.core.stats import SERVER_TIME, Depth, int_array, queued_entrypoints_cte

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend
    from pgq_console.core.target import Installation

FIRST_LOOK_CAP = 10_000
# Picked jobs the first look reads (their rows are spread over the table, one heap page each:
# 100,000 of them took 0.45 s of a 0.49 s first look at 10M rows); more are counted exactly.
FIRST_LOOK_PICKED_CAP = 10_000
# Count the queue table directly below this many queued jobs, follow the log above it. A direct
# read scans every queued row: ~0.8 ms at 2,000 queued, 3 ms at 10,000, 12 ms at 49,000 (static
# table, bench/README.md 12-01 b), more under churn (dead index entries between vacuums), while
# following the log costs ~6 us of server CPU per log row whatever the queue's size: ~10 ms a read
# at 2,500 jobs/s, well under 1 ms at tens of jobs/s. Up to 10,000 a direct read stays within a
# few ms, so the depth tier's budget slice still allows ~3 reads a second; a backlog larger than
# that is cheaper to follow at all but the highest rates (where the two meet around 50,000).
FOLLOW_ABOVE = 10_000
# Back to direct counts below this (hysteresis: a queue hovering at the threshold does not
# switch on every read, each switch being an exact count).
FOLLOW_BELOW = FOLLOW_ABOVE // 2
# More log rows than this since the last direct read: the queue may have grown by as many, so it
# is not counted directly (the first look decides again). Counting up to this many more rows
# once costs ~45 ms; at 2,500 jobs/s it is ~27 s of log (a hidden or paused overview).
JUMP_LOG_ROWS = 200_000
# A queue table this small is counted exactly at once (a scan of it takes milliseconds).
SMALL_QUEUE_BYTES = 32 * 1024 * 1024
DEFERRED_CAP = 100_000
RESYNC_EVERY_S = 300.0
# The exact count scans every held job (PgQueuer has no index on them) and counts every queued
# one: 3-5 s at 10M rows, so over the 5 s statement timeout on a busy server, where it failed
# and was tried again every minute, never landing. It runs aside, paced by its cost.
EXACT_COUNT_TIMEOUT = timedelta(seconds=60)
HISTORY = 256  # reads remembered for out-of-order commits (a long transaction holds them)
XID_MOD = 4_294_967_296  # row xmin is a 32-bit xid; snapshots give 64-bit ones
LIVE = ("queued", "picked", "failed")
# Transitions PgQueuer (and this console) log; any other pair means the queue table was changed
# without a log row (by hand, or rows were lost): the counts are re-taken exactly.
TERMINAL = frozenset({"successful", "exception", "canceled", "deleted"})
VALID = {
    None: frozenset({"queued"}),
    "queued": frozenset({"picked", *TERMINAL}),
    "picked": frozenset({"picked", "queued", "failed", *TERMINAL}),
    "failed": frozenset({"queued", *TERMINAL}),
}
# The state a job is assumed to leave when its previous log row is gone (log retention).
ASSUMED_BEFORE = {
    "queued": None,
    "picked": "queued",
    "failed": "picked",
    "successful": "picked",
    "exception": "picked",
    "canceled": "picked",
    "deleted": "picked",
}


@dataclass
class Counts:
    queued: int = 0
    picked: int = 0
    failed: int = 0

    def add(self, state: str, n: int) -> None:
        setattr(self, state, getattr(self, state) + n)


@dataclass(frozen=True)
class Cursor:
    """Where the log was read up to, and which rows at or below that were not visible yet."""

    max_id: int
    max_job_id: int
    xmax: int
    in_progress: tuple[int, ...]  # 32-bit xids in progress at the read


@dataclass(frozen=True)
class TrackedDepth:
    """What the overview shows for depth, with how exact it is."""

    depth: dict[str, Depth]
    picked: dict[str, int]
    held: dict[str, int]
    server_s: float | None
    # Entrypoints whose numbers are lower bounds: queued counts capped before the exact count,
    # deferred counts capped at DEFERRED_CAP.
    capped: frozenset[str] = frozenset()
    exact: bool = False  # an exact count has been taken and the log followed since
    exact_at: datetime | None = None  # the database's time of the last exact count
    held_known: bool = True  # False before the first exact count (no index on held jobs)
    # The first look read `FIRST_LOOK_PICKED_CAP` picked jobs and there may be more: picked
    # counts are lower bounds until the exact count.
    picked_capped: bool = False


@dataclass
class _Deferred:
    counts: dict[str, int] = field(default_factory=dict)
    capped: frozenset[str] = frozenset()


def _snapshot_cols() -> str:
    return """
    pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
    pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax,
    ARRAY(SELECT x::text::bigint % 4294967296
          FROM pg_snapshot_xip(pg_current_snapshot()) AS x)::text AS xip"""


def first_look_sql(installation: Installation) -> str:
    """Queued jobs per entrypoint counted up to a cap (a skip scan finds the entrypoints),
    picked jobs, and the log position: the log is followed from here until the exact count.

    The ready/deferred split of the entrypoints found comes with it (deferred jobs counted up
    to $2, the oldest ready job: `deferred_sql`'s probes), in the same statement: at the start
    it was a statement of its own after this one (and after the exact count), one more round
    trip before the first numbers."""
    names = installation.settings.qualified
    q, log = names.queue_table, names.queue_table_log
    return f"""
WITH RECURSIVE {queued_entrypoints_cte(q)}, picked AS (
    SELECT entrypoint, count(*) AS n
    FROM (SELECT entrypoint FROM {q} WHERE status = 'picked' LIMIT $3) AS first_picked
    GROUP BY entrypoint
)
SELECT 'c' AS kind, coalesce(e.entrypoint, p.entrypoint) AS entrypoint,
    CASE WHEN e.entrypoint IS NULL THEN 0 ELSE (
        SELECT count(*) FROM (SELECT 1 FROM {q} c WHERE c.status = 'queued'
            AND c.entrypoint = e.entrypoint LIMIT $1) x) END AS queued,
    coalesce(p.n, 0) AS picked,
    CASE WHEN e.entrypoint IS NULL THEN 0 ELSE (
        SELECT count(*) FROM (SELECT 1 FROM {q} c WHERE c.status = 'queued'
            AND c.entrypoint = e.entrypoint AND c.execute_after > now() LIMIT $2) x) END
        AS deferred,
    CASE WHEN e.entrypoint IS NOT NULL THEN (
        SELECT c.execute_after FROM {q} c WHERE c.status = 'queued'
            AND c.entrypoint = e.entrypoint AND c.execute_after <= now()
            ORDER BY c.execute_after LIMIT 1) END AS oldest_ready,
    NULL::bigint AS max_id, NULL::bigint AS max_job_id,
    NULL::bigint AS xmin, NULL::bigint AS xmax, NULL::text AS xip, NULL::timestamptz AS at,
    NULL::float8 AS server_s, NULL::bigint AS queue_bytes
FROM (SELECT entrypoint FROM eps WHERE entrypoint IS NOT NULL) e
FULL JOIN picked p ON p.entrypoint = e.entrypoint
UNION ALL
SELECT 's', NULL, NULL, NULL, NULL, NULL,
    (SELECT coalesce(max(id), 0) FROM {log}),
    (SELECT coalesce(max(job_id), 0) FROM {log}),
    {_snapshot_cols()}, now(), {SERVER_TIME},
    pg_relation_size('{q}'::regclass) AS queue_bytes
"""


def exact_sql(installation: Installation) -> str:
    """Every live state per entrypoint and the log position, in one snapshot."""
    names = installation.settings.qualified
    q, log = names.queue_table, names.queue_table_log
    return f"""
WITH counts AS (
    SELECT entrypoint, 'queued' AS status, count(*) AS n FROM {q}
    WHERE status = 'queued' GROUP BY entrypoint
    UNION ALL
    SELECT entrypoint, 'picked', count(*) FROM {q} WHERE status = 'picked' GROUP BY entrypoint
    UNION ALL
    SELECT entrypoint, 'failed', count(*) FROM {q} WHERE status = 'failed' GROUP BY entrypoint
)
SELECT 'c' AS kind, entrypoint, status, n, NULL::bigint AS max_id, NULL::bigint AS max_job_id,
    NULL::bigint AS xmin, NULL::bigint AS xmax, NULL::text AS xip, NULL::timestamptz AS at,
    NULL::float8 AS server_s
FROM counts
UNION ALL
SELECT 's', NULL, NULL, NULL,
    (SELECT coalesce(max(id), 0) FROM {log}),
    (SELECT coalesce(max(job_id), 0) FROM {log}),
    {_snapshot_cols()}, now(), {SERVER_TIME}
"""


def delta_sql(installation: Installation) -> str:
    """The log rows since the cursor, as (entrypoint, status, state before, count).

    $1 highest id read, $2 the lowest id a late commit can have, $3 xids in progress at the
    last read (an array as text: a bigint[] parameter had asyncpg look int8[] up in the catalog
    on every pool connection the delta first ran on, ~7 round trips, 0.44 s at 50 ms), $4
    highest job id read (a job above it is new: no probe), $5 row cap, $6 the entrypoints
    with queued jobs, whose oldest ready job is read too (one index probe each).
    A late row is one still unaggregated whose inserting transaction was in progress at the
    last read; PgQueuer's aggregation (an UPDATE) gives rows a new xmin, so an aggregated row
    with such an xmin is one already read.

    The ready/deferred split comes with it when it is due (`deferred_sql`'s count, in the same
    snapshot as the delta): $7 the entrypoints to split, $8 whether those with jobs queued in
    this batch are split too, $9 the deferred cap. It was a statement of its own after this
    one: one more round trip before a refresh showed anything (at 50 ms, the overview's return
    from another screen waited for both in turn). Its arm comes after the summary row ('s'),
    whose server time is the delta's alone; the last row ('dt') gives the time after the split.
    """
    names = installation.settings.qualified
    q, log = names.queue_table, names.queue_table_log
    return f"""
WITH rows AS (
    SELECT id, job_id, status::text AS status, entrypoint FROM {log}
    WHERE id > $1
    UNION ALL
    SELECT id, job_id, status::text, entrypoint FROM {log}
    WHERE id > $2 AND id <= $1 AND cardinality($3::text::bigint[]) > 0 AND NOT aggregated
        AND xmin::text::bigint = ANY($3::text::bigint[])
    ORDER BY id
    LIMIT $5
), ordered AS (
    SELECT r.*, lag(r.status) OVER w AS before_in_batch, row_number() OVER w AS nth
    FROM rows r WINDOW w AS (PARTITION BY r.job_id ORDER BY r.id)
), transitions AS (
    SELECT o.entrypoint, o.status, o.nth > 1 OR o.job_id > $4 AS known,
        CASE WHEN o.nth > 1 THEN o.before_in_batch
             WHEN o.job_id > $4 THEN NULL
             ELSE (SELECT p.status::text FROM {log} p
                   WHERE p.job_id = o.job_id AND p.id < o.id
                   ORDER BY p.created DESC, p.id DESC LIMIT 1)
        END AS before
    FROM ordered o
)
SELECT 't' AS kind, entrypoint, status, before, known OR before IS NOT NULL AS before_known,
    count(*) AS n, NULL::bigint AS max_id, NULL::bigint AS max_job_id, NULL::bigint AS log_top,
    NULL::bigint AS xmin, NULL::bigint AS xmax, NULL::text AS xip,
    NULL::timestamptz AS oldest_ready, NULL::float8 AS server_s
FROM transitions GROUP BY 1, 2, 3, 4, 5
UNION ALL
SELECT 'o', e.entrypoint, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    (SELECT c.execute_after FROM {q} c WHERE c.status = 'queued' AND c.entrypoint = e.entrypoint
        AND c.execute_after <= now() ORDER BY c.execute_after LIMIT 1),
    NULL
FROM (SELECT unnest($6::text[]) UNION SELECT entrypoint FROM rows WHERE status = 'queued')
    AS e(entrypoint)
UNION ALL
SELECT 's', NULL, NULL, NULL, NULL, (SELECT count(*) FROM rows),
    greatest($1, (SELECT max(id) FROM rows)),
    greatest($4, (SELECT max(job_id) FROM rows)),
    (SELECT coalesce(max(id), 0) FROM {log}),
    {_snapshot_cols()}, NULL, {SERVER_TIME}
UNION ALL
SELECT 'd', e.entrypoint, NULL, NULL, NULL,
    (SELECT count(*) FROM (SELECT 1 FROM {q} c WHERE c.status = 'queued'
        AND c.entrypoint = e.entrypoint AND c.execute_after > now() LIMIT $9) x),
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT unnest($7::text[]) UNION SELECT entrypoint FROM rows WHERE $8 AND status = 'queued')
    AS e(entrypoint)
UNION ALL
SELECT 'dt', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    {SERVER_TIME}
"""


def deferred_sql(installation: Installation) -> str:
    """Deferred jobs of the given entrypoints (capped) and their oldest ready job, one probe
    each on PgQueuer's `(entrypoint, execute_after) WHERE queued` index."""
    q = installation.settings.qualified.queue_table
    return f"""
SELECT e.entrypoint,
    (SELECT count(*) FROM (SELECT 1 FROM {q} c WHERE c.status = 'queued'
        AND c.entrypoint = e.entrypoint AND c.execute_after > now() LIMIT $2) x) AS deferred,
    (SELECT c.execute_after FROM {q} c WHERE c.status = 'queued' AND c.entrypoint = e.entrypoint
        AND c.execute_after <= now() ORDER BY c.execute_after LIMIT 1) AS oldest_ready,
    {SERVER_TIME} AS server_s
FROM unnest($1::text[]) AS e(entrypoint)
"""


def direct_sql(installation: Installation, *, picked_held: bool) -> str:
    """Queued jobs per entrypoint counted directly (ready, deferred, the oldest ready one), and
    with `picked_held` the picked jobs and held failures too; the log's highest id.

    $1 the log's highest id at the last read, $2 how many log rows since then are too many: the
    queue may be large now, the queued arm is skipped (a one-time filter) and `jumped` says so.
    The picked/held arm comes first, with a row of its own giving the server's time after it:
    Append runs its arms in order, so that is its cost (a scan of the whole table for held
    failures, which no index covers), paced apart from the queued arm's.
    """
    names = installation.settings.qualified
    q, log = names.queue_table, names.queue_table_log
    top = f"(SELECT coalesce(max(id), 0) FROM {log})"
    picked_held_arm = (
        f"""SELECT 'p' AS kind, entrypoint,
    count(*) FILTER (WHERE status = 'picked') AS a,
    count(*) FILTER (WHERE status = 'failed') AS b,
    NULL::timestamptz AS at, NULL::bigint AS log_top, NULL::bool AS jumped,
    NULL::float8 AS server_s
FROM {q} WHERE status IN ('picked', 'failed') GROUP BY entrypoint
UNION ALL
SELECT 'pt', NULL, NULL, NULL, NULL, NULL, NULL, {SERVER_TIME}
UNION ALL
"""
        if picked_held
        else ""
    )
    # Aliases name the columns when the queued arm comes first (after that, they are ignored).
    return f"""
{picked_held_arm}SELECT 'q' AS kind, entrypoint,
    count(*) FILTER (WHERE execute_after <= now()) AS a,
    count(*) FILTER (WHERE execute_after > now()) AS b,
    min(execute_after) FILTER (WHERE execute_after <= now()) AS at,
    NULL::bigint AS log_top, NULL::bool AS jumped, NULL::float8 AS server_s
FROM {q}
WHERE status = 'queued' AND {top} - $1::bigint <= $2::bigint
GROUP BY entrypoint
UNION ALL
SELECT 's', NULL, NULL, NULL, now(), {top}, {top} - $1::bigint > $2::bigint, {SERVER_TIME}
"""


@dataclass(frozen=True)
class DirectRead:
    """What a direct read cost, and whether it found the log moved too far to count."""

    server_s: float | None
    picked_held_s: float | None  # the picked/held arm's share (None: not read)
    jumped: bool = False


DELTA_ROW_CAP = 200_000  # more log rows than this since the last read: count exactly instead
# The ready/deferred split read with a log delta (`DepthTracker.advance`): of every entrypoint
# with queued jobs, or of those that had jobs queued since the last split.
Split = Literal["everyone", "touched"]


class DepthTracker:
    """Keeps queued/picked/held per entrypoint from the log; see the module docstring.

    Not thread-safe; one refresher owns it. `refresh()` does whatever is due: the first look,
    the exact count, or a log delta; `deferred_due` / `refresh_deferred()` the ready/deferred
    split.
    """

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.counts: dict[str, Counts] = {}
        self.cursor: Cursor | None = None
        self.history: deque[tuple[int, int]] = deque(maxlen=HISTORY)  # (xmax, max_id) per read
        self.exact_at: datetime | None = None
        self.first_look_done = False
        self.capped: frozenset[str] = frozenset()
        self.picked_capped = False  # see `TrackedDepth.picked_capped`
        self.resync_requested = True
        self.resync_reasons: dict[str, int] = {}  # why exact counts were asked for, how often
        self.resyncs = 0
        self.small = False  # the first look found a queue table small enough to count at once
        self.generation = 0  # bumped by every new cursor: a delta read across one is dropped
        self.deltas = 0
        self.rows_applied = 0
        self._deferred = _Deferred()
        self._oldest: dict[str, datetime | None] = {}
        self.queued_touched: set[str] = set()
        self.split_s: float | None = None  # the split read with the last delta (`advance`)
        self.split_entrypoints = 0  # ... of how many entrypoints
        # Counting the queue table directly (a small queue) instead of following the log.
        self.direct = False
        self.direct_log_top = 0  # the log's highest id at the last direct read
        self.direct_reads = 0
        self.split_by_direct = False  # the ready/deferred split came with the last direct read
        # "direct" / "follow" / "restart", the latest in order (tests, the scale bench)
        self.switches: deque[str] = deque(maxlen=64)

    # -- control ---------------------------------------------------------------------------

    def request_resync(self, why: str = "asked for") -> None:
        """Count exactly at the next refresh (a TRUNCATE, the console's own write, a key)."""
        self.resync_requested = True
        self.resync_reasons[why] = self.resync_reasons.get(why, 0) + 1

    @property
    def exact(self) -> bool:
        return self.exact_at is not None

    def queued_total(self) -> int:
        return sum(c.queued for c in self.counts.values())

    def enter_direct(self) -> None:
        """Count directly from the next read (the counts now are exact: no jump)."""
        self.direct = True
        self.direct_log_top = self.cursor.max_id if self.cursor is not None else 0
        self.split_by_direct = False
        self.generation += 1  # a delta read in flight is dropped
        self.switches.append("direct")

    def leave_direct(self) -> None:
        """Follow the log from the cursor of the exact count just taken."""
        self.direct = False
        self.switches.append("follow")

    def restart(self, why: str) -> None:
        """Start over with the capped first look (the queue may have grown far beyond a direct
        count's reach); the numbers shown stay until it lands."""
        self.direct = False
        self.cursor = None
        self.exact_at = None
        self.resync_reasons[why] = self.resync_reasons.get(why, 0) + 1
        self.switches.append("restart")

    # -- reads -----------------------------------------------------------------------------

    async def first_look(self, backend: Backend) -> float | None:
        """The capped first look, with the ready/deferred split of what it found."""
        rows = await backend.read(
            first_look_sql(self.installation), FIRST_LOOK_CAP, DEFERRED_CAP, FIRST_LOOK_PICKED_CAP
        )
        counts: dict[str, Counts] = {}
        capped = set()
        deferred: dict[str, int] = {}
        deferred_capped = set()
        oldest: dict[str, datetime | None] = {}
        server_s = None
        for r in rows:
            if r["kind"] == "s":
                self._take_cursor(r)
                server_s = float(r["server_s"])
                self.small = int(r["queue_bytes"]) < SMALL_QUEUE_BYTES
                continue
            entrypoint = str(r["entrypoint"])
            queued = int(r["queued"])
            counts[entrypoint] = Counts(queued=queued, picked=int(r["picked"]))
            if queued >= FIRST_LOOK_CAP:
                capped.add(entrypoint)
            if queued > 0:
                deferred[entrypoint] = int(r["deferred"])
                if deferred[entrypoint] >= DEFERRED_CAP:
                    deferred_capped.add(entrypoint)
                oldest[entrypoint] = r["oldest_ready"]
        self.counts = counts
        self.capped = frozenset(capped)
        self.picked_capped = sum(c.picked for c in counts.values()) >= FIRST_LOOK_PICKED_CAP
        self.first_look_done = True
        self._deferred = _Deferred(deferred, frozenset(deferred_capped))
        self._oldest = oldest
        self.queued_touched = set()
        return server_s

    def _take_cursor(self, r: dict[str, Any]) -> None:
        self.cursor = Cursor(
            max_id=int(r["max_id"]),
            max_job_id=int(r["max_job_id"]),
            xmax=int(r["xmax"]),
            in_progress=tuple(int_array(r["xip"])),
        )
        self.history.clear()
        # Rows of transactions in progress now may have ids back to where the oldest of them
        # began; without an earlier read, allow one row cap below the top.
        self.history.append((int(r["xmin"]), max(0, int(r["max_id"]) - DELTA_ROW_CAP)))
        self.history.append((int(r["xmax"]), int(r["max_id"])))
        self.generation += 1

    async def resync(self, backend: Backend) -> float | None:
        return self.take_exact(await self.read_exact(backend))

    async def read_exact(self, backend: Backend) -> list[dict[str, Any]]:
        """The exact count's rows, not applied yet (`take_exact`): read alongside the first
        look, they are applied after it."""
        return await backend.read_long(
            exact_sql(self.installation), statement_timeout=EXACT_COUNT_TIMEOUT
        )

    def take_exact(self, rows: list[dict[str, Any]]) -> float | None:
        """Apply an exact count read by `read_exact`. Returns the server's time."""
        counts: dict[str, Counts] = {}
        server_s = None
        for r in rows:
            if r["kind"] == "c":
                counts.setdefault(str(r["entrypoint"]), Counts()).add(str(r["status"]), int(r["n"]))
            else:
                self._take_cursor(r)
                self.exact_at = r["at"]
                server_s = float(r["server_s"])
        # Keep entrypoints seen before (now at zero) so their rows do not flicker away.
        for entrypoint in self.counts:
            counts.setdefault(entrypoint, Counts())
        self.counts = counts
        self.capped = frozenset()
        self.picked_capped = False
        self.resync_requested = False
        self.first_look_done = True
        self.resyncs += 1
        return server_s

    async def count_direct(self, backend: Backend, *, picked_held: bool) -> DirectRead:
        """Count the queue table directly; see the module docstring. Without `picked_held`
        the picked and held counts stay as they were."""
        rows = await backend.read(
            direct_sql(self.installation, picked_held=picked_held),
            self.direct_log_top,
            JUMP_LOG_ROWS,
        )
        queued: dict[str, tuple[int, int, datetime | None]] = {}
        picked_failed: dict[str, tuple[int, int]] = {}
        picked_held_s = None
        summary: dict[str, Any] = {}
        for r in rows:
            kind = r["kind"]
            if kind == "q":
                queued[str(r["entrypoint"])] = (int(r["a"]), int(r["b"]), r["at"])
            elif kind == "p":
                picked_failed[str(r["entrypoint"])] = (int(r["a"]), int(r["b"]))
            elif kind == "pt":
                picked_held_s = float(r["server_s"])
            else:
                summary = r
        server_s = float(summary["server_s"])
        self.direct_log_top = int(summary["log_top"])
        if summary["jumped"]:
            return DirectRead(server_s, picked_held_s, jumped=True)
        counts: dict[str, Counts] = {}
        deferred: dict[str, int] = {}
        oldest: dict[str, datetime | None] = {}
        # Entrypoints seen before stay (at zero) so their rows do not flicker away.
        for entrypoint in self.counts.keys() | queued.keys() | picked_failed.keys():
            before = self.counts.get(entrypoint, Counts())
            ready, later, oldest_ready = queued.get(entrypoint, (0, 0, None))
            picked, failed = (
                picked_failed.get(entrypoint, (0, 0))
                if picked_held
                else (before.picked, before.failed)
            )
            counts[entrypoint] = Counts(queued=ready + later, picked=picked, failed=failed)
            if later:
                deferred[entrypoint] = later
            oldest[entrypoint] = oldest_ready
        self.counts = counts
        self._deferred = _Deferred(deferred)
        self._oldest = oldest
        self.capped = frozenset()
        self.exact_at = summary["at"]
        self.first_look_done = True
        if picked_held:
            self.resync_requested = False
        self.direct_reads += 1
        self.split_by_direct = True
        return DirectRead(server_s, picked_held_s)

    def _low_id(self, oldest_in_progress: int | None) -> int:
        """The highest id read before the oldest in-progress transaction began (0: unknown)."""
        assert self.cursor is not None
        if oldest_in_progress is None:
            return self.cursor.max_id
        low = 0
        for xmax, max_id in self.history:
            # A read whose snapshot ended at or before that transaction began: every id that
            # transaction takes is above what that read saw.
            if xmax <= oldest_in_progress:
                low = max(low, max_id)
        return low

    async def advance(self, backend: Backend, *, split: Split | None = None) -> float | None:
        """Apply the log rows since the cursor. Returns the server's time (the delta's: the
        split's is `split_s`).

        With `split`, the ready/deferred split comes in the same statement (`delta_sql`): for
        every entrypoint with queued jobs ("everyone") or those that had jobs queued since the
        last split ("touched"), as `refresh_deferred` reads them. `split_s` says whether it
        was applied (None: not asked for, or the delta was dropped: ask again)."""
        assert self.cursor is not None
        cursor = self.cursor
        generation = self.generation
        xip32 = list(cursor.in_progress)
        first = min(xip32, default=None)
        low = self._low_id(self._full_xid(first) if first is not None else None)
        queued = [e for e, c in self.counts.items() if c.queued > 0]
        self.split_s = None
        rows = await backend.read(
            delta_sql(self.installation),
            cursor.max_id,
            low,
            "{" + ",".join(str(x) for x in xip32) + "}",
            cursor.max_job_id,
            DELTA_ROW_CAP,
            queued,
            queued if split == "everyone" else sorted(self.queued_touched) if split else [],
            split is not None,
            DEFERRED_CAP,
        )
        server_s = None
        if generation != self.generation:  # an exact count landed meanwhile: it has all this
            return server_s
        transitions: list[dict[str, Any]] = []
        oldest: dict[str, datetime | None] = {}
        deferred: dict[str, int] = {}
        split_ended: float | None = None
        for r in rows:
            if r["kind"] == "t":
                transitions.append(r)
                continue
            if r["kind"] == "o":
                oldest[str(r["entrypoint"])] = r["oldest_ready"]
                continue
            if r["kind"] == "d":
                deferred[str(r["entrypoint"])] = int(r["n"])
                continue
            if r["kind"] == "dt":
                split_ended = float(r["server_s"])
                continue
            read = int(r["n"])
            server_s = float(r["server_s"])
            top = int(r["max_id"])
            if read >= DELTA_ROW_CAP or int(r["log_top"]) < cursor.max_id:
                # Too far behind, or the log went backwards (deleted, reset): count exactly.
                self.request_resync("log behind" if read >= DELTA_ROW_CAP else "log went back")
                return server_s
            self.cursor = Cursor(
                max_id=top,
                max_job_id=int(r["max_job_id"]),
                xmax=int(r["xmax"]),
                in_progress=tuple(int_array(r["xip"])),
            )
            self.history.append((int(r["xmax"]), top))
        for r in transitions:
            self._apply(r)
        # Checked once all are applied: the groups come in no particular order.
        for counts in self.counts.values():
            if min(counts.queued, counts.picked, counts.failed) < 0:
                counts.queued = max(0, counts.queued)
                counts.picked = max(0, counts.picked)
                counts.failed = max(0, counts.failed)
                # Something the log does not show happened (rows removed by hand): count
                # again. Not while the first look's lower bounds stand (capped queued and
                # picked counts, held not counted): the exact count under way corrects those,
                # and a second one (seconds at 10M rows) would only double its cost.
                if self.exact:
                    self.request_resync("below zero")
        self._oldest = oldest
        if split is not None:
            self.split_entrypoints = len(deferred)
            self._take_split(deferred, everyone=split == "everyone")
            if server_s is not None and split_ended is not None:
                self.split_s = max(0.0, split_ended - server_s)
            else:
                self.split_s = 0.0
        self.deltas += 1
        return server_s

    def _full_xid(self, xid32: int) -> int:
        """The 64-bit xid of a 32-bit one taken from the last read (same epoch as its xmax)."""
        assert self.cursor is not None
        xmax = self.cursor.xmax
        candidate = (xmax // XID_MOD) * XID_MOD + xid32
        return candidate - XID_MOD if candidate >= xmax else candidate

    def _apply(self, r: dict[str, Any]) -> None:
        entrypoint = str(r["entrypoint"])
        status = str(r["status"])
        n = int(r["n"])
        before = r["before"]
        if not r["before_known"]:
            before = ASSUMED_BEFORE.get(status)
        elif status not in VALID.get(before, frozenset()):
            # e.g. queued -> queued: an unlogged change between the two log rows
            self.request_resync(f"{before} -> {status}")
        counts = self.counts.setdefault(entrypoint, Counts())
        if status == "queued":
            self.queued_touched.add(entrypoint)  # some of them may be deferred
        if before in LIVE:
            counts.add(str(before), -n)
        if status in LIVE:
            counts.add(status, n)
        self.rows_applied += n

    async def refresh_deferred(
        self, backend: Backend, *, touched_only: bool = False
    ) -> float | None:
        """The ready/deferred split and the oldest ready job (paced by the caller): for every
        entrypoint with queued jobs, or only those that had jobs queued since the last read."""
        names = [
            e
            for e, c in self.counts.items()
            if c.queued > 0 and (not touched_only or e in self.queued_touched)
        ]
        self.queued_touched = set()
        if not touched_only:
            self._deferred = _Deferred()
        if not names:
            return None
        rows = await backend.read(deferred_sql(self.installation), names, DEFERRED_CAP)
        server_s = None
        for r in rows:
            self._oldest[str(r["entrypoint"])] = r["oldest_ready"]
            server_s = max(server_s or 0.0, float(r["server_s"]))
        self._take_split({str(r["entrypoint"]): int(r["deferred"]) for r in rows}, everyone=False)
        return server_s

    def _take_split(self, counts: dict[str, int], *, everyone: bool) -> None:
        """Deferred jobs per entrypoint as read (`everyone`: the others have none)."""
        if everyone:
            self._deferred = _Deferred()
        self.queued_touched = set()
        deferred = dict(self._deferred.counts)
        capped = set(self._deferred.capped)
        for entrypoint, n in counts.items():
            deferred[entrypoint] = n
            capped.discard(entrypoint)
            if n >= DEFERRED_CAP:
                capped.add(entrypoint)
        self._deferred = _Deferred(deferred, frozenset(capped))

    # -- the result ------------------------------------------------------------------------

    def reading(self, server_s: float | None) -> TrackedDepth:
        depth: dict[str, Depth] = {}
        picked: dict[str, int] = {}
        held: dict[str, int] = {}
        for entrypoint, c in self.counts.items():
            deferred = min(self._deferred.counts.get(entrypoint, 0), c.queued)
            depth[entrypoint] = Depth(
                ready=c.queued - deferred,
                deferred=deferred,
                oldest_ready_since=self._oldest.get(entrypoint) if c.queued else None,
            )
            picked[entrypoint] = c.picked
            held[entrypoint] = c.failed
        return TrackedDepth(
            depth=depth,
            picked=picked,
            held=held,
            server_s=server_s,
            capped=self.capped | self._deferred.capped,
            exact=self.exact and not self.capped,
            exact_at=self.exact_at,
            held_known=self.exact,
            picked_capped=self.picked_capped and not self.exact,
        )
