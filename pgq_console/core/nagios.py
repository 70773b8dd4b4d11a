"""Nagios plugin thresholds: the standard range syntax, and `check`'s own `WARN,CRIT` pairs.

A range (Nagios plugin development guidelines, "Threshold and ranges") alerts when a value is
outside `start..end`, or inside it with a leading `@`:

    10      outside 0..10     (> 10 or < 0)
    10:     outside 10..inf   (< 10)
    ~:10    outside -inf..10  (> 10)
    10:20   outside 10..20
    @10:20  inside 10..20

For the counts and ages `check` looks at (never negative) a plain `10` means "more than 10", as
it always did. Ages take durations anywhere a number goes (`~:5m`, `1m:1h`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from pgq_console.core.errors import ConsoleError


class NagiosState(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


@dataclass(frozen=True)
class NagiosRange:
    start: float  # -inf for `~`
    end: float  # inf when left out (`10:`)
    inside: bool = False  # `@`: alert inside the range instead of outside

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within

    def text(self, number: Callable[[float], str]) -> str:
        """The range in Nagios syntax (perfdata's warn/crit fields), numbers by `number`."""
        start = "~" if self.start == -math.inf else number(self.start)
        end = "" if self.end == math.inf else number(self.end)
        prefix = "@" if self.inside else ""
        if not self.inside and self.start == 0 and end:
            return end  # the plain form
        return f"{prefix}{start}:{end}"

    def violation(self, number: Callable[[float], str]) -> str:
        """How a value that alerted relates to the range: `> 10`, `< 10`, `outside 10..20`."""
        if self.inside:
            return f"inside {number(self.start)}..{number(self.end)}"
        if self.end == math.inf:
            return f"< {number(self.start)}"
        if self.start in (0, -math.inf):
            return f"> {number(self.end)}"  # below 0 never happens to a count or an age
        return f"outside {number(self.start)}..{number(self.end)}"


def parse_range(text: str, value: Callable[[str], float], *, what: str) -> NagiosRange:
    """One range; `value` reads one number (or duration) and raises ConsoleError if it can't."""
    spec = text.strip()
    inside = spec.startswith("@")
    if inside:
        spec = spec[1:]
    if not spec:
        raise ConsoleError(f"{what}: empty range in {text!r}")
    if ":" not in spec:
        end = value(spec)
        if end < 0:
            raise ConsoleError(f"{what}: must not be negative: {text!r}")
        return NagiosRange(0.0, end, inside)
    low, _, high = spec.partition(":")
    start = -math.inf if low == "~" else value(low) if low else 0.0
    end = value(high) if high else math.inf
    if start > end:
        raise ConsoleError(f"{what}: range start above its end: {text!r}")
    return NagiosRange(start, end, inside)


@dataclass(frozen=True)
class Threshold:
    """A value alerting on `critical` is CRITICAL, else on `warn` WARNING, else OK."""

    warn: NagiosRange | None
    critical: NagiosRange

    def state(self, value: float) -> NagiosState:
        if self.critical.alerts(value):
            return NagiosState.CRITICAL
        if self.warn is not None and self.warn.alerts(value):
            return NagiosState.WARNING
        return NagiosState.OK

    def perfdata(self) -> str:
        """`warn;crit` for Nagios perfdata (numbers in the perfdata's base unit)."""
        warn = "" if self.warn is None else self.warn.text(number)
        return f"{warn};{self.critical.text(number)}"

    def violation(self, state: NagiosState, show: Callable[[float], str]) -> str:
        broken = self.critical if state is NagiosState.CRITICAL or self.warn is None else self.warn
        return broken.violation(show)


def number(value: float) -> str:
    return f"{value:g}"


def parse_threshold(text: str, value: Callable[[str], float], *, what: str) -> Threshold:
    """`CRIT` or `WARN,CRIT`, each a Nagios range."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 2) or not all(parts):
        raise ConsoleError(f"{what}: expected CRIT or WARN,CRIT, got {text!r}")
    ranges = [parse_range(part, value, what=what) for part in parts]
    if len(ranges) == 1:
        return Threshold(None, ranges[0])
    warn, critical = ranges
    plain = (0.0, False)
    if (warn.start, warn.inside) == plain == (critical.start, critical.inside) and (
        warn.end > critical.end
    ):
        raise ConsoleError(f"{what}: WARN {parts[0]} is above CRIT {parts[1]}")
    return Threshold(warn, critical)
