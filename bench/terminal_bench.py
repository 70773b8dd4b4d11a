"""What the console costs a terminal: bytes/s written to a real pty, CPU and RSS, under load.

The console runs as an operator runs it (`python -m pgq_console --dsn ...`) in a real
pseudo-terminal of the given size, against a server with real PgQueuer traffic: a producer
process enqueueing `--rate` jobs/s round-robin over `--entrypoints` entrypoints and worker
processes running QueueManagers that consume them (the helpers of `overview_bench.py`). Once
the overview shows its first entrypoint row with a number ("first numbers", timed from the
launch), and after `--warmup` seconds of steady state, it measures for `--seconds`:

- bytes/s the console wrote to its pty (and updates/s: bursts of writes);
- the console's CPU, % of one core (utime + stime from /proc/<pid>/stat);
- its RSS (VmRSS, at the end of the window);
- where the bytes went: the pty stream is replayed on a small screen model (cursor moves and
  text; colours ignored), so each screen line's bytes/s is listed with what it showed.

`--compare PATH` runs a second checkout (PYTHONPATH=PATH) in the same run on the same traffic,
alternating sides `--rounds` times, so ratios come from one noisy machine; with `--together`
both sides run at the same time (two ptys), so a busy moment slows both alike.

    .venv/bin/python bench/terminal_bench.py --entrypoints 200 --rate 500 --size 160x50
    .venv/bin/python bench/terminal_bench.py --entrypoints 5 --rate 50 --size 120x40 \
        --compare /work/main

Without --dsn a throwaway PostgreSQL (pgserver) is started and removed at the end. With
`--database DSN --rate 0` the consoles open a database loaded before (the scale bench's 10M +
10M rows, `scale_bench.py --dsn ... --keep`) with no traffic: first numbers at that size, from
a real launch in a real pty.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import termios
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.cells import cell_len

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import overview_bench as ob  # noqa: E402
from delay_proxy import DelayProxy  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A CSI sequence, an OSC / DCS string, another two-byte escape, or a run of text.
TOKEN = re.compile(
    r"\x1b\[([0-9;?<>=]*)([ -/]*)([@-~])"
    r"|\x1b[\]P_^].*?(?:\x07|\x1b\\)"
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78cM]"
    r"|([^\x1b\n\r\x07]+)|(\n)|(\r)|(\x07)|(\x1b)",
    re.S,
)
# Reads closer together than this are one burst (one update of the screen).
BURST_GAP_S = 0.01
FIRST_NUMBERS = re.compile(r"\bep_\d+\s+\d")
SLOWED = re.compile(r"slowed to ([0-9.]+)s")


class Screen:
    """A small model of the terminal: where the cursor is and what each line shows (no colours).
    Every byte is booked to the line the cursor was on when it arrived."""

    def __init__(self, columns: int, rows: int) -> None:
        self.columns, self.rows = columns, rows
        self.lines = [[" "] * columns for _ in range(rows)]
        self.x = self.y = 0
        self.bytes_by_line: Counter[int] = Counter()
        self.counting = False
        self.pending = ""

    def feed(self, data: str) -> None:
        data = self.pending + data
        self.pending = ""
        # An escape cut at the end of a read waits for the rest.
        cut = data.rfind("\x1b")
        if cut >= 0 and len(data) - cut < 64 and TOKEN.match(data, cut) is None:
            data, self.pending = data[:cut], data[cut:]
        elif cut >= 0 and len(data) - cut < 64:
            match = TOKEN.match(data, cut)
            if match is not None and match.group(0) == "\x1b":
                data, self.pending = data[:cut], data[cut:]
        for match in TOKEN.finditer(data):
            size = len(match.group(0).encode())
            if self.counting:
                self.bytes_by_line[self.y] += size
            text = match.group(4)
            if text is not None:
                for char in text:
                    if self.x < self.columns and 0 <= self.y < self.rows:
                        self.lines[self.y][self.x] = char
                    self.x += max(1, cell_len(char)) if not char.isascii() else 1
            elif match.group(5):
                self.y = min(self.rows - 1, self.y + 1)
            elif match.group(6):
                self.x = 0
            elif match.group(3) == "H" and not match.group(2):
                parts = (match.group(1) or "").split(";")
                row = int(parts[0]) if parts and parts[0].isdigit() else 1
                col = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
                self.y, self.x = min(self.rows, max(1, row)) - 1, max(1, col) - 1
            elif match.group(3) == "J" and match.group(1) == "2":
                self.lines = [[" "] * self.columns for _ in range(self.rows)]

    def text(self, line: int) -> str:
        return "".join(self.lines[line]).rstrip()

    def has_first_numbers(self, pattern: re.Pattern[str] = FIRST_NUMBERS) -> bool:
        return any(pattern.search(self.text(y)) for y in range(self.rows))


@dataclass
class Reading:
    bytes: int = 0
    frames: int = 0
    per_second: list[int] = field(default_factory=list)


def cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def run_console(
    side: str, tree: Path, dsn: str, args: argparse.Namespace, record: Path | None
) -> dict[str, Any]:
    columns, rows = args.columns, args.rows
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    home = Path(tempfile.mkdtemp(prefix="pgqc-term-home-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PGQ_CONSOLE_", "TEXTUAL", "NO_COLOR", "PGQUEUER_"))
    }
    env.update(
        PYTHONPATH=str(tree),
        TERM=args.term,
        COLORTERM=args.colorterm,
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_STATE_HOME=str(home / "state"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_DATA_HOME=str(home / "data"),
        COLUMNS=str(columns),
        LINES=str(rows),
    )
    if not args.colorterm:
        env.pop("COLORTERM")
    command = [sys.executable, "-m", "pgq_console", "--dsn", dsn, "--refresh", str(args.refresh)]
    screen = Screen(columns, rows)
    reading = Reading()
    recording = record.open("wb") if record is not None else None
    # With --record, when each read arrived (s from the launch) and its size: frames to diff.
    reads: list[tuple[float, int]] = []
    loop = asyncio.get_running_loop()
    first_numbers = loop.create_future()
    closed = loop.create_future()
    counting = False
    second_bytes = 0
    last_read = 0.0

    def on_output() -> None:
        nonlocal second_bytes, last_read
        try:
            data = os.read(master, 1 << 16)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(master)
            if not closed.done():
                closed.set_result(None)
            return
        if recording is not None:
            recording.write(data)
            reads.append((round(time.monotonic() - launched, 4), len(data)))
        text = data.decode("utf-8", errors="replace")
        if counting:
            reading.bytes += len(data)
            now = time.monotonic()
            reading.frames += now - last_read > BURST_GAP_S
            last_read = now
            second_bytes += len(data)
        screen.feed(text)
        if not first_numbers.done() and screen.has_first_numbers(args.first_row):
            first_numbers.set_result(time.monotonic())

    launched = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=str(home),
        preexec_fn=_controlling_tty,
    )
    os.close(slave)
    loop.add_reader(master, on_output)
    result: dict[str, Any] = {"side": side, "tree": str(tree), "pid": proc.pid}
    try:
        try:
            seen_at = await asyncio.wait_for(asyncio.shield(first_numbers), args.first_timeout)
        except TimeoutError:
            result["error"] = "no entrypoint row with a number on screen"
            result["screen"] = [screen.text(y) for y in range(rows)]
            return result
        result["first_numbers_s"] = round(seen_at - launched, 3)
        await asyncio.sleep(args.warmup)
        counting = screen.counting = True
        ticks0, t0 = cpu_ticks(proc.pid), time.monotonic()
        rss_samples = []
        for _ in range(int(args.seconds)):
            await asyncio.sleep(1.0)
            reading.per_second.append(second_bytes)
            second_bytes = 0
            rss_samples.append(rss_mb(proc.pid))
        remainder = args.seconds - int(args.seconds)
        if remainder > 0:
            await asyncio.sleep(remainder)
        ticks1, t1 = cpu_ticks(proc.pid), time.monotonic()
        counting = screen.counting = False
        window = t1 - t0
        result.update(
            window_s=round(window, 2),
            bytes_per_s=round(reading.bytes / window),
            updates_per_s=round(reading.frames / window, 2),
            bytes_per_s_by_second_p50=statistics.median(reading.per_second or [0]),
            bytes_per_s_by_second_max=max(reading.per_second or [0]),
            cpu_pct=round((ticks1 - ticks0) / CLOCK_TICKS / window * 100, 1),
            rss_mb=round(rss_samples[-1] if rss_samples else rss_mb(proc.pid), 1),
            rss_mb_max=round(max(rss_samples or [0.0]), 1),
            load_avg=[round(x, 2) for x in os.getloadavg()],
        )
        result["by_line"] = [
            {
                "line": line,
                "bytes_per_s": round(count / window),
                "shows": screen.text(line)[: args.columns],
            }
            for line, count in screen.bytes_by_line.most_common(args.top_lines)
        ]
        result["screen"] = [screen.text(y) for y in range(rows)]
        # The console slows its refreshes when its statements get slow (a busy machine): fewer
        # repaints, fewer bytes. Read from its own status line, so runs compare fairly.
        slowed = SLOWED.search("\n".join(result["screen"]))
        result["refresh_slowed_to_s"] = float(slowed.group(1)) if slowed else None
    finally:
        # ctrl+q quits the console; then the signals, to this one process only.
        with contextlib.suppress(OSError):
            os.write(master, b"\x11")
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), 2)
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(master)
        os.close(master)
        if recording is not None:
            recording.close()
            assert record is not None
            record.with_suffix(".reads.json").write_text(json.dumps(reads))
        shutil.rmtree(home, ignore_errors=True)
        result["rc"] = proc.returncode
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = ob.Server(args.dsn or args.database)
    server.start()
    entrypoints = tuple(f"ep_{index:04d}" for index in range(args.entrypoints))
    sides: list[tuple[str, Path]] = [("this", HERE.parent)]
    if args.compare:
        sides.append(("compare", args.compare))
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": [],
    }
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    done = [ctx.Value("q", 0) for _ in range(args.workers)]
    produced = ctx.Value("q", 0)
    procs: list[Any] = []
    dsn = ""
    proxies = contextlib.AsyncExitStack()
    try:
        # --database: a database loaded before (the scale bench's 10M + 10M), used as it is.
        dsn = args.database or await ob.create_database(server.dsn, "terminal")
        # --rtt: the consoles (only they) reach the server through a delaying proxy.
        console_dsn = dsn
        if args.rtt > 0:
            proxy = await proxies.enter_async_context(DelayProxy(dsn, args.rtt))
            console_dsn = proxy.dsn
        if args.rate > 0:
            procs = [
                ctx.Process(
                    target=ob.worker_process, args=(dsn, entrypoints, args.batch_size, d, stop)
                )
                for d in done
            ]
            procs.append(
                ctx.Process(
                    target=ob.producer_process, args=(dsn, args.rate, entrypoints, produced, stop)
                )
            )
            for proc in procs:
                proc.start()
            deadline = time.monotonic() + 60
            # The workers' counters live in shared memory: polled, there is no event to await.
            while sum(d.value for d in done) == 0 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            await asyncio.sleep(3.0)  # every entrypoint has jobs and the workers are up to speed
        for round_index in range(args.rounds):
            order = sides if round_index % 2 == 0 else list(reversed(sides))
            batches = [order] if args.together else [[side] for side in order]
            for batch in batches:
                names = ", ".join(f"{side} ({tree})" for side, tree in batch)
                ob.say(f"round {round_index + 1}: {names}")
                jobs0, t0 = sum(d.value for d in done), time.monotonic()
                runs = await asyncio.gather(
                    *(
                        run_console(
                            side,
                            tree,
                            console_dsn,
                            args,
                            args.record / f"{side}-{round_index + 1}.pty" if args.record else None,
                        )
                        for side, tree in batch
                    )
                )
                jobs1, t1 = sum(d.value for d in done), time.monotonic()
                for r in runs:
                    r["round"] = round_index + 1
                    r["together"] = len(batch) > 1
                    r["jobs_per_s_done"] = round((jobs1 - jobs0) / (t1 - t0))
                    results["runs"].append(r)
                    brief = {k: v for k, v in r.items() if k not in ("by_line", "screen")}
                    ob.say(json.dumps(brief))
    finally:
        await proxies.aclose()
        stop.set()
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
        if dsn and not args.database:
            with contextlib.suppress(Exception):
                await ob.drop_database(server.dsn, dsn)
        server.stop()
    return results


def summary(results: dict[str, Any]) -> str:
    lines = []
    keys = ("first_numbers_s", "bytes_per_s", "updates_per_s", "cpu_pct", "rss_mb")
    lines.append("medians over the runs of each side:")
    by_side: dict[str, dict[str, list[float]]] = {}
    for r in results["runs"]:
        for key in keys:
            if key in r:
                by_side.setdefault(r["side"], {}).setdefault(key, []).append(float(r[key]))
    lines.append("side      " + "".join(f"{k:>18}" for k in keys))
    medians: dict[str, dict[str, float]] = {}
    for side, values in by_side.items():
        medians[side] = {k: statistics.median(v) for k, v in values.items()}
        lines.append(
            f"{side:<10}" + "".join(f"{medians[side].get(k, float('nan')):>18.3g}" for k in keys)
        )
    if "this" in medians and "compare" in medians:
        lines.append(
            "this/comp "
            + "".join(
                f"{medians['this'][k] / medians['compare'][k]:>18.2f}"
                if medians["compare"].get(k)
                else f"{'-':>18}"
                for k in keys
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="existing server (CREATEDB); default: throwaway pgserver")
    parser.add_argument(
        "--database",
        help="a loaded database (DSN) used as it is, not dropped (with --rate 0: no traffic)",
    )
    parser.add_argument(
        "--first-entrypoint",
        help="the entrypoint whose row with a number is the first numbers (default: ep_NNNN)",
    )
    parser.add_argument("--entrypoints", type=int, default=200)
    parser.add_argument(
        "--rate", type=int, default=500, help="jobs/s produced (and consumed); 0: none"
    )
    parser.add_argument("--size", default="160x50", help="terminal COLUMNSxLINES")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="s after first numbers")
    parser.add_argument("--compare", help="another checkout, run side by side (PYTHONPATH)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per side, alternating")
    parser.add_argument(
        "--together",
        action="store_true",
        help="with --compare: run both sides at the same time (each in its own pty), so a "
        "busy machine slows both alike",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--batch-size", type=int, default=10, help="worker batch_size")
    parser.add_argument("--refresh", type=float, default=2.0, help="console --refresh")
    parser.add_argument("--term", default="xterm-256color")
    parser.add_argument("--colorterm", default="truecolor", help="COLORTERM ('' to unset)")
    parser.add_argument("--first-timeout", type=float, default=60.0)
    parser.add_argument(
        "--rtt", type=float, default=0.0, help="consoles through a proxy adding this RTT, s"
    )
    parser.add_argument("--top-lines", type=int, default=12, help="lines listed by bytes")
    parser.add_argument("--record", type=Path, help="directory: write each run's pty stream")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.columns, args.rows = (int(part) for part in args.size.lower().split("x"))
    args.first_row = (
        re.compile(rf"\b{re.escape(args.first_entrypoint)}\s+\d")
        if args.first_entrypoint
        else FIRST_NUMBERS
    )
    if args.compare:
        args.compare = Path(args.compare).resolve()
    if args.record:
        args.record.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(args))
    for r in results["runs"]:
        print(f"\n== {r['side']} round {r['round']} ({r['tree']})")
        print(json.dumps({k: v for k, v in r.items() if k not in ("by_line", "screen")}))
        for item in r.get("by_line", []):
            print(f"  line {item['line']:>3}: {item['bytes_per_s']:>7} B/s  {item['shows'][:110]}")
    print("\n" + summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
