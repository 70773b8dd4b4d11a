"""`check` thresholds in the Nagios range syntax (`10`, `10:`, `~:10`, `10:20`, `@10:20`), next to
today's `CRIT` and `WARN,CRIT` forms, parsed on their own and run against real PostgreSQL."""

from __future__ import annotations

import math

import pytest

from pgq_console.core.errors import ConsoleError
from pgq_console.core.nagios import NagiosRange, NagiosState, parse_range
from pgq_console.scripting import parse_threshold
from tests.test_scripting import run, script_dsn

__all__ = ["script_dsn"]  # the seeded database of test_scripting: 7 held, send_email 10 min old


@pytest.mark.parametrize(
    ("text", "alerting", "quiet"),
    [
        ("10", [11, -1], [0, 10]),  # outside 0..10
        ("10:", [9.9], [10, 1e9]),  # below 10
        ("~:10", [10.5], [-1e9, 0, 10]),  # above 10
        ("10:20", [9, 21], [10, 15, 20]),  # outside 10..20
        ("@10:20", [10, 15, 20], [9, 21]),  # inside 10..20
        ("0", [1], [0]),  # anything at all
        ("-5:5", [-6, 6], [-5, 0, 5]),
    ],
)
def test_range_alerts_where_nagios_says(
    text: str, alerting: list[float], quiet: list[float]
) -> None:
    parsed = parse_range(text, float, what="x")
    assert [parsed.alerts(v) for v in alerting] == [True] * len(alerting), parsed
    assert [parsed.alerts(v) for v in quiet] == [False] * len(quiet), parsed


def test_range_forms_parse_to_their_bounds() -> None:
    assert parse_range("10", float, what="x") == NagiosRange(0, 10)
    assert parse_range("10:", float, what="x") == NagiosRange(10, math.inf)
    assert parse_range("~:10", float, what="x") == NagiosRange(-math.inf, 10)
    assert parse_range("@10:20", float, what="x") == NagiosRange(10, 20, inside=True)


@pytest.mark.parametrize("text", ["", "@", "20:10", "-3", "1:2:3", "abc", "~"])
def test_bad_ranges_are_one_clear_error(text: str) -> None:
    with pytest.raises(ConsoleError, match="--max-failed"):
        parse_threshold(text or ",", what="--max-failed")


def test_todays_forms_keep_their_meaning() -> None:
    plain = parse_threshold("5,10", what="x")
    assert [plain.state(v) for v in (5, 6, 11)] == [0, 1, 2]
    assert plain.perfdata() == "5;10"
    age = parse_threshold("2m,5m", what="x", duration=True)
    assert [age.state(v) for v in (120, 121, 301)] == [0, 1, 2]
    assert age.perfdata() == "120;300"
    with pytest.raises(ConsoleError, match="WARN 10 is above CRIT 5"):
        parse_threshold("10,5", what="x")


def test_ranges_take_durations_and_show_in_perfdata() -> None:
    age = parse_threshold("@1m:5m,~:1h", what="x", duration=True)
    assert age.perfdata() == "@60:300;~:3600"
    assert [age.state(v) for v in (30, 120, 3601)] == [0, 1, 2]


@pytest.mark.parametrize(
    ("args", "state", "words"),
    [
        (["--max-failed", "10:"], NagiosState.CRITICAL, "PGQ CRITICAL - held 7 < 10"),
        (["--max-failed", "~:6"], NagiosState.CRITICAL, "PGQ CRITICAL - held 7 > 6"),
        (["--max-failed", "~:8"], NagiosState.OK, "PGQ OK"),
        (["--max-failed", "@5:8"], NagiosState.CRITICAL, "held 7 inside 5..8"),
        (["--max-failed", "1:6,0:20"], NagiosState.WARNING, "held 7 outside 1..6"),
        (["--max-failed", "7:7"], NagiosState.OK, "PGQ OK"),
        (["--max-age", "send_email=~:1m"], NagiosState.CRITICAL, "send_email oldest ready"),
        (["--max-age", "send_email=@1m:1h"], NagiosState.CRITICAL, "inside 1m00s..1h00m"),
        (["--max-failed", "abc:"], NagiosState.UNKNOWN, "PGQ UNKNOWN - --max-failed"),
    ],
)
def test_check_with_ranges(
    capsys: pytest.CaptureFixture[str],
    script_dsn: str,
    args: list[str],
    state: NagiosState,
    words: str,
) -> None:
    code, out, _ = run(capsys, "check", "--dsn", script_dsn, *args)
    assert code == state, out
    assert words in out, out
    if state is not NagiosState.UNKNOWN:
        assert "held=7;" in out  # perfdata carries the range as given
