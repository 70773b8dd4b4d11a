"""`pgq-console`: parse arguments, connect (or start the demo), run the app, exit cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pgq_console import __version__
from pgq_console.core.errors import ConsoleError

EXIT_USAGE = 2
log = logging.getLogger("pgq_console")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgq-console",
        description="Terminal operations console for PgQueuer.",
        epilog="The DSN comes from --dsn, PGQ_CONSOLE_DSN, PGDSN, PGQUEUER_DSN, or the libpq "
        "variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and .pgpass.",
    )
    parser.add_argument("--version", action="version", version=f"pgq-console {__version__}")
    parser.add_argument("--dsn", help="PostgreSQL connection string (URI or key=value)")
    parser.add_argument(
        "--driver",
        default=os.environ.get("PGQ_CONSOLE_DRIVER", "asyncpg-pool"),
        help="asyncpg | asyncpg-pool (default) | psycopg | psycopg-sync (enqueue-only)",
    )
    parser.add_argument("--schema", help="PgQueuer's schema (PGQUEUER_SCHEMA)")
    parser.add_argument("--prefix", help="PgQueuer's object-name prefix (PGQUEUER_PREFIX)")
    parser.add_argument("--channel", help="PgQueuer's NOTIFY channel (PGQUEUER_CHANNEL)")
    parser.add_argument(
        "--refresh", type=float, default=2.0, metavar="SECONDS", help="timer refresh (default 2)"
    )
    parser.add_argument("--theme", default="pgq-dark", help="pgq-dark (default) or pgq-light")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="hide write actions; the console's connections are read-only on the server",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start an embedded PostgreSQL with live demo traffic (needs pgq-console[demo])",
    )
    parser.add_argument(
        "--demo-rate", type=float, default=300.0, metavar="JOBS_PER_S", help=argparse.SUPPRESS
    )
    return parser


def log_path() -> Path:
    import platformdirs

    return platformdirs.user_log_path("pgq-console") / "console.log"


def configure_logging() -> None:
    """Logs go to a file: the terminal belongs to the TUI, and pgqueuer logs at CRITICAL."""
    path = log_path()
    root = logging.getLogger()
    for existing_handler in list(root.handlers):
        root.removeHandler(existing_handler)
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # pgqueuer's own logger may carry a stream handler of its own.
    for name in ("pgqueuer",):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True


async def run(args: argparse.Namespace) -> None:
    from pgq_console.app import PgqConsole
    from pgq_console.core.backend import check_schema, open_backend
    from pgq_console.core.target import (
        Installation,
        display_dsn,
        dsn_parts,
        parse_driver,
        resolve_dsn,
        secrets_of,
    )

    kind = parse_driver(args.driver)
    installation = Installation.select(schema=args.schema, prefix=args.prefix, channel=args.channel)
    if args.refresh <= 0:
        raise ConsoleError("--refresh must be a positive number of seconds")
    async with contextlib.AsyncExitStack() as stack:
        if args.demo:
            dsn, label = await _start_demo(stack, args.demo_rate)
            secrets: tuple[str, ...] = ()
        else:
            dsn = resolve_dsn(args.dsn)
            dsn_parts(dsn)  # bad syntax: one line before any connection attempt
            label, secrets = display_dsn(dsn), secrets_of(dsn)
        backend = await open_backend(
            kind, dsn, installation, label, secrets, read_only=args.read_only
        )
        stack.push_async_callback(backend.close)
        await check_schema(backend)
        if args.demo:
            await _start_traffic(stack, dsn, args.demo_rate)
        app = PgqConsole(
            backend, refresh_interval=args.refresh, theme=args.theme, read_only=args.read_only
        )
        await app.run_async()


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


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        asyncio.run(run(args))
    except ConsoleError as exc:
        print(f"pgq-console: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
