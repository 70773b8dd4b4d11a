"""merge_rows: an unchanged row is the previous object (the screen tells it by identity); a
row that reads differently in any field is built again, as a first reading would build it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from pgq_console.core.models import Durations, EntrypointRow
from pgq_console.core.stats import Depth, Windows, merge_rows

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)


def inputs() -> tuple[dict[str, Depth], dict[str, Windows], dict[str, Durations]]:
    depth = {"emails": Depth(ready=3, deferred=1, oldest_ready_since=NOW)}
    windows = {
        "emails": Windows(
            picked=2,
            held=1,
            completed_1m=40,
            exceptions_1m=1,
            completed_1h=900,
            exceptions_1h=4,
            rate_in=4.0,
            rate_out=3.5,
            sparkline=(1,) * 30,
        ),
        "reports": Windows(completed_1h=3),
    }
    return depth, windows, {"emails": Durations(0.2, 1.5)}


def test_unchanged_rows_are_the_previous_objects() -> None:
    first = merge_rows(*inputs())
    again = merge_rows(*inputs(), previous={row.entrypoint: row for row in first})
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))


def test_a_change_in_any_field_builds_the_row_again() -> None:
    first = merge_rows(*inputs())
    previous = {row.entrypoint: row for row in first}
    changes = {
        "ready": ("depth", {"ready": 4}),
        "deferred": ("depth", {"deferred": 2}),
        "oldest_ready_since": ("depth", {"oldest_ready_since": NOW - timedelta(seconds=1)}),
        "picked": ("windows", {"picked": 3}),
        "held": ("windows", {"held": 0}),
        "completed_1m": ("windows", {"completed_1m": 41}),
        "exceptions_1m": ("windows", {"exceptions_1m": 0}),
        "completed_1h": ("windows", {"completed_1h": 901}),
        "exceptions_1h": ("windows", {"exceptions_1h": 5}),
        "rate_in": ("windows", {"rate_in": 4.1}),
        "rate_out": ("windows", {"rate_out": 3.6}),
        "sparkline": ("windows", {"sparkline": (2,) * 30}),
        "p50_s": ("durations", Durations(0.3, 1.5)),
        "p95_s": ("durations", Durations(0.2, 1.6)),
    }
    # Every field of a row but its name is covered: a new field must be compared too.
    assert set(changes) == {f.name for f in dataclasses.fields(EntrypointRow)} - {"entrypoint"}
    for field, (tier, change) in changes.items():
        depth, windows, durations = inputs()
        if tier == "depth":
            assert isinstance(change, dict)
            depth["emails"] = dataclasses.replace(depth["emails"], **change)
        elif tier == "windows":
            assert isinstance(change, dict)
            windows["emails"] = dataclasses.replace(windows["emails"], **change)
        else:
            assert isinstance(change, Durations)
            durations["emails"] = change
        rows = merge_rows(depth, windows, durations, previous=previous)
        assert rows == merge_rows(depth, windows, durations), field
        assert rows[0] is not previous["emails"] and rows[0] != previous["emails"], field
        assert rows[1] is previous["reports"], field
