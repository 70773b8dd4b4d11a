"""Fixed data for the jobs, failures and detail tests and snapshots (ids stable by RESTART)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

FIXED_NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "ops@db.example.com:5432/app"

EVIL_ENTRYPOINT = "[bold]evil[/]"
EVIL_TEXT = "[@click=app.quit]x[/] \x1b[31mred\x1b[0m \x1b]52;c;SGVsbG8=\x07 end"
EVIL_BYTES = b"\x00\xff\xfe[bold]\x1b[2J"
EVIL_TRACEBACK = "Traceback:\n  [bold]File[/] \x1b[31m\x1b]0;title\x07\n[@click=app.quit]q[/]"


async def seed(dsn: str) -> None:
    """30 queued send_email, 3 held charge_card (logged ValueError), 1 picked, 2 evil jobs."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log RESTART IDENTITY")
        await connection.execute(
            """INSERT INTO pgqueuer (priority, status, entrypoint, payload, headers, created,
                updated, heartbeat, execute_after)
            SELECT g % 3, 'queued', 'send_email',
                convert_to(json_build_object('to', 'user' || g || '@example.com')::text, 'UTF8'),
                '{"trace": "abc"}', $1::timestamptz - make_interval(mins => 31 - g),
                $1::timestamptz - make_interval(mins => 31 - g),
                $1::timestamptz - make_interval(mins => 31 - g),
                $1::timestamptz - make_interval(mins => 31 - g)
            FROM generate_series(1, 30) g""",
            FIXED_NOW,
        )
        await connection.execute(
            """INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated,
                heartbeat, execute_after, attempts)
            SELECT 0, 'failed', 'charge_card', convert_to('{"card": ' || g || '}', 'UTF8'),
                $1::timestamptz - interval '5 minutes', $1::timestamptz - interval '4 minutes',
                $1::timestamptz - interval '4 minutes', $1::timestamptz - interval '5 minutes', 1
            FROM generate_series(1, 3) g""",
            FIXED_NOW,
        )
        await connection.execute(
            """INSERT INTO pgqueuer (priority, status, entrypoint, payload, created, updated,
                heartbeat, execute_after, queue_manager_id)
            VALUES (9, 'picked', 'resize_image', 'img-1', $1, $1, $1, $1,
                '00000000-0000-4000-8000-000000000001')""",
            FIXED_NOW,
        )
        await connection.execute(
            """INSERT INTO pgqueuer (priority, status, entrypoint, payload, headers, created,
                updated, heartbeat, execute_after, dedupe_key)
            VALUES (1, 'failed', $2, convert_to($3, 'UTF8'), $4::jsonb, $1, $1, $1, $1, $5),
                   (1, 'queued', 'binary_job', $6, NULL, $1, $1, $1, $1, NULL)""",
            FIXED_NOW,
            EVIL_ENTRYPOINT,
            EVIL_TEXT.replace("\x00", ""),
            json.dumps({"x-note": "[bold]hdr[/] \x1b[31m"}),
            "[red]key[/]",
            EVIL_BYTES,
        )
        # Held jobs are 31..33 and 35; their 'failed' log rows carry tracebacks.
        for job_id, entrypoint, kind, message, trace in [
            (31, "charge_card", "ValueError", "card declined", "Traceback:\nValueError: card"),
            (32, "charge_card", "ValueError", "card declined", "Traceback:\nValueError: card"),
            (33, "charge_card", "ValueError", "card declined", "Traceback:\nValueError: card"),
            (35, EVIL_ENTRYPOINT, "[bold]Evil[/]Error", EVIL_TEXT, EVIL_TRACEBACK),
        ]:
            record = {
                "job_id": job_id,
                "timestamp": FIXED_NOW.isoformat(),
                "exception_type": kind,
                "exception_message": message,
                "traceback": trace,
                "additional_context": None,
            }
            await connection.execute(
                """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created,
                    traceback)
                VALUES ($1, 'queued', 0, $2, $3::timestamptz - interval '5 minutes', NULL),
                       ($1, 'picked', 0, $2, $3::timestamptz - interval '4 minutes', NULL),
                       ($1, 'failed', 0, $2, $3::timestamptz - interval '4 minutes', $4::jsonb)""",
                job_id,
                entrypoint,
                FIXED_NOW,
                json.dumps(record),
            )
        await connection.execute(
            """INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created, traceback)
            SELECT 1000 + g, 'exception', 0, 'send_email',
                $1::timestamptz - make_interval(mins => g), $2::jsonb
            FROM generate_series(1, 5) g""",
            FIXED_NOW,
            json.dumps(
                {
                    "job_id": 1000,
                    "timestamp": FIXED_NOW.isoformat(),
                    "exception_type": "TimeoutError",
                    "exception_message": "smtp timed out",
                    "traceback": "Traceback:\nTimeoutError: smtp timed out",
                    "additional_context": None,
                }
            ),
        )
    finally:
        await connection.close()
