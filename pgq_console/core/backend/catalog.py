"""The installed PgQueuer schema, read from the catalog in one statement.

PgQueuer's `schema_inspect.inspect` reads the catalog with 7 statements one after another (8
with a schema set), each a few round trips: 1.4 s before the console's first paint over a
50 ms link. `read_schema` sends the very same catalog queries (PgQueuer's `CatalogQueries`,
their placeholders renumbered) as the columns of one SELECT, one JSON array each, and builds
PgQueuer's `Schema` model from them with PgQueuer's own builders; PgQueuer's planner then
compares it with what the installed pgqueuer declares. Should a pgqueuer release change its
queries so they cannot be combined (another placeholder), `read_schema` falls back to
PgQueuer's `inspect`. `tests/test_schema_catalog.py` compares both readings on installed,
missing and outdated schemas.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgqueuer.domain.schema.model import Schema
    from pgqueuer.domain.settings import DBSettings

    from pgq_console.core.backend.base import Backend

_PLACEHOLDER = re.compile(r"\$(\d+)")


class NotCombinable(Exception):
    """PgQueuer's catalog queries no longer take one `$1` each: read them its own way."""


def _renumbered(sql: str, number: int) -> str:
    if {int(n) for n in _PLACEHOLDER.findall(sql)} != {1}:
        raise NotCombinable(sql)
    return _PLACEHOLDER.sub(f"${number}", sql)


def combined_catalog_query(settings: DBSettings) -> tuple[str, tuple[object, ...]]:
    """One SELECT answering every catalog query `inspect` sends, and its arguments."""
    columns, args = combined_catalog_columns(settings)
    return "SELECT " + ",\n       ".join(columns), args


def combined_catalog_columns(
    settings: DBSettings, first: int = 1
) -> tuple[list[str], tuple[object, ...]]:
    """The columns of `combined_catalog_query` (for a SELECT that reads more), their
    placeholders numbered from `first`, and their arguments."""
    from pgqueuer.adapters.persistence.schema_inspect import CatalogQueries
    from pgqueuer.domain.schema.declaration import target

    declared = target(settings)
    queries = CatalogQueries(settings)
    names: list[list[str]] = [
        [table.name for table in declared.tables],
        [*_type_names(settings)],
        [declared.triggers[0].name],
        [declared.functions[0].name],
    ]
    parts = {
        "columns": (queries.columns(), 1),
        "indexes": (queries.indexes(), 1),
        "constraints": (queries.constraints(), 1),
        "sequences": (queries.sequences(), 1),
        "enums": (queries.enums(), 2),
        "triggers": (queries.triggers(), 3),
        "functions": (queries.functions(), 4),
    }
    shift = first - 1
    columns = [
        "(SELECT coalesce(json_agg(q), '[]'::json) "
        f"FROM ({_renumbered(sql, number + shift)}) AS q)::text AS {name}"
        for name, (sql, number) in parts.items()
    ]
    args: list[object] = [*names]
    if settings.db_schema is not None:
        columns.append(f"({_renumbered(queries.namespace(), 5 + shift)}) AS namespace_present")
        args.append(settings.db_schema)
    return columns, tuple(args)


def _type_names(settings: DBSettings) -> list[str]:
    from pgqueuer.domain.schema.declaration import retired, target

    return [str(enum.name) for enum in target(settings).enums] + [
        str(t) for t in retired(settings).types
    ]


async def read_schema(backend: Backend, settings: DBSettings) -> Schema:
    """The installed schema as PgQueuer's `inspect` reports it, in one read."""
    from pgqueuer.adapters.persistence import schema_inspect as inspect_module

    try:
        sql, args = combined_catalog_query(settings)
    except NotCombinable:
        return await inspect_module.inspect(backend.queries.driver, settings)
    row = (await backend.read(sql, *args))[0]
    return schema_from_row(row, settings)


def schema_from_row(row: dict[str, Any], settings: DBSettings) -> Schema:
    """PgQueuer's `Schema` from the combined query's one row (its builders, its row shapes)."""
    from pgqueuer.adapters.persistence import schema_inspect as si
    from pgqueuer.adapters.persistence.schema_plan import rebuild_name
    from pgqueuer.domain.schema.declaration import retired, target
    from pgqueuer.domain.schema.model import Function, Schema, Trigger
    from pgqueuer.domain.types import FunctionName, TableName, TriggerName

    if settings.db_schema is not None and not row["namespace_present"]:
        return Schema((), (), (), (), (), namespace_exists=False)
    declared, gone = target(settings), retired(settings)
    table_names = [table.name for table in declared.tables]
    index_names = [
        *(index.name for index in declared.indexes),
        *(rebuild_name(index) for index in declared.indexes),
        *gone.indexes,
    ]

    def rows(name: str, shape: Any) -> list[Any]:
        return [shape.model_validate(item) for item in json.loads(row[name])]

    columns = rows("columns", si.ColumnRow)
    indexes = rows("indexes", si.IndexRow)
    constraints = rows("constraints", si.ConstraintRow)
    sequences = rows("sequences", si.SequenceRow)
    enums = rows("enums", si.EnumRow)
    triggers = rows("triggers", si.TriggerRow)
    functions = rows("functions", si.FunctionRow)
    return Schema(
        enums=si.build_enums(enums),
        tables=si.build_tables(columns, constraints, sequences, settings.db_schema),
        indexes=si.build_indexes(indexes, index_names, settings.db_schema),
        functions=tuple(Function(name=FunctionName(r.name), body=r.body) for r in functions),
        triggers=tuple(
            Trigger(
                name=TriggerName(r.name), table=TableName(r.tbl), function=FunctionName(r.function)
            )
            for r in triggers
            if r.tbl in table_names
        ),
    )
