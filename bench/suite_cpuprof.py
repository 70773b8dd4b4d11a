"""Per-test CPU profile of the suite: a pytest plugin (`-p suite_cpuprof`, with bench/ on
PYTHONPATH) that writes one JSON line per test to $CPUPROF_DIR/<xdist worker>.jsonl:

- self: the worker's own CPU (getrusage RUSAGE_SELF), setup + call + teardown;
- child: CPU of the child processes it reaped meanwhile (RUSAGE_CHILDREN);
- server: CPU of the worker's embedded PostgreSQL (the postmaster and its children, from /proc),
  which daemonizes and so is in neither.

`python bench/suite_cpuprof.py DIR [N]` sums it per module and lists the N costliest tests.
Daemonized servers a test starts itself (its own pgserver, pgbouncer) are in none of these:
bench/suite_cgroup.sh counts everything.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import resource
import sys
import time
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import pytest

OUT = os.environ.get("CPUPROF_DIR", "/tmp/suite_cpuprof")
_TICK = os.sysconf("SC_CLK_TCK")
_server_dir: list[str] = []
_state: dict[str, Any] = {"server_last": 0.0, "start": None, "out": None}


def _rusage() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, reaped.ru_utime + reaped.ru_stime


def _times(pid: str) -> tuple[int, float]:
    """(parent pid, user+system+children's CPU in seconds) of a process."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICK


def _server_cpu() -> float:
    if not _server_dir:
        return 0.0
    try:
        with open(os.path.join(_server_dir[0], "postmaster.pid")) as pidfile:
            postmaster = int(pidfile.readline())
        total = _times(str(postmaster))[1]
    except (OSError, ValueError):
        return 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent, cpu = _times(entry)
            except (OSError, ValueError, IndexError):
                continue
            if parent == postmaster:
                total += cpu
    return total


def _write(record: dict[str, Any]) -> None:
    out: IO[str] | None = _state["out"]
    if out is None:
        os.makedirs(OUT, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        out = _state["out"] = open(os.path.join(OUT, f"{worker}.jsonl"), "a")  # noqa: SIM115
    out.write(json.dumps(record) + "\n")
    out.flush()


def pytest_sessionstart(session: pytest.Session) -> None:
    _state["start"] = (time.monotonic(), *_rusage())


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Any:
    outcome = yield
    if fixturedef.argname == "server_dsn" and not _server_dir:
        try:
            host = parse_qs(urlsplit(outcome.get_result()).query).get("host")
        except Exception:
            host = None
        if host:
            _server_dir.append(host[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    wall0, own0, reaped0 = time.monotonic(), *_rusage()
    server0 = _server_cpu()
    yield
    wall1, own1, reaped1 = time.monotonic(), *_rusage()
    server1 = _server_cpu()
    if server1:
        _state["server_last"] = server1
    elif server0:  # the server stopped in this test's teardown
        server1 = server0
    _write(
        {
            "id": item.nodeid,
            "wall": wall1 - wall0,
            "self": own1 - own0,
            "child": reaped1 - reaped0,
            "server": server1 - server0 if server0 else None,
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _state["start"] is not None:
        wall0, own0, reaped0 = _state["start"]
        wall1, own1, reaped1 = time.monotonic(), *_rusage()
        _write(
            {
                "id": "<session>",
                "wall": wall1 - wall0,
                "self": own1 - own0,
                "child": reaped1 - reaped0,
                "server": _state["server_last"],
            }
        )


def report(directory: str, top: int) -> None:
    rows = []
    for path in glob.glob(os.path.join(directory, "*.jsonl")):
        worker = os.path.basename(path).removesuffix(".jsonl")
        with open(path) as lines:
            rows += [dict(json.loads(line), worker=worker) for line in lines]
    tests = [r for r in rows if r["id"] != "<session>"]

    def total(r: dict[str, Any]) -> float:
        return float(r["self"] + r["child"] + (r["server"] or 0))

    for r in sorted((r for r in rows if r["id"] == "<session>"), key=lambda r: r["worker"]):
        print(
            f"session {r['worker']}: wall {r['wall']:.1f} self {r['self']:.1f} "
            f"child {r['child']:.1f} server {r['server']:.1f}"
        )
    sums = [sum(r[k] or 0 for r in tests) for k in ("self", "child", "server")]
    print(f"{len(tests)} tests: self {sums[0]:.1f} child {sums[1]:.1f} server {sums[2]:.1f}")
    modules: dict[str, list[float]] = collections.defaultdict(lambda: [0.0] * 6)
    for r in tests:
        m = modules[r["id"].split("::")[0].rsplit("/", 1)[-1]]
        for i, value in enumerate((total(r), r["self"], r["child"], r["server"] or 0, r["wall"])):
            m[i] += value
        m[5] += 1
    print(f"{'module':34} {'n':>3} {'total':>7} {'self':>7} {'child':>6} {'server':>6} {'wall':>7}")
    for name, m in sorted(modules.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"{name:34} {m[5]:3.0f} {m[0]:7.1f} {m[1]:7.1f} {m[2]:6.1f} {m[3]:6.1f} {m[4]:7.1f}")
    print("costliest tests (total = self + child + server, CPU-s):")
    for r in sorted(tests, key=lambda r: -total(r))[:top]:
        print(f"  {total(r):6.2f} wall {r['wall']:6.2f} {r['id']}")


if __name__ == "__main__":
    report(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
