"""The minute a log or statistics row falls in, counted back from now (the overview's windows,
the Charts minutes), without PostgreSQL 14's date_bin: the minutes [now - k, now - k + 1),
in any session time zone, boundaries and a daylight saving change included."""

from __future__ import annotations

import asyncpg
import pytest

from pgq_console.core.stats import MINUTE_FROM_NOW

pytestmark = pytest.mark.asyncio

ZONES = ("UTC", "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu", "Europe/Berlin")


@pytest.mark.parametrize("zone", ZONES)
async def test_minute_from_now_in_every_time_zone(database_dsn: str, zone: str) -> None:
    connection = await asyncpg.connect(database_dsn, server_settings={"TimeZone": zone})
    try:
        # In one transaction: now() is the same for every row and both expressions.
        async with connection.transaction():
            differing = await connection.fetch(
                f"""
                WITH rows AS (
                    SELECT now() - g * interval '7.3 seconds' AS created
                    FROM generate_series(0, 600) g
                    UNION ALL  -- exactly on minute boundaries counted back from now
                    SELECT now() - g * interval '1 minute' FROM generate_series(0, 60) g
                    UNION ALL  -- and a microsecond either side of them
                    SELECT now() - g * interval '1 minute' + s * interval '1 microsecond'
                    FROM generate_series(1, 60) g, (VALUES (-1), (1)) AS v(s)
                    UNION ALL  -- across a daylight saving change (Berlin, 2026-03-29 01:00 UTC)
                    SELECT timestamptz '2026-03-29 00:30:00+00' + g * interval '13 seconds'
                    FROM generate_series(0, 400) g
                )
                SELECT created, bin FROM (
                    SELECT created, {MINUTE_FROM_NOW} AS bin FROM rows
                ) AS binned
                WHERE NOT (
                    bin <= created AND created < bin + interval '1 minute'
                    AND extract(epoch FROM now() - bin) % 60 = 0
                )
                -- away from a boundary, what date_bin gives (on a boundary, date_bin of
                -- PostgreSQL 16 puts it in the older minute)
                OR (created <> bin AND bin <> date_bin('1 minute', created, now()))
                """
            )
        assert differing == []
    finally:
        await connection.close()
