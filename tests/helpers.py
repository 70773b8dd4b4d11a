"""Shared test plumbing: waiting on the UI without sleeps, and the database's own truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from textual.pilot import Pilot

from pgq_console.app import PgqConsole
from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.target import DriverKind, Installation
from pgq_console.screens.overview import OverviewScreen
from pgq_console.widgets.overview_table import OverviewTable

# Liveness only: long enough for a busy 2-core CI machine, never a performance claim.
LIVENESS_S = 30.0
# Every limit given to `wait_until` / `wait_for` is stretched by this much: the suite passes with
# a CPU hog on both cores beside it, where a step runs several times slower than on an idle
# machine. A limit only decides how long a broken test takes to say so.
LIVENESS_STRETCH = 3.0


def _holds(predicate: Callable[[], bool]) -> tuple[bool, BaseException | None]:
    """Whether `predicate` holds; an exception (a widget still mounting: NoMatches) is "not yet"."""
    try:
        return bool(predicate()), None
    except Exception as exc:
        return False, exc


def _timed_out(
    within: float, what: object, error: BaseException | None, app: Any = None
) -> AssertionError:
    last = f" (last check raised {error!r})" if error is not None else ""
    waited = within * LIVENESS_STRETCH
    return AssertionError(
        f"timed out after {waited:g}s waiting for {what}{last}\n{_state(app)}{_task_stacks()}"
    )


def _state(app: Any) -> str:
    """What the app showed when a wait timed out: its screen, its stack and the focus (a test
    that wants the toasts records them with `notifications_of`)."""
    if app is None:
        return ""
    try:
        return f"app: screen {app.screen!r}, stack {app.screen_stack!r}, focus {app.focused!r}\n"
    except Exception as exc:  # a diagnostic: never the failure itself
        return f"app: ({exc!r})\n"


def _task_stacks(limit: int = 40) -> str:
    """Where every task of the loop waits (its innermost frames): what a timed-out wait was
    held up by, in a flake seen once in a full suite."""
    lines: list[str] = []
    for task in asyncio.all_tasks():
        frames = []
        awaiting: Any = task.get_coro()
        while awaiting is not None:  # the await chain, outermost first
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
            if frame is not None:
                frames.append(frame)
            awaiting = getattr(awaiting, "cr_await", None) or getattr(
                awaiting, "gi_yieldfrom", None
            )
        frames = frames or task.get_stack()
        where = " <- ".join(
            f"{f.f_code.co_filename.rsplit('/', 2)[-1]}:{f.f_lineno} {f.f_code.co_name}"
            for f in reversed(frames[-5:])
        )
        if any(idle in where for idle in IDLE_TASK_FRAMES):
            continue  # a widget's message pump or a timer, waiting as they always do
        lines.append(f"  {task.get_name()}: {where}")
    return "tasks (idle pumps and timers left out):\n" + "\n".join(lines[:limit])


IDLE_TASK_FRAMES = ("_get_message <-", "_run_timer")


# How often `wait_until` checks its condition: soon at first (most hold within a few frames),
# then less often, up to every POLL_MAX_S. The app runs on the test's own event loop, so it goes
# on with its work (messages, refreshes, the repaint its screen schedules when idle) while the
# test sleeps; the wait need not drive it. It used to call `pilot.pause(0.02)` between checks,
# which makes every widget on screen process a callback and forces a screen update: on an idle
# overview about 0.1 s of CPU per 3 s of waiting, more on bigger screens, for every wait.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.05
POLL_GROWTH = 1.5


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], bool], within: float = LIVENESS_S, what: str = ""
) -> None:
    """Wait until `predicate` holds; AssertionError after `within` seconds (a liveness limit,
    stretched by LIVENESS_STRETCH). A predicate that raises (a widget still mounting: NoMatches)
    counts as not holding yet. `pilot` is the running app's: the wait only sleeps beside it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within * LIVENESS_STRETCH
    step = POLL_FIRST_S
    while True:
        held, error = _holds(predicate)
        if held:
            return
        if loop.time() > deadline:
            raise _timed_out(within, what or predicate, error, pilot.app)
        await asyncio.sleep(step)
        step = min(step * POLL_GROWTH, POLL_MAX_S)


async def wait_for(
    predicate: Callable[[], bool], within: float = LIVENESS_S, what: str = "", step: float = 0.02
) -> None:
    """`wait_until` without a Textual pilot, for core objects driven by the test's own loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within * LIVENESS_STRETCH
    while True:
        held, error = _holds(predicate)
        if held:
            return
        if loop.time() > deadline:
            raise _timed_out(within, what or predicate, error)
        await asyncio.sleep(step)


async def backend_for(dsn: str, kind: DriverKind = DriverKind.ASYNCPG_POOL) -> Backend:
    return await open_backend(kind, dsn, Installation(), "test-db", ())


def notifications_of(app: Any) -> list[str]:
    """Every message `app` notifies from now on (a screen's notify goes through the app's), kept
    after its toast expires: on a busy machine a check can come later than a toast's few
    seconds on screen, and an expired toast is no missing message."""
    sent: list[str] = []
    notify = app.notify

    def recording(message: str, *args: Any, **kwargs: Any) -> None:
        sent.append(str(message))
        notify(message, *args, **kwargs)

    app.notify = recording
    return sent


def console_of(pilot: Pilot[Any]) -> PgqConsole:
    """The pilot's app as the console it is (Pilot.app is typed as a plain App)."""
    app = pilot.app
    assert isinstance(app, PgqConsole), f"expected the console, got {app!r}"
    return app


def table_of(app: PgqConsole) -> OverviewTable:
    return app.screen.query_one(OverviewTable)


def overview_of(app: PgqConsole) -> OverviewScreen:
    screen = app.screen
    assert isinstance(screen, OverviewScreen), f"expected the overview, got {screen!r}"
    return screen


def cell(app: PgqConsole, entrypoint: str, column: str) -> str:
    return str(table_of(app).get_cell(entrypoint, column).plain)


def number(app: PgqConsole, entrypoint: str, column: str) -> str:
    """A count cell without the status glyph that marks states needing action (✖ 6 -> 6)."""
    return cell(app, entrypoint, column).split()[-1]


def has_row(app: PgqConsole, entrypoint: str) -> bool:
    try:
        table = table_of(app)
    except Exception:
        return False
    return entrypoint in set(table.row_keys)


async def truth(dsn: str) -> dict[str, dict[str, int]]:
    """Per-entrypoint counts straight from the tables, the way an operator would check them."""
    connection = await asyncpg.connect(dsn)
    try:
        queue = await connection.fetch(
            """SELECT entrypoint,
                count(*) FILTER (WHERE status = 'queued' AND execute_after <= now()) AS ready,
                count(*) FILTER (WHERE status = 'queued' AND execute_after > now()) AS deferred,
                count(*) FILTER (WHERE status = 'picked') AS picked,
                count(*) FILTER (WHERE status = 'failed') AS held
            FROM pgqueuer GROUP BY entrypoint"""
        )
        log = await connection.fetch(
            """SELECT entrypoint,
                count(*) FILTER (WHERE status = 'successful') AS done,
                count(*) FILTER (WHERE status IN ('exception', 'failed')) AS err
            FROM pgqueuer_log WHERE created > now() - interval '1 hour' GROUP BY entrypoint"""
        )
    finally:
        await connection.close()
    result: dict[str, dict[str, int]] = {}
    for row in queue:
        result.setdefault(row["entrypoint"], {}).update(
            ready=row["ready"], deferred=row["deferred"], picked=row["picked"], held=row["held"]
        )
    for row in log:
        result.setdefault(row["entrypoint"], {}).update(done_1h=row["done"], err_1h=row["err"])
    return result


async def enqueue(dsn: str, entrypoint: str, count: int = 1, **options: Any) -> list[int]:
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries.from_asyncpg_connection(connection)
        ids = await queries.enqueue(
            [entrypoint] * count,
            [f"{entrypoint}-{i}".encode() for i in range(count)],
            [options.get("priority", 0)] * count,
            [options.get("execute_after", timedelta(0))] * count,
        )
        return [int(i) for i in ids]
    finally:
        await connection.close()


class MovingClock:
    """The console's clock, moved forward by the test (`at`); intervals stay real (monotonic)."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        import time

        return time.monotonic()


MANUAL_START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class ManualClock:
    """Monotonic seconds and wall time that move only when the fake wait moves them."""

    seconds: float = 100.0
    waits: list[float] = field(default_factory=list)  # every timeout the loop waited for

    def now(self) -> datetime:
        return MANUAL_START + timedelta(seconds=self.seconds - 100.0)

    def monotonic(self) -> float:
        return self.seconds

    async def wait(self, event: asyncio.Event, seconds: float) -> bool:
        """The loop's wait: a set event returns at once; else the clock jumps by `seconds`."""
        if event.is_set():
            return True
        self.waits.append(seconds)
        self.seconds += seconds
        await asyncio.sleep(0)  # let the test's other task run, as a real wait would
        return False
