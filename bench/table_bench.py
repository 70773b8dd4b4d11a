"""CPU of the overview table alone: refreshes of N entrypoints, some changing, painted headless.

Runs the table of whatever `pgq_console` is on PYTHONPATH, so two checkouts compare side by side:

    PYTHONPATH=/path/a python bench/table_bench.py
    PYTHONPATH=/path/b python bench/table_bench.py

Prints the console process CPU (user + system) per refresh, and per second at 5 refreshes a second.
No database: the snapshots are built here (the same ones for every run, seeded).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App, ComposeResult

from pgq_console.core.models import EntrypointRow, OverviewSnapshot
from pgq_console.widgets.overview_table import OverviewTable

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OverviewTable()


def rows(n: int, step: int, changing: float, rng: random.Random) -> tuple[EntrypointRow, ...]:
    out = []
    for i in range(n):
        busy = rng.random() < changing
        out.append(
            EntrypointRow(
                f"entrypoint_{i:04}",
                ready=(step * 7 + i) % 900 if busy else i,
                picked=(step + i) % 5 if busy else 0,
                completed_1m=step * 3 + i if busy else i,
                completed_1h=step * 50 + i if busy else i * 10,
                rate_in=(step % 17) / 3 if busy else 0.0,
                rate_out=(step % 13) / 3 if busy else 0.0,
                oldest_ready_since=NOW - timedelta(seconds=30 + i),
            )
        )
    return tuple(out)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entrypoints", type=int, default=200)
    parser.add_argument("--refreshes", type=int, default=150)
    parser.add_argument("--changing", type=float, default=0.3, help="share of rows changing")
    parser.add_argument("--size", default="160x50")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    rng = random.Random(7)
    app = TableApp()
    async with app.run_test(size=(width, height)) as pilot:
        table: Any = app.query_one(OverviewTable)
        apply = getattr(table, "apply_snapshot", None) or table.apply
        table.focus()
        apply(OverviewSnapshot(NOW, rows(args.entrypoints, 0, 1.0, rng), 0.01), NOW)
        await pilot.pause(0.2)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for step in range(1, args.refreshes + 1):
            now = NOW + timedelta(seconds=step * 0.2)
            snapshot = OverviewSnapshot(now, rows(args.entrypoints, step, args.changing, rng), 0.01)
            apply(snapshot, now)
            await pilot.pause(0.02)  # lets the screen paint
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    per = cpu / args.refreshes * 1000
    print(
        f"{args.entrypoints} entrypoints, {args.changing:.0%} changing, {args.size}: "
        f"{per:.2f} ms CPU per refresh+paint, {per * 5 / 10:.1f} % of a core at 5 refreshes/s "
        f"(wall {wall:.1f}s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
