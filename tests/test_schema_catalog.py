"""The schema check reads the catalog in one statement (`core/backend/catalog.py`) and sees
exactly what PgQueuer's own `inspect` sees (7-8 statements): installed, missing, outdated,
in a schema of its own with a prefix, and a schema that does not exist. Real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from pgqueuer.adapters.persistence import schema_inspect, schema_plan
from pgqueuer.domain.schema.declaration import target

from pgq_console.core.backend import Backend, open_backend
from pgq_console.core.backend.catalog import read_schema
from pgq_console.core.target import DriverKind, Installation
from tests.conftest import drop_database, make_database

DRIVERS = (DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG)


@pytest.fixture(scope="module")
def databases(server_dsn: str) -> Iterator[dict[str, str]]:
    made = {
        "installed": make_database(server_dsn, "catalog_installed"),
        "missing": make_database(server_dsn, "catalog_missing", install=False),
        "outdated": make_database(server_dsn, "catalog_outdated"),
        "own_schema": make_database(server_dsn, "catalog_own_schema", install=False),
    }

    async def prepare() -> None:
        connection = await asyncpg.connect(made["outdated"])
        try:  # what a pre-1.4 PgQueuer schema lacks, and an index PgQueuer retired
            await connection.execute("DROP INDEX pgqueuer_picked_slot_idx")
            await connection.execute("ALTER TABLE pgqueuer DROP COLUMN slot")
        finally:
            await connection.close()
        connection = await asyncpg.connect(made["own_schema"])
        try:
            await connection.execute("CREATE SCHEMA jobs")
            own = Installation.select(schema="jobs", prefix="app_")
            from pgqueuer.db import AsyncpgDriver

            await own.queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    asyncio.run(prepare())
    try:
        yield made
    finally:
        for dsn in made.values():
            drop_database(server_dsn, dsn)


def _counting(backend: Backend) -> list[str]:
    """The statements `backend.read` is asked for from now on."""
    seen: list[str] = []
    read = backend.read

    async def counted(sql: str, *args: object) -> list[dict[str, Any]]:
        seen.append(sql)
        return await read(sql, *args)

    backend.read = counted  # type: ignore[method-assign]
    return seen


# database, schema, prefix: whether PgQueuer is installed there, and up to date
CASES = [
    ("installed", None, None, True, True),
    ("missing", None, None, False, False),
    ("outdated", None, None, True, False),
    ("own_schema", "jobs", "app_", True, True),
    ("own_schema", "no_such_schema", None, False, False),
    ("installed", None, "app_", False, False),  # installed, but not under this prefix
]


@pytest.mark.parametrize("kind", DRIVERS, ids=lambda k: k.value)
@pytest.mark.parametrize(("database", "schema", "prefix", "installed", "current"), CASES)
async def test_one_statement_reads_what_pgqueuer_reads(
    databases: dict[str, str],
    kind: DriverKind,
    database: str,
    schema: str | None,
    prefix: str | None,
    installed: bool,
    current: bool,
) -> None:
    installation = Installation.select(schema=schema, prefix=prefix)
    backend = await open_backend(kind, databases[database], installation, "test-db", ())
    try:
        settings = installation.settings
        theirs = await schema_inspect.inspect(backend.queries.driver, settings)
        statements = _counting(backend)
        ours = await read_schema(backend, settings)
        assert len(statements) == 1
        assert ours == theirs
        assert bool(ours.tables or ours.enums) == installed
        if installed:
            plan = schema_plan.plan(ours, target(settings), settings)
            assert (not plan.statements) == current
    finally:
        await backend.close()
