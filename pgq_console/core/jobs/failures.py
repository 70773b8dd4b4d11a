"""Failure groups from the log: failed jobs grouped by exception fingerprint, with a trend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pgq_console.core.actions import Predicate
from pgq_console.core.fingerprint import Fingerprint, sql_culprit_frame, sql_masked_message
from pgq_console.core.jobs.filter import JobFilter
from pgq_console.core.stats import int_array

if TYPE_CHECKING:
    from pgq_console.core.backend import Backend
    from pgq_console.core.jobs.pages import JobPage

# -- failures ---------------------------------------------------------------------------------


TREND_HOURS = 24
# Fingerprinting costs regular expressions per log row (~60 µs): the newest this many
# exceptions of the window are grouped, and the screen says so when there are more.
GROUP_SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class FailureGroup:
    """Logged exceptions (and holds) sharing one fingerprint (core/fingerprint.py)."""

    fingerprint: Fingerprint
    count: int
    held: int  # jobs of this group still held (status failed) in the queue
    first_seen: datetime
    last_seen: datetime
    entrypoints: tuple[str, ...]
    hourly: tuple[int, ...]  # exceptions per hour, oldest first, the last entry the latest hour
    sample_message: str  # the latest occurrence's own (unmasked) message
    sample_traceback: str
    sample_job_id: int
    since: datetime | None = None  # the window's start: `held` counts failures logged after it

    @property
    def key(self) -> str:
        return self.fingerprint.key

    @property
    def exception_type(self) -> str:
        return self.fingerprint.exception_type

    @property
    def message(self) -> str:
        """The masked message: what every occurrence of the group says."""
        return self.fingerprint.message


@dataclass(frozen=True)
class FailureGroups:
    groups: tuple[FailureGroup, ...]  # newest last seen first
    total: int  # groups in the window, shown or not
    scanned: int = 0  # exceptions grouped (the newest `GROUP_SCAN_LIMIT`)
    exceptions: int = 0  # exceptions logged in the window

    @property
    def partial(self) -> bool:
        return self.exceptions > self.scanned


def _fingerprint_sql(alias: str, first_param: int) -> tuple[str, str, str, tuple[str, ...]]:
    """(type, masked message, culprit frame) expressions over log alias `alias`, and params."""
    masked, mask_args = sql_masked_message(
        f"coalesce({alias}.traceback->>'exception_message', '')", first_param
    )
    frame, frame_args = sql_culprit_frame(
        f"{alias}.traceback->>'traceback'", first_param + len(mask_args)
    )
    kind = f"coalesce({alias}.traceback->>'exception_type', '')"
    return kind, masked, frame, mask_args + frame_args


def failure_group_predicate(
    group: Fingerprint,
    log_table: str,
    *,
    statuses: tuple[str, ...] = ("failed",),
    since: datetime | None = None,
) -> Predicate:
    """Jobs with a log row of one of `statuses` whose failure has this fingerprint, logged after
    `since` (the group's window: so the write's rows are the ones the group counts).

    `("failed",)`: held jobs that failed this way; `("exception",)`: jobs that raised it and were
    retried (queued or picked again).
    """
    kind, masked, frame, args = _fingerprint_sql("l", 6)
    window = "AND ($5::timestamptz IS NULL OR l.created > $5::timestamptz) "
    return Predicate(
        f"EXISTS (SELECT 1 FROM {log_table} AS l WHERE l.job_id = job.id "
        "AND l.status::text = ANY($1::text[]) "
        f"AND {kind} = $2 AND {masked} = $3 AND {frame} = $4 {window})",
        (list(statuses), group.exception_type, group.message, group.frame, since, *args),
        f"failed with {group.title()[:80]}" + (f" at {group.frame[-60:]}" if group.frame else ""),
    )


async def fetch_held_and_groups(
    backend: Backend, now: datetime, *, held_limit: int, group_limit: int
) -> tuple[JobPage, FailureGroups]:
    """The Failures screen's reading: the held jobs' page and the failure groups, both sent at
    once (on a pool, one round trip for the two: a key press over 50 ms waited two)."""
    from pgq_console.core.jobs.pages import fetch_page

    held, groups = await asyncio.gather(
        fetch_page(backend, HELD_FILTER, limit=held_limit),
        fetch_failure_groups(backend, now, limit=group_limit),
    )
    return held, groups


async def fetch_failure_groups(
    backend: Backend,
    now: datetime,
    *,
    window: timedelta = timedelta(hours=TREND_HOURS),
    limit: int = 200,
    scan_limit: int = GROUP_SCAN_LIMIT,
) -> FailureGroups:
    """Exceptions and holds logged since `now - window` (the console's clock) by fingerprint.

    The database groups (the rules travel as regular expressions, see core/fingerprint.py), so
    a day of log rows is not shipped here; samples are read for the groups returned only.
    """
    settings = backend.installation.settings.qualified
    masked, mask_args = sql_masked_message("coalesce(l.traceback->>'exception_message', '')", 4)
    frame, frame_args = sql_culprit_frame("d.tb", 4 + len(mask_args))
    args = mask_args + frame_args
    # The culprit frame is worked out once per code path, not per row: rows whose traceback
    # differs only by line numbers and the final message line share `tb_key`.
    rows = await backend.read_heavy(
        f"""WITH recent AS MATERIALIZED (
            SELECT l.id, l.job_id, l.created, l.entrypoint,
                (l.status = 'failed' AND job.id IS NOT NULL) AS held,
                coalesce(l.traceback->>'exception_type', '') AS exception_type,
                {masked} AS masked,
                l.traceback->>'traceback' AS tb,
                md5(regexp_replace(
                    CASE WHEN right(l.traceback->>'traceback',
                            length(l.traceback->>'exception_message') + 1)
                            = (l.traceback->>'exception_message') || E'\n'
                        THEN left(l.traceback->>'traceback',
                            length(l.traceback->>'traceback')
                            - length(l.traceback->>'exception_message') - 1)
                        ELSE coalesce(l.traceback->>'traceback', '') END,
                    'line [0-9]+', 'line', 'g')) AS tb_key,
                least($3::int - 1, greatest(0,
                    floor(extract(epoch FROM ($2::timestamptz - l.created)) / 3600)))::int
                    AS hours_ago
            -- the newest rows first, then the expressions: for those rows only
            FROM (
                SELECT * FROM {settings.queue_table_log}
                WHERE created > $1 AND status IN ('exception', 'failed')
                ORDER BY created DESC
                LIMIT {int(scan_limit)}
            ) AS l
            LEFT JOIN {settings.queue_table} AS job
                ON job.id = l.job_id AND job.status = 'failed'
        ), frames AS (
            SELECT d.tb_key, {frame} AS frame
            FROM (SELECT DISTINCT ON (tb_key) tb_key, tb FROM recent) AS d
        ), keyed AS (
            SELECT r.*, f.frame FROM recent AS r JOIN frames AS f USING (tb_key)
        ), groups AS (
            SELECT exception_type, masked, frame, count(*) AS n,
                count(DISTINCT job_id) FILTER (WHERE held) AS held,
                min(created) AS first_seen, max(created) AS last_seen,
                array_agg(DISTINCT entrypoint ORDER BY entrypoint) AS entrypoints,
                (array_agg(id ORDER BY created DESC, id DESC))[1] AS sample_id
            FROM keyed GROUP BY exception_type, masked, frame
        ), trend AS (
            SELECT exception_type, masked, frame,
                array_agg(hours_ago)::text AS hours, array_agg(n)::text AS counts
            FROM (SELECT exception_type, masked, frame, hours_ago, count(*) AS n
                  FROM keyed GROUP BY exception_type, masked, frame, hours_ago) AS h
            GROUP BY exception_type, masked, frame
        ), shown AS (
            SELECT g.*, t.hours, t.counts, count(*) OVER () AS total,
                (SELECT count(*) FROM recent) AS scanned,
                (SELECT count(*) FROM {settings.queue_table_log} AS c
                 WHERE c.created > $1 AND c.status IN ('exception', 'failed')) AS exceptions
            FROM groups AS g JOIN trend AS t USING (exception_type, masked, frame)
            ORDER BY g.last_seen DESC, g.sample_id DESC
            LIMIT {int(limit)}
        )
        SELECT shown.*, s.job_id AS sample_job_id,
            coalesce(s.traceback->>'exception_message', '') AS sample_message,
            coalesce(s.traceback->>'traceback', '') AS sample_traceback
        FROM shown JOIN {settings.queue_table_log} AS s ON s.id = shown.sample_id
        ORDER BY shown.last_seen DESC, shown.sample_id DESC""",
        now - window,
        now,
        max(1, int(window.total_seconds() // 3600)),
        *args,
    )
    groups = []
    for r in rows:
        hourly = [0] * max(1, int(window.total_seconds() // 3600))
        # Integer arrays come as text: asyncpg reads int4[] / int8[] only after looking them
        # up in the catalog, per connection (6 round trips, 0.3 s at 50 ms: a key press).
        for hours_ago, n in zip(int_array(r["hours"]), int_array(r["counts"]), strict=True):
            hourly[len(hourly) - 1 - int(hours_ago)] += int(n)
        groups.append(
            FailureGroup(
                fingerprint=Fingerprint(
                    str(r["exception_type"]), str(r["masked"]), str(r["frame"])
                ),
                count=int(r["n"]),
                held=int(r["held"]),
                first_seen=r["first_seen"],
                last_seen=r["last_seen"],
                entrypoints=tuple(str(e) for e in r["entrypoints"]),
                hourly=tuple(hourly),
                sample_message=str(r["sample_message"]),
                sample_traceback=str(r["sample_traceback"]),
                sample_job_id=int(r["sample_job_id"]),
                since=now - window,
            )
        )
    if not rows:
        return FailureGroups((), 0)
    first = rows[0]
    return FailureGroups(
        tuple(groups), int(first["total"]), int(first["scanned"]), int(first["exceptions"])
    )


HELD_FILTER = JobFilter(
    "status:failed", (Predicate("job.status = 'failed'", (), "held"),), reads_held=True
)
