"""payload × copies is bounded: batches sized by bytes, a cap on the total
with a one-line message in the form, and a cancel that waits for one short batch at most."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import asyncpg
import pytest

from pgq_console.core.backend import Backend
from pgq_console.core.enqueue import (
    BATCH_BYTES,
    MAX_TOTAL_BYTES,
    CancelToken,
    Enqueuer,
    EnqueueRequest,
    FormErrors,
    parse_enqueue_form,
)
from pgq_console.core.target import DriverKind
from tests.helpers import backend_for

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MIB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def count(dsn: str, entrypoint: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", entrypoint
            )
        )
    finally:
        await connection.close()


def test_fifty_megabytes_times_thirty_is_refused_in_one_line(tmp_path: object) -> None:
    path = f"{tmp_path}/big.bin"
    with open(path, "wb") as handle:
        handle.truncate(50 * MIB)
    raw = {
        "entrypoint": "big",
        "payload_kind": "file",
        "payload": path,
        "copies": "30",
    }
    with pytest.raises(FormErrors) as refused:
        parse_enqueue_form(raw, NOW)
    message = refused.value.by_field["copies"]
    assert "payload × copies" in message and "limit" in message and "\n" not in message
    # Just under the cap is accepted.
    raw["copies"] = str(MAX_TOTAL_BYTES // (50 * MIB + 200))
    assert parse_enqueue_form(raw, NOW).copies == 20


@pytest.mark.parametrize("kind", [DriverKind.ASYNCPG_POOL, DriverKind.ASYNCPG, DriverKind.PSYCOPG])
async def test_big_payloads_go_in_batches_sized_by_bytes(
    fresh_database: str, kind: DriverKind
) -> None:
    """4 MiB × 48: a few jobs per INSERT (not one 192 MiB statement), RSS stays bounded, and a
    cancel stops after the batch in flight."""
    backend = await backend_for(fresh_database, kind)
    assert isinstance(backend, Backend)
    payload = os.urandom(4 * MIB)  # incompressible: what the client holds is what it sends
    request = EnqueueRequest(entrypoint="big_payload", payload=payload, copies=48)
    batches: list[int] = []
    peak = before = rss_bytes()

    def landed(ids: list[int]) -> None:
        nonlocal peak
        batches.append(len(ids))
        peak = max(peak, rss_bytes())

    try:
        result = await Enqueuer(backend).enqueue(request, on_written=landed)
        assert result.error is None and len(result.ids) == 48
        assert max(batches) <= BATCH_BYTES // (4 * MIB)
        assert peak - before < 120 * MIB, f"RSS grew {(peak - before) // MIB} MiB"
        assert await count(fresh_database, "big_payload") == 48

        # esc while it runs: at most the batches in flight still land.
        token = CancelToken()
        stopped: list[int] = []

        def cancel_on_first(ids: list[int]) -> None:
            stopped.append(len(ids))
            token.cancel()

        cancelled = await asyncio.wait_for(
            Enqueuer(backend).enqueue(
                EnqueueRequest(entrypoint="big_cancelled", payload=payload, copies=200),
                cancel=token,
                on_written=cancel_on_first,
            ),
            60,
        )
        assert cancelled.cancelled
        assert len(cancelled.ids) <= 2 * (BATCH_BYTES // (4 * MIB))
        assert await count(fresh_database, "big_cancelled") == len(cancelled.ids)
    finally:
        await backend.close()
