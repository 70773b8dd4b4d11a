"""The README's key table matches the keys the screens bind, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from textual.binding import Binding

from pgq_console.app import PgqConsole
from pgq_console.screens.charts import ChartsScreen
from pgq_console.screens.consumers import ConsumersScreen
from pgq_console.screens.enqueue_only import EnqueueOnlyScreen
from pgq_console.screens.failures import FailuresScreen
from pgq_console.screens.fleet import FleetScreen
from pgq_console.screens.health import HealthScreen
from pgq_console.screens.job_detail import JobDetailScreen
from pgq_console.screens.jobs import JobsScreen
from pgq_console.screens.overview import OverviewScreen
from pgq_console.screens.schedules import SchedulesScreen
from pgq_console.screens.why import WhyScreen
from pgq_console.screens.workers import WorkersScreen
from pgq_console.widgets.live_table import LiveTable

README = Path(__file__).resolve().parent.parent / "README.md"
# The table's "where" words and the classes whose bindings they stand for.
WHERE = {
    "everywhere": PgqConsole,
    "overview": OverviewScreen,
    "jobs": JobsScreen,
    "failures": FailuresScreen,
    "detail": JobDetailScreen,
    "workers": WorkersScreen,
    "schedules": SchedulesScreen,
    "database": HealthScreen,
    "charts": ChartsScreen,
    "consumers": ConsumersScreen,
    "enqueue-only": EnqueueOnlyScreen,
    "fleet": FleetScreen,
    "tables": LiveTable,
    "why": WhyScreen,
}
NAMES = {
    "question_mark": "?",
    "colon": ":",
    "slash": "/",
    "escape": "esc",
    "plus": "+",
    "minus": "-",
    "equals_sign": "=",
    "right": "→",
    "left": "←",
}


CURSOR_KEYS = {"j", "k", "g", "G", "↑", "↓"}  # the app's cursor(...) actions, on every table


def readme_rows() -> list[tuple[set[str], set[str]]]:
    """(keys, where) of each row of the key table."""
    text = README.read_text()
    section = text[text.index("| key | where | does |") :]
    rows = []
    for line in section.splitlines()[2:]:
        if not line.startswith("|"):
            break
        keys_cell, where_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        keys = set(re.findall(r"`([^`]+)`", keys_cell))
        if "`1`–`8`" in keys_cell:
            keys |= {str(n) for n in range(1, 9)}
        where = {w.strip() for w in where_cell.split(",")}
        rows.append((keys, where))
    return rows


def bound_keys(cls: type) -> set[str]:
    """Keys with a description that `cls` (and its project bases) bind."""
    keys: set[str] = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("pgq_console"):
            continue
        for item in klass.__dict__.get("BINDINGS", ()):
            if not isinstance(item, Binding) or not item.description:
                continue
            if item.action.startswith("cursor("):
                continue  # j/k/g/G: one row of their own
            display = item.key_display
            for key in item.key.split(","):
                keys.add(display or NAMES.get(key.strip(), key.strip()))
    return keys


def test_every_bound_key_is_in_the_readme_for_its_screen() -> None:
    rows = readme_rows()
    missing = []
    for where, cls in WHERE.items():
        for key in bound_keys(cls):
            if key.isdigit() or key == "=":  # number keys: own row; "=" is "+" unshifted
                continue
            documented = any(
                key in keys and (where in places or "everywhere" in places) for keys, places in rows
            )
            if not documented:
                missing.append((where, key))
    assert not missing, f"keys bound but not in the README key table: {sorted(missing)}"


def test_every_readme_key_is_bound_where_it_says() -> None:
    stale = []
    for keys, places in readme_rows():
        for key in keys:
            if key in {"ctrl+s", "ctrl+o", "ctrl+p"} or key.isdigit() or key in CURSOR_KEYS:
                continue  # form keys, Textual's palette, number and cursor keys: own tests
            classes = [WHERE[p] for p in places if p in WHERE]
            if not classes:
                continue  # "when the autocommit banner shows", "help"
            if not any(key in bound_keys(cls) for cls in classes):
                stale.append((sorted(places), key))
    assert not stale, f"README keys no screen binds: {sorted(stale)}"
