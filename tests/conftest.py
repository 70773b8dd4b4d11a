"""Real PostgreSQL for every test: the embedded server, or PGQ_CONSOLE_TEST_DSN's server.

Each test module gets a fresh database with the PgQueuer schema installed. Snapshot SVGs live in
the top-level `snapshots/` directory (pytest-textual-snapshot 1.1.0 has no option for it).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_textual_snapshot as pts

SNAPSHOT_ROOT = Path(__file__).resolve().parents[1] / "snapshots"


class TopLevelSVGExtension(pts.SVGImageExtension):  # type: ignore[misc]
    @classmethod
    def dirname(cls, *, test_location: object) -> str:
        return str(SNAPSHOT_ROOT / test_location.basename)  # type: ignore[attr-defined]


pts.SVGImageExtension = TopLevelSVGExtension  # snap_compare looks this name up per call


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The developer's own DSN, PgQueuer settings and config never reach a test."""
    for name in list(os.environ):
        if name.startswith(("PGQUEUER_", "PGQ_CONSOLE_")) and name != "PGQ_CONSOLE_TEST_DSN":
            monkeypatch.delenv(name, raising=False)
    for name in ("PGDSN", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))


def with_database(dsn: str, database: str) -> str:
    """The same server URI, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """An admin URI of the server every test uses."""
    external = os.environ.get("PGQ_CONSOLE_TEST_DSN")
    if external:
        yield external
        return
    from pgq_console.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def install_pgqueuer(dsn: str) -> None:
    import asyncpg
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    try:
        await Queries.from_asyncpg_connection(connection).install()
    finally:
        await connection.close()


def make_database(server: str, tag: str, *, install: bool = True) -> str:
    name = f"pgqc_{re.sub(r'[^a-z0-9]+', '_', tag.lower())[:30]}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    dsn = with_database(server, name)
    if install:
        asyncio.run(install_pgqueuer(dsn))
    return dsn


def drop_database(server: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def database_dsn(server_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database with the PgQueuer schema, for this test module only."""
    dsn = make_database(server_dsn, request.module.__name__.rsplit(".", 1)[-1])
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


@pytest.fixture
def fresh_database(server_dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database with the PgQueuer schema, for one test."""
    dsn = make_database(server_dsn, request.node.name)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


@pytest.fixture
def snap_compare(snap_compare: Any) -> Any:
    """pytest-textual-snapshot's `snap_compare`, taken once every live table on the screen is
    laid out (DataTable measures new rows when idle, which a busy machine delays)."""

    def compare(app: Any, *args: Any, run_before: Any = None, **kwargs: Any) -> Any:
        async def before(pilot: Any) -> None:
            if run_before is not None:
                result = run_before(pilot)
                if inspect.isawaitable(result):
                    await result
            await settle_tables(pilot)

        return snap_compare(app, *args, run_before=before, **kwargs)

    return compare


async def settle_tables(pilot: Any, within: float = 30.0) -> None:
    """Wait (never raise: the snapshot then shows what is wrong) for settled live tables."""
    from pgq_console.widgets.live_table import LiveTable

    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < within:
        tables = list(pilot.app.screen.query(LiveTable))
        if all(table.settled for table in tables):
            return
        await pilot.pause(0.02)
