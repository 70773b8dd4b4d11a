"""Soak benchmark: the console runs for N minutes against steady PgQueuer traffic.

    .venv/bin/python bench/soak_bench.py --minutes 10 --rate 100

A throwaway embedded PostgreSQL; demo traffic (one producer, two QueueManagers) in a child
process, so only the console is measured here. The console runs headless (Textual's run_test)
and visits every screen in turn (overview, workers, schedules, database, charts, and the others
registered) once during warm-up, then spends a minute on each in turn, back to the overview
after each, like an operator leaving it open on a wall screen and looking elsewhere now and
then. Every 15 s it records the process RSS and, while the overview is up (it does not query
out of view), its refresh latency.

Pass criteria: RSS grows less than 10 % from the first minute after warm-up to the
end, and the refresh latency does not drift (median of the last quarter within 2x of the first
quarter, and absolute medians printed). Results go to stdout and bench/results/soak.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parent / "results" / "soak.txt"
SAMPLE_EVERY_S = 15.0
WARMUP_S = 90.0
# Every screen is opened once during the warm-up, then each stays up this long, as when an
# operator leaves the console on one screen. (Textual 8.2.8's Footer keeps ~17 FooterKey widgets
# per screen switch alive through data_bind watchers: switching every few seconds would measure
# that, not the console; see bench/README.md.)
WARMUP_DWELL_S = 5.0
SCREEN_DWELL_S = 60.0


def _traffic(dsn: str, rate: float, stop: Any) -> None:
    from pgq_console.core.demo import DemoTraffic

    async def run() -> None:
        traffic = DemoTraffic(dsn, jobs_per_second=rate)
        await traffic.start()
        await asyncio.to_thread(stop.wait)
        await traffic.stop()

    asyncio.run(run())


async def soak(dsn: str, minutes: float, screens: list[str] | None = None) -> dict[str, Any]:
    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import open_backend
    from pgq_console.core.target import DriverKind, Installation
    from pgq_console.navigation import SCREENS
    from pgq_console.screens.overview import OverviewScreen

    async def opener() -> Any:
        return await open_backend(DriverKind.ASYNCPG_POOL, dsn, Installation(), "soak", ())

    process = psutil.Process()
    app = PgqConsole(opener, refresh_interval=1.0)
    samples: list[dict[str, float]] = []
    keys = [spec.key for spec in SCREENS]
    # After the warm-up (every screen once), only these take turns (default: all of them),
    # each followed by the overview, so its refresh latency is sampled across the whole run.
    others = [key for key in keys[1:] if not screens or key in screens] or keys[1:]
    rotation = [key for other in others for key in (other, keys[0])]
    async with app.run_test(size=(120, 40)) as pilot:
        started = time.monotonic()
        next_sample = started + SAMPLE_EVERY_S
        next_switch = started + WARMUP_DWELL_S
        current = keys[0]
        position = -1
        overview: OverviewScreen | None = None
        seen_refreshes = -1.0
        while time.monotonic() - started < minutes * 60:
            await pilot.pause(0.5)
            if isinstance(app.screen, OverviewScreen):
                overview = app.screen
            now = time.monotonic()
            if now >= next_switch:
                warming = now - started < len(keys) * WARMUP_DWELL_S
                cycle = keys if warming else rotation
                if warming:
                    current = cycle[(cycle.index(current) + 1) % len(cycle)]
                else:  # the rotation, from its start once the warm-up is over
                    position += 1
                    current = cycle[position % len(cycle)]
                await pilot.press(current)
                next_switch = now + (WARMUP_DWELL_S if warming else SCREEN_DWELL_S)
            if now >= next_sample and overview is not None and overview.snapshot is not None:
                refreshes = float(overview.status.refreshes if overview.status else 0)
                sample = {
                    "t_s": round(now - started, 1),
                    "screen": float(current),
                    "rss_mb": process.memory_info().rss / 1e6,
                    "overview_refresh_ms": overview.snapshot.refresh_s * 1000,
                    "refreshes": refreshes,
                    # The overview refreshed since the last sample: its latency is current.
                    "fresh": float(refreshes > seen_refreshes),
                }
                seen_refreshes = refreshes
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample = now + SAMPLE_EVERY_S
    after_warmup = [s for s in samples if s["t_s"] >= WARMUP_S] or samples
    quarter = max(1, len(after_warmup) // 4)
    first, last = after_warmup[:quarter], after_warmup[-quarter:]
    rss_start = statistics.median(s["rss_mb"] for s in first)
    rss_end = statistics.median(s["rss_mb"] for s in last)
    fresh = [s for s in after_warmup if s["fresh"]] or after_warmup
    fresh_quarter = max(1, len(fresh) // 4)
    lat_start = statistics.median(s["overview_refresh_ms"] for s in fresh[:fresh_quarter])
    lat_end = statistics.median(s["overview_refresh_ms"] for s in fresh[-fresh_quarter:])
    return {
        "minutes": minutes,
        "samples": len(samples),
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_growth_pct": round((rss_end - rss_start) / rss_start * 100, 2),
        "refresh_ms_start_median": round(lat_start, 1),
        "refresh_ms_end_median": round(lat_end, 1),
        "refresh_drift_ratio": round(lat_end / lat_start, 2) if lat_start else None,
        "overview_refreshes": int(samples[-1]["refreshes"]) if samples else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0, help="demo jobs per second")
    parser.add_argument(
        "--screens", default="", help="after the warm-up, rotate only these keys (e.g. 4,5,6,8)"
    )
    args = parser.parse_args()

    from pgq_console.core.demo import install_schema
    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    server.start()
    stop = multiprocessing.Event()
    traffic: multiprocessing.Process | None = None
    try:
        dsn = server.create_database("soak")
        asyncio.run(install_schema(dsn))
        traffic = multiprocessing.Process(target=_traffic, args=(dsn, args.rate, stop))
        traffic.start()
        screens = [key.strip() for key in args.screens.split(",") if key.strip()]
        result = asyncio.run(soak(dsn, args.minutes, screens))
    finally:
        stop.set()
        if traffic is not None:
            traffic.join(30)
            if traffic.is_alive():
                traffic.terminate()
        server.stop()
    ok = result["rss_growth_pct"] < 10 and (result["refresh_drift_ratio"] or 0) < 2
    result["verdict"] = "PASS" if ok else "FAIL"
    line = json.dumps(result)
    print(line)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        handle.write(f"{stamp} UTC  {' '.join(sys.argv)}\n{line}\n")


if __name__ == "__main__":
    main()
