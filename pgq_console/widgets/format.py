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
