"""Headline tiles, a live rate chart and an event feed: the overview's use of a large terminal.

Everything here is fed by the screen (nothing queries): the tiles and the chart from the
refresher's snapshots, the feed from `core/pulse.EventFeed`. Text from the database or another
console is shown as rich `Text` (never markup), made printable first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import groupby
from typing import Self

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Digits, Static

from pgq_console.core.pulse import ChartColumns, FeedEvent, ThroughputSample, chart_columns
from pgq_console.core.text import printable
from pgq_console.widgets import format as fmt
from pgq_console.widgets.pacing import changed_line_regions, paced

OLDEST_WARN_S = 300.0
# What Textual's Digits can draw; the rest of a value (a unit: k, M) goes to the tile's caption.
_DIGIT_CHARS = frozenset(" 0123456789+-:.,")


def split_for_digits(value: str) -> tuple[str, str]:
    """("1.2", "k") for "1.2k": the part drawn large and the unit left over."""
    head = 0
    while head < len(value) and value[head] in _DIGIT_CHARS:
        head += 1
    return value[:head] or "–", value[head:]


def clock_duration(seconds: float | None) -> str:
    """A duration in digits only: 4:05 (m:ss), 1:02:03 (h:mm:ss), 51:00:00 past a day."""
    if seconds is None:
        return "–"
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PulseTile(Digits):
    """One headline number drawn large, its name in the border, a caption under it."""

    _digits_only = False  # an update of the digits alone (`show`, `refresh`)

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__("–", id=id)
        self.border_title = title
        self._shown: tuple[str, str, str] | None = None

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        # New digits repaint the content only: the border did not change (two of the tile's
        # five lines on the terminal). Nor does the layout: a tile is as wide as its share of
        # the row (`width: 1fr`) and Digits are always 3 lines high, so digits of another
        # width (9 -> 10, "–" -> 0:01), which Digits lays out for, change no size; a layout of
        # the overview at 200 entrypoints costs 10-30 ms, and came about once a second.
        if self._digits_only and not regions and not recompose:
            width, height = self.content_region.size
            sized = self.styles.width is not None and not self.styles.width.is_auto
            if width > 0 and height > 0 and (sized or not layout):
                regions, layout = (Region(0, 0, width, height),), False
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def show(self, value: str, caption: str = "", *, variant: str = "") -> None:
        # Unchanged: no repaint (each one rewrites the tile's five lines on the terminal).
        if (value, caption, variant) == self._shown:
            return
        self._shown = (value, caption, variant)
        big, unit = split_for_digits(value)
        self._digits_only = True
        try:
            self.update(big)
        finally:
            self._digits_only = False
        subtitle = " ".join(part for part in (unit, caption) if part)
        if subtitle != self.border_subtitle:  # setting it repaints the border, even unchanged
            self.border_subtitle = subtitle
        for name in ("-warning", "-error"):
            self.set_class(name == f"-{variant}", name)


class PulseTiles(Horizontal):
    """The overview's headline numbers: ready, picked, held, oldest ready, throughput."""

    def compose(self) -> ComposeResult:
        yield PulseTile("ready", id="tile-ready")
        yield PulseTile("picked (in flight)", id="tile-picked")
        yield PulseTile("held", id="tile-held")
        yield PulseTile("oldest ready", id="tile-oldest")
        yield PulseTile("done/s", id="tile-throughput")

    def show(
        self,
        *,
        ready: int,
        deferred: int,
        picked: int,
        held: int,
        oldest_ready_s: float | None,
        rate_in: float,
        rate_out: float,
    ) -> None:
        self.query_one("#tile-ready", PulseTile).show(
            fmt.count(ready), f"+{fmt.count(deferred)} deferred" if deferred else ""
        )
        self.query_one("#tile-picked", PulseTile).show(fmt.count(picked))
        self.query_one("#tile-held", PulseTile).show(
            fmt.count(held), "see 3 Failures" if held else "", variant="error" if held else ""
        )
        late = oldest_ready_s is not None and oldest_ready_s > OLDEST_WARN_S
        self.query_one("#tile-oldest", PulseTile).show(
            clock_duration(oldest_ready_s),
            ("h:mm:ss" if (oldest_ready_s or 0) >= 3600 else "m:ss") + (" ⚠" if late else ""),
            variant="warning" if late else "",
        )
        self.query_one("#tile-throughput", PulseTile).show(
            fmt.rate(rate_out), f"in {fmt.rate(rate_in)}/s"
        )


BARS = " ▁▂▃▄▅▆▇█"
# A column nothing was measured in (no reading then): not a zero (a zero is "·").
NOT_MEASURED = "░"
NOT_MEASURED_LEGEND = f"{NOT_MEASURED} not measured (no reading: overview hidden or paused)"


def chart_rate(per_second: float) -> str:
    """A rate for the chart: small ones keep two decimals (2 errors a minute is 0.03/s)."""
    if 0 < per_second < 0.1:
        return f"{per_second:.2f}"
    return fmt.rate(per_second)


def bar_rows(
    values: Sequence[float | None],
    height: int,
    peak: float,
    unmeasured: frozenset[int] = frozenset(),
) -> list[str]:
    """`values` (one per column, None: no sample) as `height` lines of block glyphs, top line
    first, scaled from zero to `peak`; the `unmeasured` columns are shaded full height."""
    steps = len(BARS) - 1
    rows: list[str] = []
    for line in reversed(range(height)):
        cells = []
        for column, value in enumerate(values):
            if column in unmeasured:
                cells.append(NOT_MEASURED)
                continue
            if value is None:
                cells.append(" ")
                continue
            if value <= 0 or peak <= 0:
                cells.append("·" if line == 0 else " ")
                continue
            level = max(1, round(value / peak * steps * height))  # in eighths of a cell
            filled = level - line * steps
            cells.append(BARS[max(0, min(steps, filled))])
        rows.append("".join(cells))
    return rows


class RateChart(Widget):
    """In, out and errors per second over the last minutes, one sample per refresh.

    Each column is `slot_s` seconds, the newest at the right. A column nothing was measured in
    (the overview was not on screen, paused, or disconnected) is shaded and the legend says
    so: a gap reads as a gap, not as zero (`core.pulse.chart_columns`).
    """

    COMPONENT_CLASSES = {"rate-chart--in", "rate-chart--out", "rate-chart--errors"}
    SERIES = (("in", "rate-chart--in"), ("out", "rate-chart--out"), ("err", "rate-chart--errors"))
    LABEL_WIDTH = 4
    VALUE_WIDTH = 14

    def __init__(self, *, slot_s: float = 5.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.slot_s = slot_s
        self.samples: tuple[ThroughputSample, ...] = ()  # the latest given
        # The samples drawn, and the newest one's time: the columns are counted back from the
        # newest sample, so every sample moves them; drawn once per column (`slot_s`).
        self._drawn: tuple[ThroughputSample, ...] = ()
        self._drawn_at: datetime | None = None
        self._lines: list[str] = []  # the plain lines last shown, and the width they had
        self._width = -1
        self._title = ""

    def show(self, samples: Sequence[ThroughputSample], *, force: bool = False) -> None:
        """Plot `samples`, at most once per column's time (`slot_s` of the samples' clock)
        unless `force` (a state change: errors appeared); only the lines that read differently
        are repainted (a new sample mostly changes the newest column and the values at the
        right)."""
        self.samples = tuple(samples)
        latest = self.samples[-1].at if self.samples else None
        if (
            not force
            and latest is not None
            and self._drawn_at is not None
            and self.size.width == self._width
            and paced((latest - self._drawn_at).total_seconds(), self.slot_s)
        ):
            return  # drawn less than a column ago: the next column's sample draws it
        self._drawn, self._drawn_at = self.samples, latest
        columns = max(1, self.size.width - self.LABEL_WIDTH - self.VALUE_WIDTH)
        title = f"throughput per second, last {fmt.seconds(columns * self.slot_s)}"
        if title != self._title:  # setting a border title repaints the whole widget
            self._title = self.border_title = title
        subtitle = NOT_MEASURED_LEGEND if self.columns(columns).unmeasured else ""
        if subtitle != self.border_subtitle:
            self.border_subtitle = subtitle
        lines = self.render().plain.split("\n")
        before, self._lines = self._lines, lines
        regions = changed_line_regions(before, lines)
        if regions is None or self.size.width != self._width:
            self._width = self.size.width
            self.refresh()
        elif regions:
            self.refresh(*regions)

    def columns(self, width: int) -> ChartColumns:
        """Per series, one value per column, oldest first, and the unmeasured columns."""
        return chart_columns(self._drawn, width, self.slot_s)

    def render(self) -> Text:
        width = max(1, self.size.width - self.LABEL_WIDTH - self.VALUE_WIDTH)
        per_series = max(1, self.size.height // len(self.SERIES))
        text = Text(no_wrap=True, overflow="crop")
        latest = self._drawn[-1] if self._drawn else None
        now_values = (
            (latest.rate_in, latest.rate_out, latest.errors) if latest else (None, None, None)
        )
        columns = self.columns(width)
        for index, ((name, component), values, current) in enumerate(
            zip(self.SERIES, columns.series, now_values, strict=True)
        ):
            style = self.get_component_rich_style(component)
            present = [v for v in values if v is not None]
            peak = max(present, default=0.0)
            rows = bar_rows(values, per_series, peak, columns.unmeasured)
            for line, row in enumerate(rows):
                if index or line:
                    text.append("\n")
                label = name if line == len(rows) - 1 else ""
                text.append(f"{label:<{self.LABEL_WIDTH}}", style="bold")
                # In runs: unmeasured ones dim, the rest in the series' colour.
                for unmeasured, run in groupby(
                    enumerate(row), key=lambda cell: cell[0] in columns.unmeasured
                ):
                    text.append("".join(c for _, c in run), style="dim" if unmeasured else style)
                if line == len(rows) - 1:
                    value = "–" if current is None else f"{chart_rate(current)}/s"
                    text.append(f" {value:>6}", style=style)
                    text.append(f" ↑{chart_rate(peak)}"[: self.VALUE_WIDTH - 7], style="dim")
        return text


def feed_age(at: datetime, now: datetime) -> str:
    """How long ago an event was noticed: "now" under a second, else coarse ("4s ago", "20s
    ago", "3m ago": `fmt.coarse_age`), so the ages do not repaint the feed on every paint."""
    elapsed = (now - at).total_seconds()
    return "now" if elapsed < 1 else f"{fmt.coarse_age(elapsed)} ago"


class EventFeedView(Static):
    """Recent events, newest first: time, kind, what happened (plain text).

    The ages tick every second: only the lines (and the part of them) that read differently
    are repainted, not the whole feed.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self.events: tuple[FeedEvent, ...] = ()
        self.border_title = "recent events"
        self._shown: Text | None = None
        self._shown_size = (-1, -1)  # the content size the text was last shown at
        self.quiet_reason = ""  # why the feed is quiet (its border subtitle), or ""

    def show(self, events: Sequence[FeedEvent], now: datetime) -> None:
        self.events = tuple(events)
        if not events:
            self._show_text(
                Text(
                    "nothing yet: new failure kinds, workers joining or dying, and "
                    "writes by any console show here",
                    style="italic",
                )
            )
            return
        variables = self.app.theme_variables
        colors = {
            "error": variables.get("error", ""),
            "warning": variables.get("warning", ""),
            "information": "",
        }
        text = Text(no_wrap=True, overflow="ellipsis")
        for index, event in enumerate(events):
            if index:
                text.append("\n")
            text.append(f"{feed_age(event.at, now):>10} ", style="dim")
            text.append(f"{event.kind.value:<8}", style=colors.get(event.severity, ""))
            text.append(printable(event.text, limit=300))
        self._show_text(text)

    def _show_text(self, text: Text) -> None:
        # Unchanged (no new event, no age moved on): no repaint and no layout.
        if text == self._shown:
            return
        before = self._shown
        self._shown = text
        size = (self.content_region.width, self.content_region.height)
        regions = None
        if before is not None and size == self._shown_size and before.spans == text.spans:
            regions = changed_line_regions(before.plain.split("\n"), text.plain.split("\n"))
        self._shown_size = size
        if regions is None:
            self.update(text)
        elif regions:
            self.refresh(*regions)

    def render(self) -> Text:
        return self._shown if self._shown is not None else Text("")
