"""Charts: throughput per entrypoint over the last hour, run-time percentiles, drain estimates.

The table has one row per entrypoint (sparkline of completions, rates, percentiles, backlog and
what happens to it at the current rates); below it, the selected entrypoint's (or all
entrypoints') enqueued, completed and exceptions per minute as full-width sparklines.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from pgq_console.core.backend import Backend
from pgq_console.core.charts import (
    CHART_MINUTES,
    PERCENTILES_BUDGET,
    RATE_WINDOW,
    ChartsSnapshot,
    DrainEstimate,
    EntrypointSeries,
    MinuteCache,
    carry_percentiles,
    fetch_charts,
    fetch_charts_then_percentiles,
)
from pgq_console.core.clock import Clock
from pgq_console.core.paced import PacedRead
from pgq_console.core.text import printable
from pgq_console.core.why import span
from pgq_console.screens.polled import PolledScreen
from pgq_console.widgets import format as fmt
from pgq_console.widgets.live_table import LiveTable

ALL = "*all*"
COLUMNS = (
    # What needs action first: backlog and where it is heading fit in 80 columns.
    ("entrypoint", "Entrypoint"),
    ("backlog", "Backlog"),
    ("drain", "At current rates"),
    ("trend", "Done/min 60m"),
    ("done", "Done/1h"),
    ("err", "Err/1h"),
    ("p50", "p50"),
    ("p95", "p95"),
    ("p99", "p99"),
)
TREND_WIDTH = 15
# Percentile cells while their read (the slow half) is under way.
PENDING = "…"
# Rates measured over the last minutes say little about the next hours: a crossing predicted
# further out than this is not shown.
CROSSING_HORIZON_S = 3600.0


def drain_text(drain: DrainEstimate) -> str:
    """What happens to the backlog, in a few words an on-call engineer can act on."""
    trend = drain.trend
    if trend == "empty":
        return "no backlog"
    parts: list[str] = []
    if trend == "stuck":
        parts.append("nothing completes")
    elif trend == "growing":
        parts.append(f"grows {fmt.rate(drain.net_per_min)}/min")
    elif trend == "draining":
        empties = drain.empties_in_s
        at_least = "≥ " if drain.backlog_capped else ""
        parts.append(f"empty in {at_least}{fmt.seconds(empties)}" if empties else "empty")
    else:
        parts.append("steady" if drain.backlog else "keeping up")
    crosses = drain.crosses_limit_in_s
    limit = fmt.seconds(drain.age_limit_s)
    if crosses == 0:
        parts.append(f"oldest over {limit}")
    elif crosses is not None and trend != "steady" and crosses <= CROSSING_HORIZON_S:
        # A steady queue's rates differ by noise: extrapolating that difference for hours
        # ("steady, oldest > 5m00s in 4h24m" for 8 ready jobs) predicts nothing.
        at_most = "≤ " if drain.backlog_capped else ""
        parts.append(f"oldest > {limit} in {at_most}{fmt.seconds(crosses)}")
    return ", ".join(parts)


class ChartsScreen(PolledScreen[ChartsSnapshot]):
    title_text = "Charts (last hour)"
    interval_s = 10.0
    BINDINGS = [
        *PolledScreen.BINDINGS,
        Binding("a", "show_all", "All entrypoints", id="charts.show-all"),
    ]
    GLOSSARY = (
        ("Backlog", "ready jobs now (queued, due)"),
        ("At current rates", "when the backlog empties at the last minutes' in/out rates"),
        (
            "Done/min 60m",
            "completions per minute over the last hour, the right end the minute under way"
            " (so far)",
        ),
        ("Done/1h Err/1h", "completions / exceptions logged in the last hour"),
        ("p50 p95 p99", "run time (picked to done) of the last 15 minutes' jobs, percentiles"),
        ("…", "still being read (the percentiles come after the counts on a big log)"),
        ("≥N", "counted up to N per entrypoint, no further: the exact count is on 1 Overview"),
        ("→ N more", "columns left out for width: → and ← page through them"),
    )

    def __init__(self, backend: Backend, clock: Clock) -> None:
        super().__init__(backend, clock)
        self.focus_entrypoint: str | None = None  # None: all entrypoints
        self.percentiles_pace = PacedRead(clock, budget=PERCENTILES_BUDGET, every_s=self.interval_s)
        self._percentiles: ChartsSnapshot | None = None  # the last read with percentiles
        # The complete minutes read before: a reading reads only the last minutes.
        self._minutes = MinuteCache()

    async def fetch(self) -> ChartsSnapshot:
        # The counts shown at once; the percentiles (the slow half, read beside them) when
        # they land, as often as their budget allows: the last ones are shown in between.
        last = self._percentiles
        if last is not None and not self.percentiles_pace.due:
            counts = await fetch_charts(self.backend, percentiles=False, minutes=self._minutes)
            return carry_percentiles(counts, last)

        def show_counts(counts: ChartsSnapshot) -> None:
            self._post_result(counts if last is None else carry_percentiles(counts, last))

        self._percentiles = await self.percentiles_pace.read(
            fetch_charts_then_percentiles(self.backend, show_counts, self._minutes)
        )
        return self._percentiles

    def compose_body(self) -> ComposeResult:
        yield LiveTable(COLUMNS, id="charts-table")
        with Vertical(id="charts-detail"):
            yield Static(id="chart-title")
            yield Static(id="chart-enqueued-label", classes="chart-label")
            yield Sparkline([], id="chart-enqueued", classes="chart")
            yield Static(id="chart-completed-label", classes="chart-label")
            yield Sparkline([], id="chart-completed", classes="chart")
            yield Static(id="chart-exceptions-label", classes="chart-label")
            yield Sparkline([], id="chart-exceptions", classes="chart chart-errors")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#charts-table", LiveTable).focus()

    def extra_status(self) -> str:
        rates = f"rates over the last {fmt.seconds(RATE_WINDOW.total_seconds())}"
        pace = self.percentiles_pace
        if not pace.slowed:
            return rates
        return f"{rates} · percentiles every {span(pace.gap_s)} (a read takes {pace.took_s:.1f}s)"

    def show(self, data: ChartsSnapshot) -> None:
        pending = data.percentiles_pending
        rows = {s.entrypoint: self._cells(s, pending) for s in data.series}
        self.query_one("#charts-table", LiveTable).apply(rows)
        self._show_detail()

    def _cells(self, series: EntrypointSeries, pending: bool = False) -> dict[str, Text]:
        style = self.app.theme_variables
        drain = series.drain
        alarming = drain.trend in ("growing", "stuck") or drain.crosses_limit_in_s is not None
        return {
            "entrypoint": Text(printable(series.entrypoint, limit=22)),
            "trend": Text(
                fmt.sparkline(series.completed, TREND_WIDTH), style=style.get("status-picked", "")
            ),
            "done": Text(fmt.count(series.completed_1h), justify="right"),
            "err": Text(
                fmt.count(series.exceptions_1h),
                justify="right",
                style=style.get("status-exception", "") if series.exceptions_1h else "",
            ),
            "backlog": Text(
                ("≥" if drain.backlog_capped else "") + fmt.count(drain.backlog), justify="right"
            ),
            "drain": Text(
                drain_text(drain), style=f"bold {style.get('status-held', '')}" if alarming else ""
            ),
            **{
                name: Text(PENDING, justify="right", style=style.get("muted", ""))
                if pending
                else Text(fmt.seconds(value), justify="right")
                for name, value in (
                    ("p50", series.p50_s),
                    ("p95", series.p95_s),
                    ("p99", series.p99_s),
                )
            },
        }

    @on(LiveTable.RowHighlighted, "#charts-table")
    def _follow_cursor(self, event: LiveTable.RowHighlighted) -> None:
        self.focus_entrypoint = event.row_key
        self._show_detail()

    def action_show_all(self) -> None:
        self.focus_entrypoint = None
        self._show_detail()

    def _show_detail(self) -> None:
        data = self.data
        if data is None:
            return
        series = data.get(self.focus_entrypoint) if self.focus_entrypoint else None
        if series is None:
            series = data.total()
        title = Text(f" {printable(series.entrypoint, limit=40)}", style="bold")
        title.append(f" — per minute, {CHART_MINUTES} minutes to now  (a: all entrypoints)")
        self.query_one("#chart-title", Static).update(title)
        for name in ("enqueued", "completed", "exceptions"):
            values: tuple[int, ...] = getattr(series, name)
            label = Text(
                f" {name}: peak {fmt.count(max(values, default=0))}/min, "
                f"last full minute {fmt.count(values[-2] if len(values) > 1 else 0)}, "
                f"1h total {fmt.count(sum(values))}"
            )
            self.query_one(f"#chart-{name}-label", Static).update(label)
            self.query_one(f"#chart-{name}", Sparkline).data = [float(v) for v in values]
