"""Database health for the queue: bloat and vacuum, long transactions, lock waits, NOTIFY queue,
listeners, schema status, with install/upgrade as guarded actions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from pgq_console.core.actions import ActionResult
from pgq_console.core.backend import Backend
from pgq_console.core.clock import Clock
from pgq_console.core.health import (
    LONG_TRANSACTION,
    HealthSnapshot,
    SchemaAction,
    Session,
    fetch_health,
)
from pgq_console.core.index_cache import STATISTICS_LARGE_ROWS
from pgq_console.core.indexes import (
    HeldIndexAction,
    IndexAction,
    IndexState,
    StatisticsIndexAction,
)
from pgq_console.core.text import one_line, printable
from pgq_console.screens.action_confirm import confirm_write
from pgq_console.screens.polled import PolledScreen
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable

TABLE_COLUMNS = (
    ("table", "Table"),
    ("size", "Size"),
    ("live", "Live"),
    ("dead", "Dead"),
    ("dead_pct", "Dead%"),
    ("autovacuum", "Autovacuum"),
    ("kind", "Kind"),
)
SESSION_COLUMNS = (
    ("kind", "Why"),
    ("pid", "Pid"),
    ("age", "Xact age"),
    ("state", "State"),
    ("app", "Application"),
    ("detail", "Waiting on / blocked by"),
    ("query", "Query"),
)
DEAD_RATIO_WARN = 0.2
NOTIFY_WARN = 0.5


# Reads again after an index build ended while the reads still say it is not usable.
REREADS_AFTER_BUILD = 3


@dataclass
class IndexBuildEnded(Message):
    """An index build started from this screen ended (built or failed): read again now."""

    name: str


def size(value: int | None) -> str:
    if value is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value = value / 1024  # type: ignore[assignment]
    return str(value)


class HealthScreen(PolledScreen[HealthSnapshot]):
    title_text = "Database health"
    interval_s = 5.0
    BINDINGS = [
        *PolledScreen.BINDINGS,
        Binding("u", "upgrade", "Upgrade", id="database.upgrade"),
        Binding("i", "install", "Install schema", show=False, id="database.install"),
        Binding("f", "held_index", "Index held", id="database.held-index"),
        Binding("s", "statistics_index", "Index stats", id="database.statistics-index"),
    ]
    GLOSSARY = (
        ("Live / Dead", "live rows / dead row versions left by updates and deletes"),
        ("Dead%", "dead of all row versions: high means vacuum is behind (bloat, slow scans)"),
        ("Autovacuum", "time since autovacuum last ran on the table"),
        ("Kind", "logged or unlogged (unlogged tables are emptied by a crash)"),
        (
            "held failures",
            "index on status = 'failed' (f creates it, CONCURRENTLY); plan of the count",
        ),
        (
            "statistics",
            "index on the statistics table's created (s creates it): the overview's hour reads",
        ),
        ("Xact age", "how long that transaction has been open: it holds back vacuum"),
        ("Waiting on / blocked by", "the lock it waits for, or the session blocking it"),
        ("→ N more", "columns left out for width: → and ← page through them"),
    )
    WRITE_ACTIONS = frozenset({"upgrade", "install", "held_index", "statistics_index"})

    def __init__(self, backend: Backend, clock: Clock) -> None:
        super().__init__(backend, clock)
        # Index builds that ended, by index name: reads left to see them usable.
        self._rereads_for_build: dict[str, int] = {}

    async def fetch(self) -> HealthSnapshot:
        return await fetch_health(self.backend)

    def read_cost(self, data: HealthSnapshot) -> float | None:
        return data.read_cost_s

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="health-body"):
            yield Static(id="health-schema")
            yield Static(id="health-notify")
            yield Static(id="health-held-index")
            yield Static(id="health-statistics-index")
            yield LiveTable(TABLE_COLUMNS, id="health-tables")
            yield Static(id="health-sessions-title")
            yield LiveTable(SESSION_COLUMNS, id="health-sessions")
            yield Static(id="health-listeners")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#health-sessions", LiveTable).focus()

    def show(self, data: HealthSnapshot) -> None:
        self._reread_if_stale(data)
        now = self.clock.now()
        style = self.app.theme_variables
        bad = f"bold {style.get('status-held', '')}"
        ok = style.get("status-ready", "")

        schema = data.schema
        line = Text(" schema: ")
        line.append(schema.summary, style=ok if schema.installed and not schema.pending else bad)
        if not self.backend.read_only:
            if schema.pending:
                line.append("  (u: review and upgrade)")
            elif not schema.installed and not schema.problem:
                line.append("  (i: review and install)")
        line.append(f"   PostgreSQL {data.server_version}", style=style.get("muted", ""))
        self.query_one("#health-schema", Static).update(line)

        usage = data.notify_queue_usage
        notify = Text(" NOTIFY queue ")
        notify.append(f"{usage * 100:.1f}% used", style=bad if usage >= NOTIFY_WARN else ok)
        if usage >= NOTIFY_WARN:
            notify.append(" — a listener is not consuming (stuck in a transaction?)", style=bad)
        self.query_one("#health-notify", Static).update(notify)
        self.query_one("#health-held-index", Static).update(self._held_index_line(data, bad, ok))
        self.query_one("#health-statistics-index", Static).update(
            self._statistics_index_line(data, bad, ok)
        )

        rows = {}
        for table in data.tables:
            warn = table.dead_ratio > DEAD_RATIO_WARN and table.dead_tuples > 1000
            rows[table.name] = {
                "table": Text(printable(table.name)),
                "size": Text(size(table.total_bytes), justify="right"),
                "live": Text(fmt.count(table.live_tuples), justify="right"),
                "dead": Text(fmt.count(table.dead_tuples), justify="right"),
                "dead_pct": Text(
                    f"{table.dead_ratio * 100:.0f}%", justify="right", style=bad if warn else ""
                ),
                "autovacuum": Text(
                    f"{fmt.age(table.last_autovacuum, now)} ago"
                    if table.last_autovacuum
                    else "never"
                ),
                "kind": Text(table.persistence),
            }
        self.query_one("#health-tables", LiveTable).apply(rows)

        sessions: dict[str, dict[str, Text]] = {}
        for session in data.lock_waits:
            sessions[f"lock-{session.pid}"] = self._session_cells(
                "lock wait", session, now, f"{session.relation}, blocked by {_pids(session)}"
            )
        for session in data.long_transactions:
            why = "idle in xact" if session.state.startswith("idle in") else "long xact"
            detail = f"blocked by {_pids(session)}" if session.blocked_by else session.wait_event
            sessions[f"long-{session.pid}"] = self._session_cells(why, session, now, detail)
        self.query_one("#health-sessions", LiveTable).apply(sessions)
        title = Text(
            f" Transactions open > {fmt.seconds(LONG_TRANSACTION.total_seconds())} or idle in"
            " one (they hold back vacuum), lock waits on queue tables: "
        )
        title.append(str(len(sessions)) if sessions else "none", style=bad if sessions else ok)
        if data.sizes_problem:
            title.append(f"   sizes unavailable: {data.sizes_problem}", style=bad)
        self.query_one("#health-sessions-title", Static).update(title)

        listeners = Text(" Listening on ")
        listeners.append(self.backend.installation.channel, style="bold")
        listeners.append(f": {len(data.listeners)} dedicated LISTEN connection(s)")
        if data.listeners:
            apps = sorted({printable(s.application_name or "?", limit=24) for s in data.listeners})
            listeners.append(" (" + ", ".join(apps[:4]) + (", …" if len(apps) > 4 else "") + ")")
        listeners.append(
            "; workers that LISTEN on their query connection are not counted",
            style=style.get("muted", ""),
        )
        self.query_one("#health-listeners", Static).update(listeners)

    def _offers_indexes(self, data: HealthSnapshot) -> bool:
        return not (self.backend.read_only or data.standby)

    def _held_index_line(self, data: HealthSnapshot, bad: str, ok: str) -> Text:
        """Whether held failures have an index, and the plan of their count as it runs now."""
        return self._index_line(
            Text(" held failures: "),
            data.held_index,
            bad,
            ok,
            missing=(
                "counts and status:failed pages read the table",
                "no index (PgQueuer has none)",
                True,
            ),
            hint="  (f: review and create)" if self._offers_indexes(data) else "",
        )

    def _statistics_index_line(self, data: HealthSnapshot, bad: str, ok: str) -> Text:
        """Whether the statistics table has an index on created, how large it is (nothing
        prunes it), and the plan of the overview's hour read as it runs now."""
        index = data.statistics_index
        rows = index.table_rows if index is not None else None
        if rows is None:  # never analyzed: the statistics collector's count
            table = self.backend.installation.settings.statistics_table
            rows = next((t.live_tuples for t in data.tables if t.name == table), 0)
        large = rows >= STATISTICS_LARGE_ROWS
        return self._index_line(
            Text(" statistics: "),
            index,
            bad,
            ok,
            missing=(
                "the overview's hour reads scan it all" if large else "not needed while small",
                f"~{fmt.count(rows)} rows, no index on created",
                large,
            ),
            hint="  (s: review and create)" if large and self._offers_indexes(data) else "",
        )

    def _index_line(
        self,
        line: Text,
        index: IndexState | None,
        bad: str,
        ok: str,
        *,
        missing: tuple[str, str, bool],
        hint: str,
    ) -> Text:
        """A suggested index's state, and the top of its statement's plan as it runs now.
        `missing`: what reads without it, how to say it is missing, whether that is a problem."""
        muted = self.app.theme_variables.get("muted", "")
        if index is None:
            line.append("index state unknown", style=bad)
            return line
        why, absent, problem = missing
        if index.usable:
            line.append(f"indexed ({printable(index.name)})", style=ok)
        elif index.building is not None:
            line.append(f"building {printable(index.name)}: {printable(index.building)}")
        elif index.exists:
            line.append(f"INVALID index: {why}", style=bad)
            line.append(hint)
        else:
            line.append(f"{absent}: {why}", style=bad if problem else muted)
            line.append(hint)
        # The plan's top node without its cost estimates (they move with every ANALYZE).
        plan = re.sub(r"\s*\(cost=[^)]*\)", "", index.plan[0]).strip() if index.plan else "?"
        line.append(f"   plan: {printable(plan, limit=80)}", style=muted)
        return line

    def _session_cells(
        self, why: str, session: Session, now: datetime, detail: str
    ) -> dict[str, Text]:
        return {
            "kind": Text(why),
            "pid": Text(str(session.pid), justify="right"),
            "age": Text(fmt.age(session.xact_start, now), justify="right"),
            "state": Text(printable(session.state, limit=20)),
            "app": Text(printable(session.application_name or "?", limit=20)),
            "detail": Text(printable(detail, limit=30)),
            "query": Text(printable(one_line(session.query), limit=60)),
        }

    def action_upgrade(self) -> None:
        self.confirm_action(SchemaAction(upgrade=True))

    def action_install(self) -> None:
        self.confirm_action(SchemaAction(upgrade=False))

    def action_held_index(self) -> None:
        self.create_index(HeldIndexAction())

    def action_statistics_index(self) -> None:
        self.create_index(StatisticsIndexAction())

    def create_index(self, action: IndexAction) -> None:
        """The guarded dialog; once the build it starts ends (aside, after the dialog closed),
        the screen reads again at once instead of at its next poll."""

        def after(result: ActionResult | None) -> None:
            self.loop.request_refresh()
            build, index = action.build, action.index
            if result is not None and build is not None and index is not None:
                name = index.name
                build.add_done_callback(lambda _task: self.post_message(IndexBuildEnded(name)))

        confirm_write(self, self.backend, action, after)

    @on(IndexBuildEnded)
    def _build_ended(self, message: IndexBuildEnded) -> None:
        self._rereads_for_build[message.name] = REREADS_AFTER_BUILD
        self.loop.request_refresh()

    def _reread_if_stale(self, data: HealthSnapshot) -> None:
        """A build ended but this read says the index is not usable: the read began before the
        build ended (a refresh asked for during a read waits for the next interval), so read
        again; a few times at most (the index may have been dropped since)."""
        for state in (data.held_index, data.statistics_index):
            if state is None or state.name not in self._rereads_for_build:
                continue
            left = self._rereads_for_build.pop(state.name)
            if not state.usable and left > 0:
                self._rereads_for_build[state.name] = left - 1
                self.loop.request_refresh()


def _pids(session: Session) -> str:
    return ", ".join(str(p) for p in session.blocked_by) or "?"
