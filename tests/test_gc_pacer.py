"""Full GC collections are run in the console's quiet moments, never inside a key press
(pgq_console/gc_pacer.py): CPython's automatic full collection is off while the console runs,
the pacer runs it once input has been quiet for `QUIET_S` (or when overdue), and the process's
GC settings are put back as the console unmounts."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pgq_console import gc_pacer
from pgq_console.app import PgqConsole
from pgq_console.gc_pacer import DUE_AFTER, FORCE_AFTER, QUIET_S, GcPacer
from tests.helpers import backend_for, wait_until

pytestmark = pytest.mark.skipif(not gc_pacer.supported(), reason="CPython 3.11-3.13 GC only")


class HandClock:
    def __init__(self) -> None:
        self.seconds = 100.0

    def monotonic(self) -> float:
        return self.seconds


class FakeGc:
    """Generation counts set by the test; a collection resets the old generation's count,
    as CPython's does."""

    def __init__(self) -> None:
        self.younger = 0
        self.collected = 0

    def counts(self) -> tuple[int, int, int]:
        return (0, 0, self.younger)

    def collect(self) -> int:
        self.collected += 1
        self.younger = 0
        return 0


@pytest.fixture
def pacer_parts() -> Iterator[tuple[GcPacer, HandClock, FakeGc]]:
    clock, fake = HandClock(), FakeGc()
    pacer = GcPacer(clock.monotonic, counts=fake.counts, collect=fake.collect)
    pacer.start()
    try:
        yield pacer, clock, fake
    finally:
        pacer.stop()


def test_a_due_collection_waits_for_a_quiet_moment(
    pacer_parts: tuple[GcPacer, HandClock, FakeGc],
) -> None:
    pacer, clock, fake = pacer_parts
    fake.younger = DUE_AFTER - 1
    clock.seconds += 10 * QUIET_S
    assert not pacer.tick() and fake.collected == 0  # not due yet: CPython would not either

    fake.younger = DUE_AFTER
    pacer.note_activity()  # a key
    clock.seconds += QUIET_S / 2
    assert not pacer.tick() and fake.collected == 0  # due, but the key's work is under way

    clock.seconds += QUIET_S / 2
    assert pacer.tick() and fake.collected == 1
    assert (pacer.collections, pacer.forced) == (1, 0)
    assert not pacer.tick() and fake.collected == 1  # nothing due after it


def test_keys_without_pause_get_a_collection_once_it_is_overdue(
    pacer_parts: tuple[GcPacer, HandClock, FakeGc],
) -> None:
    pacer, clock, fake = pacer_parts
    for younger in range(DUE_AFTER, FORCE_AFTER):
        fake.younger = younger
        pacer.note_activity()
        clock.seconds += QUIET_S / 10
        assert not pacer.tick()
    fake.younger = FORCE_AFTER
    pacer.note_activity()
    assert pacer.tick() and fake.collected == 1
    assert (pacer.collections, pacer.forced) == (1, 1)


def test_the_processes_gc_thresholds_come_back_after_the_last_pacer_stops() -> None:
    before = gc.get_threshold()
    first, second = GcPacer(HandClock().monotonic), GcPacer(HandClock().monotonic)
    try:
        first.start()
        assert gc.get_threshold()[:2] == before[:2]  # the younger generations as they were
        assert gc.get_threshold()[2] > FORCE_AFTER * 1000  # CPython starts no full collection
        second.start()
        first.stop()  # another console still runs: still paced
        assert gc.get_threshold()[2] > FORCE_AFTER * 1000
        second.stop()
        assert gc.get_threshold() == before
        second.stop()  # a second stop changes nothing
        assert gc.get_threshold() == before
    finally:
        first.stop()
        second.stop()
    assert gc.get_threshold() == before


class FullCollections:
    """Full (generation 2) collections as CPython reports them."""

    def __init__(self) -> None:
        self.started = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            self.started += 1

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _garbage_in_the_old_generation(until_younger: int, full: FullCollections) -> None:
    """Make cyclic garbage the way a console does: objects that live long enough to reach the
    old generation, then are dropped; allocated until `until_younger` generation-1 collections
    have run since the last full one (CPython starts a full one after 10 of them once enough
    such garbage is pending), or until a full collection ran."""
    started = full.started
    for _ in range(10_000):
        if gc.get_count()[2] >= until_younger or full.started != started:
            return
        held: list[dict[str, Any]] = []
        for _ in range(5_000):
            node: dict[str, Any] = {}
            node["self"] = node
            held.append(node)
        del held


async def test_the_console_collects_in_quiet_moments_not_while_keys_come(
    database_dsn: str,
) -> None:
    """The real console: after startup CPython starts no full collection by itself, however
    much garbage a busy console makes; the console runs one once nothing was asked of it for
    a quarter second; the settings are back once it exits. (Before 12-02 a full collection
    ran inside whichever key press tipped it over: 35-160 ms at 10M rows.)"""
    before = gc.get_threshold()
    backend = await backend_for(database_dsn)
    app = PgqConsole(backend, refresh_interval=5.0)
    clock = HandClock()  # the pacer's quiet is counted on a clock the test moves
    app.gc_pacer = GcPacer(clock.monotonic)
    try:
        with FullCollections() as full:
            async with app.run_test(size=(120, 30)) as pilot:
                await wait_until(pilot, lambda: app.settled, within=15)
                assert app.gc_pacer.running
                await pilot.hover("*")  # the operator's mouse: input, so not quiet
                after_input = full.started
                # Four times CPython's cadence of full collections, short of overdue.
                _garbage_in_the_old_generation(4 * DUE_AFTER, full)
                await pilot.pause(5 * gc_pacer.TICK_S)  # ticks that must not collect
                assert full.started == after_input, "a full collection ran while not quiet"
                assert app.gc_pacer.collections == 0

                clock.seconds += QUIET_S  # quiet now
                await wait_until(pilot, lambda: full.started > after_input, within=5)
                assert app.gc_pacer.collections == 1 and app.gc_pacer.forced == 0
                assert gc.get_count()[2] < DUE_AFTER  # the old generation's count starts over

                # A key is input too: once it was handled (the clock has not moved since), a
                # due collection waits for quiet. (Made due only after the key: a tick between
                # the due count and the key's handling would rightly have collected.)
                await pilot.press("2")
                await wait_until(pilot, lambda: app.current_mode == "jobs")
                for _ in range(DUE_AFTER):
                    gc.collect(1)
                collected = full.started
                await pilot.pause(5 * gc_pacer.TICK_S)
                assert full.started == collected and app.gc_pacer.collections == 1
                clock.seconds += QUIET_S
                await wait_until(pilot, lambda: app.gc_pacer.collections == 2, within=5)
    finally:
        await backend.close()
    assert not app.gc_pacer.running
    assert gc.get_threshold() == before
