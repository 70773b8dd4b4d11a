"""Browsing the queue table, one job's detail and history, and failure groups from the log.

Pages are keyset pages over the primary key (`id < last` newest first, `id > last` oldest
first): never OFFSET, never the whole table. The filter line becomes a `Predicate` (SQL over
the alias `job` with bound parameters), the same one the write actions re-check.

Filter line: words are AND-ed; a leading `!` negates one.
    ep:send_email   ep:send_*        entrypoint (comma list, * wildcard); a bare word = ep contains
    status:failed   status:queued,picked   (also `ready`, `deferred`); status:failed looks at the
                    newest HELD_SCAN_CAP ids only unless the held-failures index exists
    id:123  id:>1000  id:1,2,3       prio:>5  prio:<=0  prio:3
    age:>10m  age:<2h                created that long ago (s, m, h, d)
    payload:text  header:text        search payload / headers; no index can help, so this scans
                                     at most the newest SEARCH_SCAN_CAP rows (statement timeout too)

A word that parses to nothing (`ep:`, `ep:,`, `status:,`, `id:1,,2`) is an error, never dropped:
bulk writes are built from `JobFilter.scope`, the very predicate the list shows.
"""

from __future__ import annotations

from pgq_console.core.jobs.detail import PAYLOAD_PAGE_BYTES, JobDetail, fetch_detail
from pgq_console.core.jobs.failures import (
    HELD_FILTER,
    TREND_HOURS,
    FailureGroup,
    FailureGroups,
    failure_group_predicate,
    fetch_failure_groups,
    fetch_held_and_groups,
)
from pgq_console.core.jobs.filter import HELD_SCAN_CAP, SEARCH_SCAN_CAP, JobFilter, parse_filter
from pgq_console.core.jobs.held import forget_held_index, held_index_usable
from pgq_console.core.jobs.pages import PAGE_SIZE, JobPage, JobRow, fetch_page, list_query
from pgq_console.core.jobs.payload import render_payload

__all__ = [
    "FailureGroup",
    "FailureGroups",
    "HELD_FILTER",
    "HELD_SCAN_CAP",
    "JobDetail",
    "JobFilter",
    "JobPage",
    "JobRow",
    "PAGE_SIZE",
    "PAYLOAD_PAGE_BYTES",
    "SEARCH_SCAN_CAP",
    "TREND_HOURS",
    "failure_group_predicate",
    "fetch_detail",
    "fetch_failure_groups",
    "fetch_held_and_groups",
    "fetch_page",
    "forget_held_index",
    "held_index_usable",
    "list_query",
    "parse_filter",
    "render_payload",
]
