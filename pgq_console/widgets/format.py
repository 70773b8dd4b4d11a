"""How numbers, ages and trends read on screen."""

from __future__ import annotations

from datetime import datetime

SPARK_GLYPHS = " ▁▂▃▄▅▆▇█"


def count(value: int) -> str:
    if value < 10_000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:.1f}k" if value < 100_000 else f"{value // 1000}k"
    return f"{value / 1_000_000:.1f}M"


def rate(per_second: float) -> str:
    if per_second == 0:
        return "0"
    if per_second < 10:
        return f"{per_second:.1f}"
    return count(round(per_second))


# A shown rate is kept while the new one is this close to it (relative): a rate wobbling by a
# few percent (9.9, 10, 9.9 jobs/s) repaints its row and tiles on every refresh and says nothing.
RATE_TOLERANCE = 0.05


def steady_rate(shown: float | None, new: float) -> float:
    """The rate to show: `shown` while `new` is within `RATE_TOLERANCE` (or one displayed step)
    of it, else `new`. Starting or stopping (zero) always shows."""
    if shown is None or shown == 0 or new == 0:
        return new
    step = 0.1 if shown < 10 else 1.0
    return shown if abs(new - shown) <= max(step, RATE_TOLERANCE * shown) else new


def steady_duration(shown: float | None, new: float | None) -> float | None:
    """A duration (p50, p95) to show: `shown` while `new` is within a tenth of it, else `new`
    (an hour's percentiles move by a millisecond on every refresh)."""
    if shown is None or new is None or shown == 0:
        return new
    return shown if abs(new - shown) <= 0.1 * shown else new


def steady_share(shown: float | None, new: float) -> float:
    """A share (0.004 = 0.4 %) to show: `shown` while `new` is within 0.2 percentage points
    or a fifth of it, else `new` (the console's database time wobbles by 0.1 % per refresh)."""
    if shown is None or (shown == 0) != (new == 0):
        return new
    return shown if abs(new - shown) < max(0.002, 0.2 * shown) else new


def seconds(value: float | None) -> str:
    """A duration: 850ms, 4.2s, 3m05s, 2h10m, 3d04h."""
    if value is None:
        return "–"
    value = max(0.0, value)  # clocks of client and server can disagree by a little
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    whole = int(value)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "–"
    return seconds(max(0.0, (now - since).total_seconds()))


def coarse_age(value: float) -> str:
    """An age that changes seldom, for a line repainted over SSH: "<1s", whole seconds under
    10 s, then 10 s steps, whole minutes, whole hours (an age ticking every second is a repaint
    a second that says nothing new)."""
    value = max(0.0, value)
    if value < 1:
        return "<1s"
    if value < 10:
        return f"{int(value)}s"
    if value < 60:
        return f"{int(value) // 10 * 10}s"
    if value < 3600:
        return f"{int(value) // 60}m"
    return f"{int(value) // 3600}h"


def steady_latency(shown: float | None, new: float) -> float:
    """A latency to show (`coarse_latency`): `shown` while `new` is within a factor of two of
    it or both are under 20 ms, else `new` (NOTIFY latencies of 3, 12, 6 ms are one reading)."""
    if shown is None:
        return new
    if max(shown, new) < 0.02 or (shown > 0 and 0.5 <= new / shown <= 2):
        return shown
    return new


def coarse_latency(value: float) -> str:
    """A latency that changes seldom: "<10ms", 10 ms steps under 100 ms, 100 ms steps under a
    second, then as `seconds`."""
    value = max(0.0, value)
    if value < 0.01:
        return "<10ms"
    if value < 0.1:
        return f"{int(value * 100) * 10}ms"
    if value < 1:
        return f"{int(value * 10) * 100}ms"
    return seconds(value)


def sparkline(values: tuple[int, ...], width: int) -> str:
    """The last values folded into `width` cells, scaled to the highest."""
    if width <= 0:
        return ""
    per_cell = max(1, -(-len(values) // width))
    cells = [sum(values[i : i + per_cell]) for i in range(0, len(values), per_cell)][-width:]
    peak = max(cells, default=0)
    if peak == 0:
        return "·" * len(cells)
    top = len(SPARK_GLYPHS) - 1
    return "".join(SPARK_GLYPHS[max(1, round(v / peak * top))] if v else "·" for v in cells)
