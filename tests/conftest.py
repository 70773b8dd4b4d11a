"""Real PostgreSQL for every test: the embedded server, or PGQ_CONSOLE_TEST_DSN's server.

Each test module gets a fresh database with the PgQueuer schema installed: a copy of a template
database the worker installs the schema into once (`CREATE DATABASE ... TEMPLATE`), which is
the same schema `pgq install` writes, for a fraction of the cost. Snapshot SVGs live in the
top-level `snapshots/` directory (pytest-textual-snapshot 1.1.0 has no option for it).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_textual_snapshot as pts
from hypothesis import settings as hypothesis_settings

SNAPSHOT_ROOT = Path(__file__).resolve().parents[1] / "snapshots"

# Bytecode is cached (`__pycache__/`, ignored by git) even where PYTHONDONTWRITEBYTECODE is set:
# otherwise every xdist worker of every run compiles the test modules and rewrites their asserts
# again (~3 s of CPU per worker), and the child interpreters the tests start compile the modules
# they import at each start. Set here, before the workers start and collect.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The property and fuzz tests (test_fuzz, test_filter_scope_property, the NOTIFY parser's) run a
# fifth of their generated inputs in the default run, and all of them under
# `--hypothesis-profile=full`, which `.ci/run` runs after the README's test command
# (>= 10,000 fuzz inputs, 2,000 filters against the database). Registered here, before
# hypothesis's pytest plugin loads the profile named on the command line.
FULL_PROFILE = "full"
hypothesis_settings.register_profile(FULL_PROFILE, hypothesis_settings.get_profile("default"))


def examples(full: int) -> int:
    """How many inputs a property test generates: `full` under the full profile, else a fifth
    (at least 100, hypothesis's own default)."""
    if hypothesis_settings.get_current_profile_name() == FULL_PROFILE:
        return full
    return max(full // 5, 100)


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
        try:
            yield external
        finally:
            template = _templates.pop(external, None)
            if template is not None:
                asyncio.run(_admin(external, f'DROP DATABASE IF EXISTS "{template}"'))
        return
    from pgq_console.core.embedded import EmbeddedPostgres

    memory = _memory_dir()
    server = EmbeddedPostgres(memory / "pgdata" if memory is not None else None)
    try:
        dsn = server.start()
        # A throwaway server: durability buys nothing, and every DROP DATABASE (a checkpoint)
        # and commit otherwise waits on the disk; nor does it need autovacuum (its databases
        # live minutes; a test that wants a vacuum runs one) or JIT (compiling costs more than
        # it saves on test-sized tables). An external server is left as it is.
        for setting in _THROWAWAY_SETTINGS:
            asyncio.run(_admin(dsn, f"ALTER SYSTEM SET {setting}"))
        asyncio.run(_admin(dsn, "SELECT pg_reload_conf()"))
        _throwaway.add(dsn)
        yield dsn
    finally:
        _templates.pop(server.uri or "", None)
        _throwaway.discard(server.uri or "")
        server.stop()
        if memory is not None:
            shutil.rmtree(memory, ignore_errors=True)


_THROWAWAY_SETTINGS = (
    "fsync = off",
    "synchronous_commit = off",
    "full_page_writes = off",
    "autovacuum = off",
    "jit = off",
    "max_wal_size = '256MB'",
)

# The embedded test server keeps its data in memory (/dev/shm) when there is room: most of its
# CPU is the kernel's, writing files (a CREATE DATABASE copies ~8 MB, a big-payload test writes
# hundreds of MB), several times cheaper on tmpfs than on a disk's filesystem. Room: a run puts
# up to ~1 GB on each worker's server (its databases are kept until the session ends).
_MEMORY_ROOT = Path("/dev/shm")
_MEMORY_NEEDED = 6 * 1024**3


def _memory_dir() -> Path | None:
    try:
        free = os.statvfs(_MEMORY_ROOT)
    except OSError:
        return None
    if free.f_bavail * free.f_frsize < _MEMORY_NEEDED or not os.access(_MEMORY_ROOT, os.W_OK):
        return None
    return Path(tempfile.mkdtemp(prefix="pgqc-test-", dir=_MEMORY_ROOT))


# This process's embedded servers: deleted whole when the session ends, so the databases made on
# them are not dropped one by one (a DROP DATABASE costs the server CPU, ~250 in a run).
_throwaway: set[str] = set()


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


# Per server (this process's): a database with the PgQueuer schema that new ones are copied from.
_templates: dict[str, str] = {}


def _template_for(server: str) -> str:
    template = _templates.get(server)
    if template is None:
        template = f"pgqc_template_{uuid.uuid4().hex[:8]}"
        asyncio.run(_admin(server, f'CREATE DATABASE "{template}"'))
        # Nothing stays connected to it: CREATE DATABASE refuses a template in use.
        asyncio.run(install_pgqueuer(with_database(server, template)))
        _templates[server] = template
    return template


def make_database(server: str, tag: str, *, install: bool = True) -> str:
    """A new database on `server`; with the PgQueuer schema unless `install=False`."""
    name = f"pgqc_{re.sub(r'[^a-z0-9]+', '_', tag.lower())[:30]}_{uuid.uuid4().hex[:6]}"
    source = f' TEMPLATE "{_template_for(server)}"' if install else ""
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"{source}'))
    return with_database(server, name)


def drop_database(server: str, dsn: str, *, now: bool = False) -> None:
    """Drop `dsn`'s database once its test is done with it: on an external server; on our
    throwaway embedded one nothing (it goes with the server). `now=True`: the test needs it gone
    (a lost database), on any server."""
    if server in _throwaway and not now:
        return
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
    laid out (DataTable measures new rows when idle, which a busy machine delays) and its footer
    has its keys (they compose on the screen's first bindings update, which a busy machine can
    deliver after the data the test waited for)."""

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
    """Wait (never raise: the snapshot then shows what is wrong) for settled live tables, plain
    tables laid out with their rows, and composed footers.

    Checks between plain sleeps, as tests/helpers.py `wait_until` does: the app runs on this
    loop and lays its tables out meanwhile; `pilot.pause` would make every widget on screen
    process a callback and force a screen update at each check."""
    from textual.widgets import DataTable

    from pgq_console.widgets.footer import ConsoleFooter
    from pgq_console.widgets.live_table import LiveTable
    from tests.helpers import POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S

    def laid_out(table: DataTable[Any]) -> bool:
        # A plain DataTable (a dialog's sample rows) is given the height of rows added to it
        # at the next layout, once it has measured them when idle.
        return not table.display or not table.row_count or table.size.height > 1

    loop = asyncio.get_running_loop()
    started = loop.time()
    step = POLL_FIRST_S
    while loop.time() - started < within:
        screen = pilot.app.screen
        tables = list(screen.query(LiveTable))
        footers = [footer for footer in screen.query(ConsoleFooter) if footer.display]
        plain = list(screen.query(DataTable))
        if (
            all(table.settled for table in tables)
            and all(f.children for f in footers)
            and all(laid_out(table) for table in plain)
        ):
            return
        await asyncio.sleep(step)
        step = min(step * POLL_GROWTH, POLL_MAX_S)


# -- how the tests are spread over the xdist workers ------------------------------------------
#
# A module's tests stay together on one worker (its module-scoped databases, seeded data and
# servers are made once), except in the modules below, whose tests each bring their own server
# or database (or only read a module database, or seed it afresh) and take long: each of those
# tests goes to whichever worker is free (a module fixture one of them uses is then made on each
# worker that needs it). Work is handed out longest first (LONGEST_FIRST, as measured: a
# module's total, or a spread module's longest test), then the other modules in file order, and
# last FILLERS, spread modules of many short tests that even out the workers' finishing times.
# (xdist hands a worker its next unit while two of its tests are still pending, so a long unit
# handed out late can start on a busy worker while another one sits idle.)
SPREAD_MODULES = {
    "test_resilience",
    "test_shutdown_race",
    "test_embedding_exit",
    "test_consumer_reconnect",
    "test_jobs_screens",
    "test_schedules_screen",
    "test_enqueue_bounds",
    "test_signal_drain",
    "test_ops_regressions",
    "test_hangup",
    "test_fuzz",
    "test_security_cli",
    "test_security_console",
}
LONGEST_FIRST = [
    "test_consumers_screen",
    "test_topology_pgbouncer",
    "test_overview_live",
    "test_jobs_snapshots",
    "test_why_screen",
    "test_enqueue_guard",
    "test_consumer_reconnect",
    "test_shutdown_race",
    "test_resilience",
    "test_failure_groups",
    "test_small_items",
    "test_drivers",
    "test_keys",
    "test_health_screen",
    "test_filter_safety",
    "test_themes",
    "test_charts_screen",
    "test_snapshots",
    "test_embedding_exit",
    "test_enqueue_bounds",
    "test_workers_screen",
    "test_help",
    "test_enqueue_form",
    "test_config_profiles",
    "test_footer_leak",
    "test_schedules_screen",
    "test_signal_drain",
    "test_fleet_screen",
    "test_copy_finished",
    "test_topology_replica",
    "test_ops_regressions",
    "test_hangup",
    "test_filter_scope_property",
    "test_fuzz",
]
FILLERS = ["test_security_console", "test_jobs_screens", "test_security_cli"]


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's per-module scheduling (`--dist loadscope`) with the two rules above."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesLongestFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = _module_of(nodeid)
            return nodeid if module in SPREAD_MODULES else module

    if config.getvalue("dist") != "loadscope":
        return None  # another --dist on the command line: xdist's own
    return ModulesLongestFirst(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first and the fillers last (xdist hands out work in collection
    order: pyproject.toml turns its own reordering, by number of tests, off)."""
    others = len(LONGEST_FIRST)
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    rank.update({name: others + 1 + position for position, name in enumerate(FILLERS)})
    order = {id(item): position for position, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(_module_of(item.nodeid), others), order[id(item)]))
