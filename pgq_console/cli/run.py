"""Running the TUI: settings, connecting (or the demo), the app, and its exit code and message."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import io
import signal
import sys
from typing import TYPE_CHECKING

from pgq_console.cli.logs import KNOWN_SECRETS, log, log_path, remember_secrets
from pgq_console.cli.parser import cli_options
from pgq_console.cli.terminal import require_terminal
from pgq_console.core.errors import ConsoleError
from pgq_console.core.text import one_line

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pgq_console.app import PgqConsole
    from pgq_console.config import Settings
    from pgq_console.core.backend import Backend
    from pgq_console.core.overview.early import EarlyRefresher


def load(args: argparse.Namespace) -> Settings:
    from pgq_console.config import load_settings

    return load_settings(cli_options(args))


async def run(args: argparse.Namespace) -> int:
    """The TUI; returns the exit code (128 + signum after SIGHUP/SIGTERM)."""
    from pgq_console.config import open_target
    from pgq_console.core.target import Installation, dsn_parts, parse_driver
    from pgq_console.termination import TerminationSignals, tolerate_hangup

    settings = load(args)
    target = settings.target
    remember_secrets(target)
    parse_driver(target.driver)  # an unknown driver: one line before anything else
    async with contextlib.AsyncExitStack() as stack:
        if args.demo:
            from pgq_console.core.backend import check_schema, open_backend

            require_terminal()  # before starting a server for nothing
            dsn, label = await _start_demo(stack, args.demo_rate)
            installation = Installation.select(
                schema=target.schema, prefix=target.prefix, channel=target.channel
            )
            backend = await open_backend(
                parse_driver(target.driver),
                dsn,
                installation,
                label,
                (),
                read_only=target.read_only,
                check=check_schema,
            )
            stack.push_async_callback(backend.close)
            await _start_traffic(stack, dsn, args.demo_rate)
        else:
            # A connection string or installation settings that do not parse: one line at
            # once (as `open_target` would say it, in its order), not after importing the app.
            Installation.select(schema=target.schema, prefix=target.prefix, channel=target.channel)
            dsn_parts(target.dsn)
            # The app's modules (Textual, the overview: a few hundred ms of CPU) are imported
            # while the connection is opened, which is mostly waiting for the server (several
            # round trips; 50 ms each over a remote link): first numbers sooner.
            app_import = asyncio.ensure_future(
                asyncio.to_thread(importlib.import_module, "pgq_console.app")
            )
            early: EarlyRefresher | None = None
            try:
                backend = await open_target(target)
                stack.push_async_callback(backend.close)
                # After connecting: a connection problem is the more useful message.
                require_terminal()
                if backend.capabilities.can_read and not backend.autocommit_problem:
                    # The overview's first reading goes out now and its round trips overlap
                    # the rest of the import and Textual's start; the overview adopts it (an
                    # enqueue-only console, or an autocommit problem: no overview, no reading).
                    from pgq_console.core.clock import SystemClock
                    from pgq_console.core.overview.early import EarlyRefresher

                    early = EarlyRefresher(
                        backend, SystemClock(), interval_s=settings.refresh, listen=True
                    )
                    stack.push_async_callback(early.cancel)
            finally:
                with contextlib.suppress(Exception):
                    await app_import  # any error is raised again by the import in make_app
        app = make_app(settings, backend)
        if not args.demo:
            # make_app's console listens (PgqConsole's default) and refreshes every
            # settings.refresh: the early refresher's settings, checked again on adoption.
            app.context.early_refresher = early
        app.served = bool(getattr(args, "served", False))
        # Textual prints a crash's traceback with local variables (a DSN among them) to the
        # terminal: it goes to the log instead, scrubbed, and the terminal gets one line.
        from rich.console import Console

        errors = io.StringIO()
        app.error_console = Console(
            file=errors, width=160, color_system=None, markup=False, highlight=False
        )
        with TerminationSignals(app), tolerate_hangup():
            await app.run_async()
        _say_what_became_of_running_jobs(app)
        if app.exit_signal is not None:
            return 128 + app.exit_signal
        return _app_exit(app.return_code or 0, errors.getvalue(), tuple(KNOWN_SECRETS))


EXIT_CRASH = 1


def _app_exit(code: int, printed: str, secrets: tuple[str, ...]) -> int:
    """0, or one line on stderr: the app's own message (exit 2) or, for a crash, where the
    traceback is (exit 1)."""
    from pgq_console.core.errors import scrub

    printed = scrub(printed, secrets).strip()
    if code == 0:
        if printed:  # the app's last word (`exit(message=...)`: what a quit stopped)
            log.info("the console said on exit: %s", printed)
            for line in printed.splitlines():
                print(f"pgq-console: {line}", file=sys.stderr)
        return 0
    if code == EXIT_CRASH:
        log.error("the console stopped on an unexpected error:\n%s", printed)
        lines = [line for line in printed.splitlines() if line.strip()]
        cause = one_line(lines[-1]) if lines else "unknown error"
        print(
            f"pgq-console: error: the console crashed ({cause[:200]}); "
            f"the traceback is in {log_path()}",
            file=sys.stderr,
        )
        return EXIT_CRASH
    message = one_line(printed) or f"exit status {code}"
    print(f"pgq-console: error: {message}", file=sys.stderr)
    return code


def _say_what_became_of_running_jobs(app: PgqConsole) -> None:
    report = app.shutdown_report
    if report is None:
        return
    cause = signal.Signals(app.exit_signal).name if app.exit_signal is not None else "exit"
    with contextlib.suppress(OSError, ValueError):  # a hung-up terminal
        print(f"pgq-console: {cause}: consumers: {report.describe()}", file=sys.stderr)


def make_app(settings: Settings, backend: Backend | Callable[[], Awaitable[Backend]]) -> PgqConsole:
    """The console on `backend`, knowing its settings (profiles to switch to, badge, warnings)."""
    from pgq_console.app import PgqConsole

    target = settings.target
    app = PgqConsole(
        backend,
        refresh_interval=settings.refresh,
        theme=settings.theme,
        read_only=target.read_only,
        shutdown_drain_s=settings.shutdown_drain,
    )
    # Applied when the consumers' supervisor is created (not before the first paint).
    app.context.consumer_reconnect_attempts = settings.consumer_reconnect_attempts
    app.settings = settings
    app.profile = target.profile
    app.environment = target.environment
    app.startup_warnings = list(settings.warnings)
    return app


async def _start_demo(stack: contextlib.AsyncExitStack, rate: float) -> tuple[str, str]:
    from pgq_console.core.demo import install_schema
    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        dsn = await asyncio.to_thread(server.start)
    except RuntimeError as exc:
        raise ConsoleError(str(exc)) from None
    stack.callback(server.stop)
    await install_schema(dsn)
    return dsn, "embedded PostgreSQL 16 (demo)"


async def _start_traffic(stack: contextlib.AsyncExitStack, dsn: str, rate: float) -> None:
    from pgq_console.core.demo import DemoTraffic

    traffic = DemoTraffic(dsn, jobs_per_second=rate)
    await traffic.start()
    stack.push_async_callback(traffic.stop)
