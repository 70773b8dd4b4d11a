"""As a property: for any filter line, either it does not parse (and no bulk
write can be built from it), or the rows a bulk write would touch are exactly the rows the list
shows, read in the same transaction.

One seeded database per module; each example runs the list query and the actions' scope
queries in one read-only REPEATABLE READ transaction on one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pgq_console.core.actions import CancelAction, RequeueAction
from pgq_console.core.errors import ConsoleError
from pgq_console.core.jobs import list_query, parse_filter
from pgq_console.core.target import Installation
from tests.conftest import examples

ENTRYPOINTS = ("send_email", "send_sms", "charge_card", "a_b", "a%b", "Resize", "x*y", "ü_é")
QUALIFIERS = ("ep", "status", "id", "prio", "age", "payload", "header", "EP", "Status", "bogus")
VALUE_TOKENS = (
    *ENTRYPOINTS,
    "send_*",
    "*",
    "*_*",
    "%",
    "_",
    "queued",
    "picked",
    "failed",
    "ready",
    "deferred",
    "QUEUED",
    "done",
    "1",
    "7",
    "42",
    "300",
    "-1",
    "0",
    ">5",
    ">=2",
    "<0",
    "<=1",
    "=3",
    ">",
    "10m",
    ">10m",
    "<2h",
    ">1d",
    "3s",
    "user1@",
    "example",
    "trace",
    "x-id",
    "",
)


@pytest.fixture(scope="module")
def session(database_dsn: str) -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(database_dsn))
    loop.run_until_complete(_seed(connection))
    try:
        yield loop, connection
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


async def _seed(connection: Any) -> None:
    await connection.execute("TRUNCATE pgqueuer, pgqueuer_log RESTART IDENTITY")
    await connection.execute(
        """INSERT INTO pgqueuer (priority, status, entrypoint, payload, headers, created,
            updated, heartbeat, execute_after, dedupe_key)
        SELECT (g % 8) - 2,
            (ARRAY['queued', 'picked', 'failed'])[1 + g % 3]::pgqueuer_status,
            ($1::text[])[1 + g % array_length($1::text[], 1)],
            CASE WHEN g % 5 = 0 THEN NULL
                 ELSE convert_to('{"to": "user' || g || '@example.com"}', 'UTF8') END,
            CASE WHEN g % 4 = 0 THEN NULL ELSE ('{"trace": "t' || g || '"}')::jsonb END,
            now() - make_interval(mins => g * 17),
            now() - make_interval(mins => g * 7),
            now(),
            now() + make_interval(mins => (g % 4) * 30 - 30),
            CASE WHEN g % 11 = 0 THEN 'k' || g END
        FROM generate_series(1, 400) g""",
        list(ENTRYPOINTS),
    )


def _value() -> st.SearchStrategy[str]:
    token = st.sampled_from(VALUE_TOKENS) | st.text(
        alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00 \t\n\r"),
        max_size=6,
    )
    return st.lists(token, max_size=4).map(",".join)


def _word() -> st.SearchStrategy[str]:
    qualified = st.tuples(st.sampled_from(("", "!")), st.sampled_from(QUALIFIERS), _value()).map(
        lambda parts: f"{parts[0]}{parts[1]}:{parts[2]}"
    )
    bare = st.tuples(st.sampled_from(("", "!")), st.sampled_from(VALUE_TOKENS)).map("".join)
    junk = st.sampled_from((":", "!", "!:", "ep::", ",", "ep:,", "status:,,", "id:1,", "ep:a,,b"))
    return st.one_of(_valid_word(), _valid_word(), qualified, bare, junk)


def _valid_word() -> st.SearchStrategy[str]:
    """Words that parse and usually match some rows: most examples reach the comparison."""

    def listed(tokens: tuple[str, ...]) -> st.SearchStrategy[str]:
        return st.lists(st.sampled_from(tokens), min_size=1, max_size=3).map(",".join)

    compare = st.sampled_from(("", ">", ">=", "<", "<=", "="))
    number = st.integers(min_value=-3, max_value=420).map(str)
    words = st.one_of(
        listed((*ENTRYPOINTS, "send_*", "*", "a*", "*_*")).map("ep:".__add__),
        listed(("queued", "picked", "failed", "ready", "deferred")).map("status:".__add__),
        st.tuples(compare, number).map(lambda p: f"prio:{p[0]}{p[1]}"),
        st.tuples(compare, number).map(lambda p: f"id:{p[0]}{p[1]}"),
        st.lists(number, min_size=2, max_size=5).map(lambda n: "id:" + ",".join(n)),
        st.tuples(
            st.sampled_from((">", "<", ">=", "<=")), st.integers(0, 80), st.sampled_from("smhd")
        ).map(lambda p: f"age:{p[0]}{p[1]}{p[2]}"),
        st.sampled_from(("user1", "@example", "user3", "to")).map("payload:".__add__),
        st.sampled_from(("trace", "t1", "t2")).map("header:".__add__),
        st.sampled_from(ENTRYPOINTS + ("send", "_", "card")),
    )
    return st.tuples(st.sampled_from(("", "", "!")), words).map("".join)


FILTER_LINES = st.lists(_word(), max_size=4).map(" ".join) | st.text(max_size=20).filter(
    lambda text: "\x00" not in text
)


@settings(
    max_examples=examples(2000),  # all of them under --hypothesis-profile=full (CI)
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=FILTER_LINES)
def test_bulk_write_scope_is_exactly_the_list(
    session: tuple[asyncio.AbstractEventLoop, Any], line: str
) -> None:
    loop, connection = session
    try:
        job_filter = parse_filter(line)
    except ConsoleError as exc:
        event("does not parse")
        # Parsing failed: there is no filter object, so no bulk write can be built from it.
        assert str(exc) and "\n" not in str(exc)
        return
    table_settings = Installation().settings
    table = table_settings.qualified.queue_table
    scope = job_filter.scope(table)
    cancel = CancelAction(table=table, predicate=scope, settings=table_settings)
    requeue = RequeueAction(table=table, predicate=scope, settings=table_settings)

    async def same_moment() -> tuple[dict[int, str], set[int], set[int]] | None:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            sql, args = list_query(table, job_filter, limit=1_000_000)
            try:
                async with connection.transaction():  # a savepoint: a failed read ends here
                    listed = await connection.fetch(sql, *args)
            except asyncpg.PostgresError:
                # The list could not be read (the screen turns bulk writes off): neither may
                # any write's scope be readable, the same predicate is in both.
                for action in (cancel, requeue):
                    action_sql, action_args = action.scope_query(limit=1_000_000)
                    with pytest.raises(asyncpg.PostgresError):
                        async with connection.transaction():
                            await connection.fetch(action_sql, *action_args)
                return None
            cancel_sql, cancel_args = cancel.scope_query(limit=1_000_000)
            requeue_sql, requeue_args = requeue.scope_query(limit=1_000_000)
            cancelled = await connection.fetch(cancel_sql, *cancel_args)
            requeued = await connection.fetch(requeue_sql, *requeue_args)
        return (
            {int(r["id"]): str(r["status"]) for r in listed},
            {int(r["id"]) for r in cancelled},
            {int(r["id"]) for r in requeued},
        )

    outcome = loop.run_until_complete(same_moment())
    if outcome is None:
        event("list read fails")
        return
    event("parses and reads" + (", some rows" if outcome[0] else ", no rows"))
    listed, cancelled, requeued = outcome
    assert cancelled == {i for i, s in listed.items() if s in ("queued", "picked")}, line
    assert requeued == {i for i, s in listed.items() if s == "failed"}, line
