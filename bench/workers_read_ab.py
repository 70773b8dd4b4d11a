"""The Workers read of two trees side by side on one database (issue 15): alternating reads.

    python bench/workers_read_ab.py --dsn postgresql://... --old 9598fa2 [--rounds 12]

The database should hold many picked jobs (the 10M scale bench has 100,000, each its own
worker). Prints the median, min and max of each and the ratio new/old.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def old_workers_sql(commit: str) -> Any:
    """`workers_sql` as it was at `commit` (only the function and its constant)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:pgq_console/core/workers.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    start, end = source.index("def workers_sql"), source.index("async def fetch_workers")
    namespace: dict[str, Any] = {"STALE_JOB_LIMIT": 500}
    exec("from __future__ import annotations\n" + source[start:end], namespace)
    return namespace["workers_sql"]


async def main() -> None:
    import asyncpg

    from pgq_console.core.workers import workers_sql

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--old", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    backend = SimpleNamespace(
        installation=SimpleNamespace(
            settings=SimpleNamespace(qualified=SimpleNamespace(queue_table="pgqueuer"))
        )
    )
    sqls = {"old": old_workers_sql(args.old)(backend), "new": workers_sql(backend)}  # type: ignore[arg-type]
    connection = await asyncpg.connect(args.dsn)
    picked = await connection.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'picked'")
    print(f"picked jobs: {picked}")
    times: dict[str, list[float]] = {"old": [], "new": []}
    rows: dict[str, int] = {}
    for _ in range(args.rounds):
        for side, sql in sqls.items():
            started = time.perf_counter()
            result = await connection.fetch(sql, timedelta(seconds=90), None, 200)
            times[side].append(time.perf_counter() - started)
            rows[side] = len(result)
    await connection.close()
    for side, seconds in times.items():
        print(
            f"{side}: {rows[side]} rows, median {statistics.median(seconds):.3f} s, "
            f"min {min(seconds):.3f}, max {max(seconds):.3f}"
        )
    ratio = statistics.median(times["new"]) / statistics.median(times["old"])
    print(f"ratio new/old (medians): {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
