"""The console's screens as Textual modes: each built on its first visit or ahead of it, and
given fresh rows before it is shown.

Composing and mounting a table screen takes longer than the jobs page's 100 ms budget on a busy
box, so Jobs and Failures are built while the console idles after startup. A number key lets
the screen read current rows before switching to it (one paint of fresh rows). Exiting waits
for a screen still mounting, and no build starts once the console exits (Textual closes the
screen stacks then: a new screen would change them under it).

`navigation.SCREENS` lists the modes, their keys and titles; `SCREEN_FACTORIES` here says how
each mode's screen is built from the `ConsoleContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

from rich.console import RenderableType
from textual import events, on, work
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import AwaitMount

from pgq_console.context import ConsoleContext
from pgq_console.core.backend import Backend
from pgq_console.gc_pacer import TICK_S, GcPacer
from pgq_console.keyboard import KeyboardApp
from pgq_console.messages import OpenJobs
from pgq_console.navigation import SCREENS
from pgq_console.screens.overview import OverviewScreen
from pgq_console.screens.quiet_resume import QuietResume
from pgq_console.widgets.live_table import LiveTable

# The screens built ahead of their first visit (`ScreenModesApp._build_ahead`), one per delay.
BUILT_AHEAD_MODES = ("jobs", "failures")
BUILD_AHEAD_DELAY_S = 0.5
# How long after the last screen is built the startup objects are frozen out of the GC's scans
# (`_freeze_startup_objects`): time for those screens' first reads to land.
GC_SETTLE_S = 1.0
# How long a number key waits for a screen to read fresh rows before showing it anyway.
PREPARE_WAIT_S = 0.15
# How long an exit waits for a screen still being built to finish mounting.
EXIT_MOUNT_WAIT_S = 2.0


def _async_backend(context: ConsoleContext) -> Backend:
    assert isinstance(context.backend, Backend)
    return context.backend


def _overview(context: ConsoleContext) -> OverviewScreen:
    screen = OverviewScreen(
        _async_backend(context),
        context.clock,
        interval_s=context.refresh_interval,
        listen=context.listen,
        early=context.take_early_refresher(),
    )
    context.workers_seen = screen.feed.workers_seen
    return screen


# The screens other than the overview are imported when first built (after the first paint):
# their modules are a third of the console's import time (`tests/test_startup_imports.py`).
def _jobs(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.jobs import JobsScreen

    return JobsScreen(_async_backend(c), c.clock, interval_s=c.refresh_interval)


def _failures(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.failures import FailuresScreen

    return FailuresScreen(_async_backend(c), c.clock, interval_s=c.refresh_interval)


def _workers(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.workers import WorkersScreen

    return WorkersScreen(_async_backend(c), c.clock)


def _schedules(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.schedules import SchedulesScreen

    return SchedulesScreen(_async_backend(c), c.clock)


def _database(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.health import HealthScreen

    return HealthScreen(_async_backend(c), c.clock)


def _consumers(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.consumers import ConsumersScreen

    return ConsumersScreen(c)


def _charts(c: ConsoleContext) -> Screen[None]:
    from pgq_console.screens.charts import ChartsScreen

    return ChartsScreen(_async_backend(c), c.clock)


# How each mode's screen is built from the context, on its first visit (`navigation.SCREENS`
# lists the modes, their keys and titles).
SCREEN_FACTORIES: dict[str, Callable[[ConsoleContext], Screen[None]]] = {
    "overview": _overview,
    "jobs": _jobs,
    "failures": _failures,
    "workers": _workers,
    "schedules": _schedules,
    "database": _database,
    "consumers": _consumers,
    "charts": _charts,
}


@runtime_checkable
class PreparesToShow(Protocol):
    """A screen that reads fresh rows before it is shown (`ScreenModesApp._prepare_and_show`):
    also before its first visit, built but not mounted yet, when it keeps the rows for its
    first paint."""

    async def prepare_to_show(self) -> None: ...


class ScreenModesApp(KeyboardApp):
    """The screens as modes: `add_screen_modes` adds them and shows one, number keys switch
    (`action_jump`), Jobs and Failures are built ahead, `exit` waits for a screen mid-mount."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        # Screens built for a first visit, waiting for their mode's first switch.
        self._built: dict[str, Screen[None]] = {}
        self._startup_timer: Timer | None = None  # building ahead, then the GC freeze
        self._exit_deferred = False
        self._switches: list[AwaitMount] = []  # the latest mode switches' mounts
        self._gc_frozen = False
        # Full collections in quiet moments, not inside a key press (gc_pacer.py); started
        # with the freeze, once the startup's own garbage is collected.
        self.gc_pacer = GcPacer(lambda: self.clock.monotonic())
        self._gc_timer: Timer | None = None
        self._building_ahead = False  # a screen built now is out of view (`_build_ahead`)
        # The styles' inputs at the last restyle (`refresh_css`), a count of their changes, and
        # the count each screen was last styled at.
        self._css_inputs: tuple[Hashable, dict[Hashable, str]] | None = None
        self._css_changes = 0
        self._css_styled_at: weakref.WeakKeyDictionary[Screen[Any], int] = (
            weakref.WeakKeyDictionary()
        )
        # What the stylesheet's variables were set from before its first parse (`style_from`).
        self._css_first: Hashable | None = None

    def style_from(self, theme: str) -> None:
        """Start on `theme`, its variables in the stylesheet before anything is parsed (call it
        before the app runs). Set later (as in `on_mount`), the stylesheet is first parsed with
        the default theme's variables, then parsed again in full for the theme: two of the
        three parses of every source at each start, ~30 ms of a ~150 ms startup."""
        self.theme = theme
        self.stylesheet.set_variables(self.get_css_variables())
        self._css_first = self._css_variables_key()

    def _exiting(self) -> bool:
        """The app is exiting: no screen may be built or switched to (Textual is closing the
        screen stacks, and a new one would change them under it)."""
        return not self.is_running or self.return_code is not None

    def add_screen_modes(self, mode: str | None = None) -> None:
        """Add every screen's mode (built on its first switch), show `mode` (default: the
        first), and start building Jobs and Failures ahead, once per console."""
        self._built.clear()
        for spec in SCREENS:
            self.add_mode(spec.mode, functools.partial(self._build_screen, spec.mode))
        self.switch_mode(mode or SCREENS[0].mode)
        if self._startup_timer is None:
            # Only modes this console has (an embedding program may list fewer screens).
            ahead = [mode for mode in BUILT_AHEAD_MODES if any(s.mode == mode for s in SCREENS)]
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(ahead)
            )

    def stop_startup_work(self) -> None:
        """As the console unmounts: no more building ahead, and the GC walks everything again
        (an embedding program keeps collecting what the console leaves behind)."""
        if self._startup_timer is not None:
            self._startup_timer.stop()
        if self._gc_timer is not None:
            self._gc_timer.stop()
        self.gc_pacer.stop()
        if self._gc_frozen:
            gc.unfreeze()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):  # a key, a click: the operator is here
            self.gc_pacer.note_activity()
        await super().on_event(event)

    def exit(
        self, result: None = None, return_code: int = 0, message: RenderableType | None = None
    ) -> None:
        """Exit, once the screens being built have mounted (a key may have just switched to a
        new one). Textual closes the screens as it exits: one still composing would mount none
        of its widgets and fail in its own `on_mount`, a crash in place of a clean exit."""
        if self._startup_timer is not None:
            self._startup_timer.stop()  # nothing is built while the console closes
        if self.is_running and self._mounting() and not self._exit_deferred:
            self._exit_deferred = True
            self.run_worker(
                self._exit_when_mounted(result, return_code, message),
                group="exit",
                exit_on_error=False,
            )
            return
        super().exit(result, return_code, message)

    def _mounting(self) -> list[Screen[Any]]:
        """The screens built (a mode switched to) but not mounted yet."""
        screens: list[Screen[Any]] = []
        for spec in SCREENS:
            with contextlib.suppress(KeyError):
                screens += [s for s in self.get_screen_stack(spec.mode) if not s.is_mounted]
        return screens

    async def _exit_when_mounted(
        self, result: None, return_code: int, message: RenderableType | None
    ) -> None:
        try:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(EXIT_MOUNT_WAIT_S):
                    for mounting in list(self._switches):
                        await mounting
        finally:
            super().exit(result, return_code, message)

    def _build_ahead(self, modes: list[str]) -> None:
        """Build the next of `modes`' screens off screen, one per delay, while the console idles.

        Composing and mounting a table screen takes longer than the jobs page's 100 ms budget
        on a busy box; built in advance, its key only lays it out and repaints. Built with two
        public mode switches in one go (there and straight back, no paint between): the screen
        mounts hidden, reads its first page, then waits until it is shown (`next_refresh`).
        The timer is stopped by `exit`, so none of this runs while the console closes.
        """
        if self._exiting():
            return
        if len(self.screen_stack) > 1:
            # Help, the command line or a dialog is open: switching modes away and back under it
            # would take its focus (keys typed then are lost). Build once it is closed.
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(modes)
            )
            return
        while modes and not self.switching:  # a profile switch rebuilds every screen anyway
            mode = modes.pop(0)
            current = self.current_mode
            if mode == current or self._mode_screen(mode) is not None:
                continue  # visited already
            # Neither screen needs the full restyle each resume brings: the new one is styled
            # as it mounts, the current one was styled a moment ago (screens/quiet_resume.py).
            shown = self.screen
            self._building_ahead = True
            try:
                self._switch(mode, release=False)
            finally:
                self._building_ahead = False
            if isinstance(shown, QuietResume):
                shown.restyle_on_resume = False
            self._switch(current, release=False)
            self._startup_timer = self.set_timer(
                BUILD_AHEAD_DELAY_S, lambda: self._build_ahead(modes)
            )
            return
        # All built: what is alive now lives as long as the console.
        self._startup_timer = self.set_timer(GC_SETTLE_S, self._freeze_startup_objects)

    def _build_screen(self, mode: str) -> Screen[None]:
        """A mode's screen, on its first visit: the one a number key built and let read its
        first rows (`action_jump`), else a new one."""
        screen = self._built.pop(mode, None) or SCREEN_FACTORIES[mode](self.context)
        if self._building_ahead and isinstance(screen, QuietResume):
            screen.restyle_on_resume = False
        return screen

    def switch_mode(self, mode: str) -> AwaitMount:
        return self._switch(mode, release=True)

    def _switch(self, mode: str, *, release: bool) -> AwaitMount:
        # The screen being left keeps its tables up to date but does not paint them: free
        # their render caches instead of carrying every screen's renders for the whole session.
        if release:
            for table in self.screen.query(LiveTable):
                table.release_render_caches()
        mounting = super().switch_mode(mode)
        # A mode's first switch mounts its screen: an exit meanwhile waits for it (`exit`).
        self._switches = [*self._switches[-len(SCREENS) :], mounting]
        return mounting

    def refresh_css(self, animate: bool = True) -> None:
        """Restyle, unless nothing the styles depend on changed since the shown screen was styled.

        Textual calls this at each switch to a mode whose screen it has not restyled since the
        last restyle: every screen's first visit and every return to a screen. Each call parses
        every stylesheet source afresh and restyles the whole screen: 30-90 ms of CPU per number
        key and ~0.3 s of startup, for rules that only change with the theme, the terminal's
        colours or the sources. A screen is styled with the current rules when it mounts, so it
        is current unless one of those changed since (then it is restyled in full, as before).
        A widget's scoped default CSS, added when its first instance mounts, only matches
        widgets mounted from then on: it changes nothing already styled.
        """
        inputs = self._css_dependencies()
        if self._css_inputs is None and self._css_first == self._css_variables_key():
            # The first restyle (the theme's, at startup): every rule was parsed with the
            # variables `style_from` set, and a source added since is parsed at its next use
            # (Textual parses again when a source is added; only new variables need a reparse).
            self._css_inputs = inputs
            return
        if self._css_changed(inputs):
            self._css_changes += 1
        elif self._css_styled_at.setdefault(self.screen, self._css_changes) == self._css_changes:
            self._css_inputs = inputs
            return  # new (styled as it mounted) or styled since the last change
        self._css_inputs = inputs
        super().refresh_css(animate)
        for screen in self.screen_stack:
            self._css_styled_at[screen] = self._css_changes

    def _css_variables_key(self) -> Hashable:
        """What the rules' variables come from: the theme, the terminal colour theme, and the
        variables themselves."""
        variables = tuple(sorted(self.get_css_variables().items()))
        return (self.theme, repr(self.ansi_theme), variables)

    def _css_dependencies(self) -> tuple[Hashable, dict[Hashable, str]]:
        """What the styles are made of: the theme's variables and the terminal colour theme
        (with every source that applies to any widget), and the scoped sources apart."""
        everywhere: list[Hashable] = [self.theme, repr(self.ansi_theme)]
        everywhere += sorted(self.get_css_variables().items())
        scoped: dict[Hashable, str] = {}
        for origin, source in self.stylesheet.source.items():
            if source.scope:
                scoped[origin] = source.content
            else:
                everywhere.append((origin, source.content))
        return tuple(everywhere), scoped

    def _css_changed(self, inputs: tuple[Hashable, dict[Hashable, str]]) -> bool:
        if self._css_inputs is None:
            return True
        everywhere, scoped = inputs
        seen_everywhere, seen_scoped = self._css_inputs
        return everywhere != seen_everywhere or any(
            scoped.get(origin) != content for origin, content in seen_scoped.items()
        )

    def _freeze_startup_objects(self) -> None:
        """Take the objects alive once the screens are built out of the cyclic GC's scans.

        Modules, widgets and styles are most of the heap and live as long as the console, yet
        every full collection walks them: 60-150 ms pauses at random moments, the slowest
        refreshes and key presses. Frozen, a full collection walks only what came later.
        `stop_startup_work` unfreezes them (an embedding program keeps collecting what the
        console leaves behind).
        """
        if self._exiting():
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._gc_frozen = True
        self.gc_pacer.start()
        if self.gc_pacer.running and self._gc_timer is None:
            self._gc_timer = self.set_interval(TICK_S, self.gc_pacer.tick)

    @property
    def settled(self) -> bool:
        """Startup work is over: screens built ahead, startup objects frozen."""
        return self._gc_frozen

    def _mode_screen(self, mode: str) -> Screen[Any] | None:
        """The top screen of a mode already built, or None."""
        try:
            stack = self.get_screen_stack(mode)
        except KeyError:
            return None
        return stack[-1] if stack else None

    def _screen_for(self, mode: str) -> Screen[Any]:
        """A mode's screen: the one shown before, or one built for its first visit."""
        screen = self._mode_screen(mode) or self._built.get(mode)
        if screen is None:
            screen = self._built[mode] = SCREEN_FACTORIES[mode](self.context)
        return screen

    @on(OpenJobs)
    def _open_jobs(self, message: OpenJobs) -> None:
        """Enter on the overview: the Jobs screen filtered to one entrypoint, built for this
        visit if need be (the filter is set before its first read)."""
        from pgq_console.screens.jobs import JobsScreen

        jobs = self._screen_for("jobs")
        if isinstance(jobs, JobsScreen):
            jobs.filter_entrypoint(message.entrypoint)
        self.action_jump(next(spec.key for spec in SCREENS if spec.mode == "jobs"))

    def action_jump(self, key: str) -> None:
        """Number keys: switch to that screen's mode (screens keep running in the background).

        A screen is built on its first visit; one that can (`PreparesToShow`) reads fresh rows
        before it is shown, on every visit, so its first paint has current rows.
        """
        if self.backend is None or not self.backend.capabilities.can_read:
            return
        self.gc_pacer.note_activity()  # also when called by a command, not a key
        self._dismiss_overlays()
        for spec in SCREENS:
            if spec.key != key:
                continue
            screen = self._screen_for(spec.mode) if spec.mode != self.current_mode else None
            if isinstance(screen, PreparesToShow):
                self._prepare_and_show(spec.mode, screen)
            else:
                self.workers.cancel_group(self, "jump")  # a slower jump must not land after
                self.switch_mode(spec.mode)

    @work(group="jump", exclusive=True, exit_on_error=False)
    async def _prepare_and_show(self, mode: str, screen: PreparesToShow) -> None:
        """Let a screen read fresh rows, then switch to it.

        One paint of current rows instead of a paint of the last visit's rows (or an empty
        table) and another when the refresh lands: the jobs page's 100 ms. A slow database only
        delays the switch by `PREPARE_WAIT_S`; the screen's own refresh then takes over.
        """
        # Slow or failing, the read only delays the switch: the screen's refresh reports it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(screen.prepare_to_show(), PREPARE_WAIT_S)
        if self._exiting():
            return  # exiting while the rows were read: nothing more to show
        self.switch_mode(mode)
