"""Enqueue form parsing (property-based) and batched enqueue through every driver (real PG)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgq_console.core.backend import PsycopgBackend, SyncPsycopgBackend
from pgq_console.core.enqueue import (
    FIELDS,
    CancelToken,
    EnqueueProgress,
    Enqueuer,
    EnqueueRequest,
    FormErrors,
    PayloadKind,
    known_entrypoints,
    parse_delay,
    parse_enqueue_form,
)
from pgq_console.core.target import DriverKind, Installation
from tests.helpers import backend_for

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def form(**values: str) -> dict[str, str]:
    base = {
        "entrypoint": "send_email",
        "payload_kind": "json",
        "payload": "",
        "priority": "0",
        "execute_after": "",
        "dedupe_key": "",
        "headers": "",
        "copies": "1",
    }
    base.update(values)
    return base


def errors_of(**values: str) -> dict[str, str]:
    with pytest.raises(FormErrors) as caught:
        parse_enqueue_form(form(**values), NOW)
    return dict(caught.value.by_field)


# -- parsing ----------------------------------------------------------------------------------


@given(st.fixed_dictionaries({name: st.text(max_size=40) for name in FIELDS}))
@settings(max_examples=400, deadline=None)
def test_no_input_crashes_the_parser(raw: dict[str, str]) -> None:
    try:
        request = parse_enqueue_form(raw, NOW)
    except FormErrors as exc:
        assert exc.by_field and all(isinstance(m, str) and m for m in exc.by_field.values())
        assert set(exc.by_field) <= set(FIELDS)
    else:
        assert isinstance(request, EnqueueRequest)
        assert 1 <= request.copies <= 1_000_000
        assert request.execute_after >= timedelta(0)
        assert request.dedupe_key is None or request.copies == 1


@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=8,
    )
)
@settings(max_examples=100, deadline=None)
def test_any_json_payload_is_kept_byte_for_byte(payload: object) -> None:
    text = json.dumps(payload)
    request = parse_enqueue_form(form(payload=text), NOW)
    assert request.payload == text.encode()


@pytest.mark.parametrize(
    ("values", "field", "needle"),
    [
        ({"payload": '{"a": 1'}, "payload", "invalid JSON"),
        ({"headers": "[1, 2]"}, "headers", "must be a JSON object"),
        ({"headers": "{oops"}, "headers", "invalid JSON"),
        ({"copies": "-3"}, "copies", "at least 1"),
        ({"copies": "0"}, "copies", "at least 1"),
        ({"copies": "1000001"}, "copies", "at most 1,000,000"),
        ({"copies": "many"}, "copies", "whole number"),
        ({"execute_after": "soonish"}, "execute_after", "cannot read 'soonish' as a delay"),
        ({"execute_after": "2020-01-01T00:00"}, "execute_after", "in the past"),
        ({"priority": "high"}, "priority", "whole number"),
        ({"priority": str(2**31)}, "priority", "between"),
        ({"entrypoint": "  "}, "entrypoint", "required"),
        ({"payload_kind": "hex", "payload": "abc"}, "payload", "odd number"),
        ({"payload_kind": "hex", "payload": "zz"}, "payload", "not 0-9"),
        ({"payload_kind": "file", "payload": "/no/such/file"}, "payload", "cannot read"),
        ({"dedupe_key": "k1", "copies": "5"}, "copies", "dedupe key allows one"),
    ],
)
def test_each_problem_is_named_next_to_its_field(
    values: dict[str, str], field: str, needle: str
) -> None:
    errors = errors_of(**values)
    assert field in errors, errors
    assert needle in errors[field]


def test_several_problems_are_reported_at_once() -> None:
    errors = errors_of(payload="{", headers="3", copies="-1", execute_after="x")
    assert set(errors) == {"payload", "headers", "copies", "execute_after"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", timedelta(0)),
        ("now", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("in 90", timedelta(seconds=90)),
        ("+250ms", timedelta(milliseconds=250)),
        ("13:00", timedelta(hours=1)),
        ("11:00", timedelta(hours=23)),  # the next 11:00 is tomorrow's
        ("2026-11-24T12:30", timedelta(minutes=30)),
        ("2026-11-24T13:30:00+01:00", timedelta(minutes=30)),
    ],
)
def test_delays(text: str, expected: timedelta) -> None:
    assert parse_delay(text, NOW) == expected


def test_payload_kinds(tmp_path: Path) -> None:
    blob = tmp_path / "payload.bin"
    blob.write_bytes(b"\x00\xffbinary")
    cases = {
        ("text", "héllo"): "héllo".encode(),
        ("hex", "0xDE AD be ef"): b"\xde\xad\xbe\xef",
        ("file", str(blob)): b"\x00\xffbinary",
        ("json", ""): None,
        ("text", ""): None,
    }
    for (kind, payload), expected in cases.items():
        request = parse_enqueue_form(form(payload_kind=kind, payload=payload), NOW)
        assert request.payload == expected
        assert request.payload_kind is PayloadKind(kind)


def test_a_valid_form() -> None:
    request = parse_enqueue_form(
        form(
            priority="-5",
            execute_after="5m",
            dedupe_key="order-1",
            headers='{"trace": "abc", "n": 1}',
            copies="1",
            payload='{"user": 42}',
        ),
        NOW,
    )
    assert request.priority == -5
    assert request.execute_after == timedelta(minutes=5)
    assert request.dedupe_key == "order-1"
    assert request.headers == {"trace": "abc", "n": 1}
    assert parse_enqueue_form(form(copies="100,000"), NOW).copies == 100_000


# -- enqueue against real PostgreSQL -------------------------------------------------------------


async def rows(dsn: str, entrypoint: str) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        found = await connection.fetch(
            "SELECT id, priority, payload, dedupe_key, headers, status, "
            "execute_after - created AS delay FROM pgqueuer WHERE entrypoint = $1 ORDER BY id",
            entrypoint,
        )
        return [dict(row) for row in found]
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", list(DriverKind))
async def test_enqueue_through_each_driver(database_dsn: str, kind: DriverKind) -> None:
    backend = await backend_for(database_dsn, kind)
    entrypoint = f"through_{kind.value.replace('-', '_')}"
    try:
        request = parse_enqueue_form(
            form(
                entrypoint=entrypoint,
                payload='{"n": 1}',
                priority="7",
                execute_after="1h",
                headers='{"trace": "t-1"}',
                copies="25",
            ),
            datetime.now(UTC),
        )
        progress: list[EnqueueProgress] = []
        result = await Enqueuer(backend, batch_size=10).enqueue(
            request, on_progress=progress.append
        )
    finally:
        await backend.close()
    assert result.complete, result
    done = [p.done for p in progress]
    assert done == sorted(done) and done[-1] == 25 and len(done) == 3  # one report per batch
    found = await rows(database_dsn, entrypoint)
    assert [row["id"] for row in found] == list(result.ids)
    assert {row["priority"] for row in found} == {7}
    assert {bytes(row["payload"]) for row in found} == {b'{"n": 1}'}
    assert {json.loads(row["headers"])["trace"] for row in found} == {"t-1"}
    assert all(timedelta(minutes=59) < row["delay"] < timedelta(minutes=61) for row in found)


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.PSYCOPG_SYNC])
async def test_dedupe_clash_names_the_key_and_writes_nothing(
    database_dsn: str, kind: DriverKind
) -> None:
    backend = await backend_for(database_dsn, kind)
    key = f"order-{kind.value}"
    entrypoint = f"dedupe_{kind.value.replace('-', '_')}"
    try:
        request = parse_enqueue_form(form(entrypoint=entrypoint, dedupe_key=key), NOW)
        first = await Enqueuer(backend).enqueue(request)
        second = await Enqueuer(backend).enqueue(request)
    finally:
        await backend.close()
    assert first.complete
    assert not second.complete and second.ids == ()
    assert second.error is not None and key in second.error
    assert "nothing was enqueued" in second.error
    assert len(await rows(database_dsn, entrypoint)) == 1


async def test_cancel_stops_between_whole_batches(database_dsn: str) -> None:
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG)
    token = CancelToken()

    def cancel_after_two(progress: EnqueueProgress) -> None:
        if progress.done >= 200:
            token.cancel()

    try:
        request = parse_enqueue_form(form(entrypoint="cancelled_bulk", copies="1000"), NOW)
        result = await Enqueuer(backend, batch_size=100).enqueue(
            request, on_progress=cancel_after_two, cancel=token
        )
    finally:
        await backend.close()
    assert result.cancelled and len(result.ids) == 200
    assert "Cancelled: enqueued 200 of 1,000" in result.summary()
    assert len(await rows(database_dsn, "cancelled_bulk")) == 200


async def test_refused_in_read_only_mode(database_dsn: str) -> None:
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        request = parse_enqueue_form(form(entrypoint="read_only_ep"), NOW)
        result = await Enqueuer(backend).enqueue(request, read_only=True)
    finally:
        await backend.close()
    assert result.ids == () and result.error is not None and "read-only" in result.error
    assert await rows(database_dsn, "read_only_ep") == []


async def test_refused_without_autocommit(database_dsn: str) -> None:
    connection = await psycopg.AsyncConnection.connect(database_dsn)  # autocommit off
    backend = PsycopgBackend(connection, Installation(), "test", owned=True)
    try:
        request = parse_enqueue_form(form(entrypoint="no_autocommit"), NOW)
        result = await Enqueuer(backend).enqueue(request)
    finally:
        await backend.close()
    assert result.error is not None and "autocommit" in result.error


async def test_sync_driver_never_blocks_the_event_loop(database_dsn: str) -> None:
    backend = await backend_for(database_dsn, DriverKind.PSYCOPG_SYNC)
    assert isinstance(backend, SyncPsycopgBackend)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        request = parse_enqueue_form(form(entrypoint="sync_bulk", copies="20000"), NOW)
        result = await Enqueuer(backend, batch_size=2000).enqueue(request)
    finally:
        task.cancel()
        await backend.close()
    assert result.complete
    assert ticks > 3  # the loop kept running while the thread wrote


async def test_known_entrypoints_come_from_queue_log_and_schedules(database_dsn: str) -> None:
    connection = await asyncpg.connect(database_dsn)
    try:
        await connection.execute(
            "INSERT INTO pgqueuer (priority, status, entrypoint) VALUES (0, 'queued', 'from_q');"
            "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint)"
            " VALUES (1, 'successful', 0, 'from_log');"
            "INSERT INTO pgqueuer_schedules (expression, entrypoint)"
            " VALUES ('* * * * *', 'from_schedule')"
        )
    finally:
        await connection.close()
    backend = await backend_for(database_dsn, DriverKind.ASYNCPG_POOL)
    try:
        names = await known_entrypoints(backend)
    finally:
        await backend.close()
    assert {"from_q", "from_log", "from_schedule"} <= set(names)
