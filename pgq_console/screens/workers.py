"""Workers and stale jobs: who holds picked jobs, whose heartbeat stopped, and reclaim."""

from __future__ import annotations

from datetime import timedelta

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.text import printable
from pgq_console.core.workers import (
    DEFAULT_STALE_AFTER,
    ReclaimAction,
    WorkerMemory,
    WorkersSnapshot,
    WorkerState,
    fetch_workers,
)
from pgq_console.screens.polled import PolledScreen
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable

WORKER_COLUMNS = (
    ("worker", "Worker"),
    ("state", "State"),
    ("picked", "Picked"),
    ("stale", "Stale"),
    ("newest", "Newest hb"),
    ("oldest", "Oldest hb"),
    ("entrypoints", "Entrypoints"),
)
STALE_COLUMNS = (
    ("id", "Job"),
    ("entrypoint", "Entrypoint"),
    ("worker", "Worker"),
    ("heartbeat", "Heartbeat"),
    ("priority", "Prio"),
    ("attempts", "Attempts"),
)
THRESHOLDS = (
    timedelta(seconds=30),
    timedelta(seconds=90),
    timedelta(minutes=5),
    timedelta(minutes=15),
)


def short_id(queue_manager_id: str) -> str:
    return queue_manager_id[:8]


class WorkersScreen(PolledScreen[WorkersSnapshot]):
    title_text = "Workers & stale jobs"
    interval_s = 3.0
    BINDINGS = [
        *PolledScreen.BINDINGS,
        Binding("R", "reclaim", "Reclaim stale", id="workers.reclaim"),
        Binding("t", "threshold", "Threshold", id="workers.threshold"),
        Binding("tab", "focus_next", "Switch table", show=False, id="workers.focus-next"),
    ]
    WRITE_ACTIONS = frozenset({"reclaim"})
    # PgQueuer lists no workers: a worker is known by the jobs it holds (core/workers.py).
    GLOSSARY = (
        ("busy", "holds picked jobs, one beating within the threshold, or held one < 30s ago"),
        ("lagging", "busy, but some of its jobs missed their heartbeat (R can reclaim those)"),
        ("idle", "held jobs earlier (last 10m), none for 30s; they finished while beating"),
        (
            "DEAD",
            "holds jobs none of which beat within the threshold (kill -9, lost host), "
            "or was dead when its jobs were taken over",
        ),
        ("Picked", "jobs it holds now (status picked, its queue_manager_id)"),
        ("Stale", "of those, jobs with no heartbeat for the threshold (t changes it)"),
        ("Newest/Oldest hb", "time since the freshest / stalest heartbeat of its jobs"),
        (
            "first 200 of N",
            "more workers than one read lists: the dead first; the counts above are of all",
        ),
    )

    def __init__(self, backend: Backend, clock: Clock) -> None:
        super().__init__(backend, clock)
        self.stale_after = DEFAULT_STALE_AFTER
        self.memory = WorkerMemory()

    async def fetch(self) -> WorkersSnapshot:
        snapshot = await fetch_workers(self.backend, self.stale_after, self.clock.now())
        return self.memory.merge(snapshot, self.clock.now())

    def compose_body(self) -> ComposeResult:
        yield Static(id="workers-summary")
        yield LiveTable(WORKER_COLUMNS, id="workers-table")
        yield Static(id="stale-title")
        yield LiveTable(STALE_COLUMNS, id="stale-table")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#workers-table", LiveTable).focus()

    def extra_status(self) -> str:
        return f"dead after {fmt.seconds(self.stale_after.total_seconds())} without heartbeat"

    def show(self, data: WorkersSnapshot) -> None:
        now = self.clock.now()
        style = self.app.theme_variables
        states = {w.queue_manager_id: w.state(now, data.stale_after) for w in data.workers}
        dead = [key for key, state in states.items() if state is WorkerState.DEAD]
        busy = [key for key, state in states.items() if state is WorkerState.BUSY]
        idle = [key for key, state in states.items() if state is WorkerState.IDLE]
        summary = Text(" ")
        dead_count = len(dead)
        if data.truncated:  # counted by the read: most workers are not listed
            dead_count = data.dead_total
            summary.append(f"{data.holding_total - data.dead_total:,} busy", style="bold")
        else:
            summary.append(f"{len(busy)} busy", style="bold")
            summary.append(f", {len(idle)} idle (seen in the last 10m)")
        if dead_count:
            summary.append(f"   {dead_count:,} dead", style=f"bold {style.get('status-held', '')}")
        summary.append(f"   stale jobs {data.stale_total:,}")
        if data.stale_total > len(data.stale_jobs):
            summary.append(f" (oldest {len(data.stale_jobs)} shown)")
        if data.truncated:
            summary.append(
                f"   first {data.holding_listed} of {data.holding_total:,} workers listed"
                " (dead first)",
                style=style.get("muted", ""),
            )
        self.query_one("#workers-summary", Static).update(summary)

        rows = {}
        # Most urgent first: dead workers (their jobs wait on nobody), then busy, then idle.
        ordered = sorted(
            data.workers,
            key=lambda w: (
                states[w.queue_manager_id] is not WorkerState.DEAD,
                states[w.queue_manager_id] is WorkerState.IDLE,
                w.queue_manager_id,
            ),
        )
        for worker in ordered:
            shown_state = states[worker.queue_manager_id]
            if shown_state is WorkerState.DEAD:
                state = Text("DEAD", style=f"bold {style.get('status-held', '')}")
            elif shown_state is WorkerState.IDLE:
                state = Text(f"idle {fmt.age(worker.last_seen, now)}", style=style.get("muted", ""))
            elif worker.idle:  # between jobs, within the grace
                state = Text("busy", style=style.get("status-ready", ""))
            elif worker.stale:
                state = Text("lagging", style=style.get("status-stale", ""))
            else:
                state = Text("busy", style=style.get("status-ready", ""))
            rows[worker.queue_manager_id] = {
                "worker": Text(short_id(worker.queue_manager_id)),
                "state": state,
                "picked": Text(fmt.count(worker.picked), justify="right"),
                "stale": Text(
                    fmt.count(worker.stale),
                    justify="right",
                    style=style.get("status-stale", "") if worker.stale else "",
                ),
                "newest": Text(fmt.age(worker.newest_heartbeat, now), justify="right"),
                "oldest": Text(fmt.age(worker.oldest_heartbeat, now), justify="right"),
                "entrypoints": Text(printable(", ".join(worker.entrypoints), limit=40)),
            }
        self.query_one("#workers-table", LiveTable).apply(rows)

        stale_rows = {}
        # Grouped by worker: a dead worker's jobs sit together, oldest heartbeat first.
        for job in sorted(data.stale_jobs, key=lambda j: (j.queue_manager_id or "", j.heartbeat)):
            stale_rows[str(job.id)] = {
                "id": Text(str(job.id), justify="right"),
                "entrypoint": Text(printable(job.entrypoint, limit=24)),
                "worker": Text(short_id(job.queue_manager_id or "–")),
                "heartbeat": Text(fmt.age(job.heartbeat, now) + " ago", justify="right"),
                "priority": Text(str(job.priority), justify="right"),
                "attempts": Text(str(job.attempts), justify="right"),
            }
        title = f" Stale jobs (no heartbeat for {fmt.seconds(data.stale_after.total_seconds())})"
        if not stale_rows:
            title += ": none"
        elif not self.backend.read_only:
            title += ": R reclaims the selected worker's"
        self.query_one("#stale-title", Static).update(Text(title))
        self.query_one("#stale-table", LiveTable).apply(stale_rows)

    def selected_worker(self) -> str | None:
        """The worker under the cursor of the focused table (the stale job's worker there)."""
        data = self.data
        if data is None:
            return None
        stale_table = self.query_one("#stale-table", LiveTable)
        if stale_table.has_focus and stale_table.selected_key:
            job_id = int(stale_table.selected_key)
            job = next((j for j in data.stale_jobs if j.id == job_id), None)
            return job.queue_manager_id if job else None
        return self.query_one("#workers-table", LiveTable).selected_key

    def action_reclaim(self) -> None:
        worker = self.selected_worker()
        data = self.data
        if worker is None or data is None or not data.stale_of(worker):
            row = next(
                (w for w in (data.workers if data else ()) if w.queue_manager_id == worker), None
            )
            if row is None or not row.stale:
                self.notify(
                    "No stale jobs for the selected worker: pick a worker marked DEAD or lagging",
                    severity="warning",
                    markup=False,
                )
                return
        assert worker is not None
        self.confirm_action(ReclaimAction.for_worker(self.backend, worker, self.stale_after))

    def action_threshold(self) -> None:
        index = THRESHOLDS.index(self.stale_after) if self.stale_after in THRESHOLDS else 0
        self.stale_after = THRESHOLDS[(index + 1) % len(THRESHOLDS)]
        self.notify(
            f"Stale after {fmt.seconds(self.stale_after.total_seconds())} without heartbeat",
            markup=False,
        )
        self.loop.request_refresh()
