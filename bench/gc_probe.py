"""Which job detail opens a full GC collection landed in, and what each open took.

Opens a loaded database read-only (the console under `run_test`, 160x50), shows Jobs, then
opens and closes the first job's detail `--opens` times (enter's and escape's actions, 0.5 s
apart, each preceded by what its key event tells the console), timing each open to the first
frame of the detail screen. CPython reports every collection (`gc.callbacks`); each open lists
the full (generation 2) ones that ran inside it. Run it on another tree with PYTHONPATH:

    .venv/bin/python bench/gc_probe.py --dsn "$(cat /tmp/pg10m/db)" --opens 40
    git worktree add /tmp/old a13a13d
    PYTHONPATH=/tmp/old .venv/bin/python bench/gc_probe.py --dsn ... --opens 40
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import weakref
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: a tree given there is the one measured


class Collections:
    def __init__(self) -> None:
        self.full: list[tuple[float, float]] = []  # (started, seconds)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.full.append((self._started, time.perf_counter() - self._started))


def _note_input(app: Any) -> None:
    pacer = getattr(app, "gc_pacer", None)  # trees before 12-02 have none
    if pacer is not None:
        pacer.note_activity()


async def probe(dsn: str, opens: int) -> None:
    import pgq_console
    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind, Installation

    print(f"tree: {Path(pgq_console.__file__).parents[1]}", flush=True)
    backend = await open_backend(
        DriverKind.ASYNCPG_POOL, dsn, Installation(), "bench", (), read_only=True
    )
    app = PgqConsole(backend, refresh_interval=2.0, read_only=True)
    frames: list[tuple[float, weakref.ref[Any]]] = []
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> None:
        display(screen, renderable)
        if renderable is not None:
            frames.append((time.perf_counter(), weakref.ref(screen)))

    app._display = timed_display  # type: ignore[method-assign]
    collections = Collections()
    gc.callbacks.append(collections)
    took: list[float] = []
    inside = 0
    try:
        async with app.run_test(size=(160, 50)):
            while not getattr(app, "settled", True):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)
            app.action_jump("2")
            await asyncio.sleep(3)
            jobs = app.screen
            for n in range(opens):
                started = time.perf_counter()
                _note_input(app)
                jobs.action_open()  # type: ignore[attr-defined]
                while True:  # noqa: ASYNC110
                    shown = app.screen
                    drawn = [
                        at
                        for at, ref in frames
                        if at >= started
                        and ref() is shown
                        and getattr(shown, "detail", None) is not None
                    ]
                    if shown is not jobs and drawn:
                        break
                    await asyncio.sleep(0.001)
                ended = min(drawn)
                took.append(ended - started)
                full = [round(s * 1000, 1) for at, s in collections.full if started <= at <= ended]
                inside += bool(full)
                print(f"open {n + 1:3}: {took[-1] * 1000:6.1f} ms  full GC inside: {full}")
                frames.clear()
                await asyncio.sleep(0.5)
                _note_input(app)
                await app.screen.dismiss(None)
                await asyncio.sleep(0.5)
            pacer = getattr(app, "gc_pacer", None)
    finally:
        gc.callbacks.remove(collections)
        await backend.close()
    ordered = sorted(took)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"opens {len(took)}: p50 {statistics.median(took) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms,"
        f" max {max(took) * 1000:.1f} ms; full collections {len(collections.full)}"
        f" ({inside} inside an open), each {min(s for _, s in collections.full) * 1000:.0f}-"
        f"{max(s for _, s in collections.full) * 1000:.0f} ms"
        if collections.full
        else f"opens {len(took)}: p50 {statistics.median(took) * 1000:.1f} ms, no full collection"
    )
    if pacer is not None:
        print(f"pacer: {pacer.collections} full collections run by it ({pacer.forced} forced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--opens", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(probe(args.dsn, args.opens))


if __name__ == "__main__":
    main()
