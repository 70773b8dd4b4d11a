"""Profile a running console on signal: a `sitecustomize` for the console's PYTHONPATH.

Make a tree whose PYTHONPATH holds this file and the code under test, e.g.
    mkdir /tmp/prof && ln -s $PWD/pgq_console /tmp/prof/ && cp -r bench /tmp/prof/
    cp bench/cpuprof_hook/sitecustomize.py /tmp/prof/
run the bench from it (`cd /tmp/prof && PYTHONPATH=$PWD python bench/terminal_bench.py ...`,
with CPU2_PROFILE=1 for cProfile as well), then `kill -USR1 PID` to start and `kill -USR2 PID`
to stop. It writes $CPUPROF_OUT/gc_PID.txt (process and main-thread CPU, time in the cyclic
GC, over the window) and, with CPU2_PROFILE=1, $CPUPROF_OUT/prof_PID.pstats (the main thread,
about twice as slow while on).
"""

from __future__ import annotations

import cProfile
import gc
import os
import signal
import time
from typing import Any

OUT = os.environ.get("CPUPROF_OUT", "/tmp")
PROFILE = os.environ.get("CPU2_PROFILE") == "1"
_profile = cProfile.Profile()
_state: dict[str, Any] = {"on": False, "gc_s": 0.0, "gc_start": None, "collections": [0, 0, 0]}


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if not _state["on"]:
        return
    if phase == "start":
        _state["gc_start"] = time.thread_time()
    elif _state["gc_start"] is not None:
        _state["gc_s"] += time.thread_time() - _state["gc_start"]
        _state["collections"][info["generation"]] += 1


def _start(signum: int, frame: object) -> None:
    _state.update(on=True, cpu=time.process_time(), thread=time.thread_time())
    _state["wall"] = time.monotonic()
    if PROFILE:
        _profile.enable()


def _stop(signum: int, frame: object) -> None:
    _profile.disable()
    _state["on"] = False
    pid = os.getpid()
    with open(os.path.join(OUT, f"gc_{pid}.txt"), "w") as out:
        out.write(
            f"wall {time.monotonic() - _state['wall']:.2f} "
            f"process_cpu {time.process_time() - _state['cpu']:.3f} "
            f"main_thread_cpu {time.thread_time() - _state['thread']:.3f} "
            f"gc {_state['gc_s']:.3f} collections {_state['collections']}\n"
        )
    if PROFILE:
        _profile.dump_stats(os.path.join(OUT, f"prof_{pid}.pstats"))


gc.callbacks.append(_gc_callback)
signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _stop)
