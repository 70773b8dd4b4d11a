"""Output that leaves the process, invisible characters, hostile form input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from pgq_console.core.enqueue import FormErrors, PayloadKind, parse_enqueue_form, parse_payload
from pgq_console.core.models import EntrypointRow
from pgq_console.core.nagios import parse_threshold
from pgq_console.core.text import clipboard_text, has_unsafe, printable
from pgq_console.scripting import Reading, evaluate
from tests.conftest import drop_database, make_database

HOSTILE = "evil\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\x1b[2J\n| CRIT=1 'q'=x\u2060"
# Anything a terminal would act on, or that reads as nothing.
RAW_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u034f\u2028\u2029\u2060\ufeff]")


def test_invisible_characters_are_escaped_visibly() -> None:
    lookalikes = ["send_email", "send_email\u2060", "send\u00ad_email", "send_email\U000e0041"]
    shown = [printable(name) for name in lookalikes]
    assert len(set(shown)) == len(lookalikes)
    assert shown[1] == "send_email\\u2060" and shown[2] == "send\\xad_email"
    assert shown[3] == "send_email\\U000e0041"
    for character in ("\u034f", "\u2028", "\u2029", "\u200d", "\u202e", "\ud800"):
        assert printable(character).startswith("\\"), repr(character)


def test_every_unicode_format_character_is_unsafe() -> None:
    missing = [
        f"U+{code:04X}"
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Cf" and not has_unsafe(chr(code))
    ]
    assert missing == []


def test_clipboard_text_keeps_lines_and_tabs_only() -> None:
    assert clipboard_text("a\tb\nc\x1b[2J\x07\u2060\u202e") == "a\tb\nc[2J"


# -- the enqueue form ------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("name", ["send_email\u2060", "send\u00ad_email", "a\U000e0041", "a\u034f"])
def test_an_entrypoint_with_an_invisible_character_is_refused(name: str) -> None:
    with pytest.raises(FormErrors) as caught:
        parse_enqueue_form({"entrypoint": name}, NOW)
    assert "invisible" in caught.value.by_field["entrypoint"]


@pytest.mark.parametrize("headers", ['{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": "\ud800"}'])
def test_headers_with_a_lone_surrogate_are_refused_in_the_form(headers: str) -> None:
    with pytest.raises(FormErrors) as caught:
        parse_enqueue_form({"entrypoint": "a", "headers": headers}, NOW)
    assert "surrogate" in caught.value.by_field["headers"]


def finishes(action: object, within: float = 30.0) -> list[object]:
    """Runs `action` in a thread: [result or exception], or [] when it is still blocked."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(action())  # type: ignore[operator]
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(within)
    return outcome


def test_a_fifo_payload_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    outcome = finishes(lambda: parse_payload(PayloadKind.FILE, str(fifo)))
    assert outcome, "opening the FIFO blocked"
    assert isinstance(outcome[0], ValueError) and "not a regular file" in str(outcome[0])


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_payload_is_refused_before_a_byte_is_read() -> None:
    outcome = finishes(lambda: parse_payload(PayloadKind.FILE, "/dev/zero"))
    assert outcome and isinstance(outcome[0], ValueError), outcome
    assert "not a regular file" in str(outcome[0])


def test_a_regular_file_payload_is_read(tmp_path: Path) -> None:
    path = tmp_path / "payload.bin"
    path.write_bytes(b"\x00\x01data")
    assert parse_payload(PayloadKind.FILE, str(path)) == b"\x00\x01data"
    with pytest.raises(ValueError, match="is a directory"):
        parse_payload(PayloadKind.FILE, str(tmp_path))


# -- check and snapshot ------------------------------------------------------------------------


def reading_of(*names: str) -> Reading:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = tuple(
        EntrypointRow(entrypoint=name, ready=1, oldest_ready_since=now - timedelta(hours=2))
        for name in names
    )
    return Reading("db", None, now, rows, 0, timedelta(minutes=5))


def test_check_is_one_line_with_quoted_perfdata_labels() -> None:
    reading = reading_of(HOSTILE, "it's")
    state, line = evaluate(reading, {"*": parse_threshold("60", float, what="max-age")}, None, None)
    assert state.name == "CRITICAL"
    assert "\n" not in line and not RAW_UNSAFE.search(line)
    summary, perfdata = line.split(" | ")  # exactly one separator: a name cannot add one
    assert "'age_it''s'=7200s;;60" in perfdata
    labels = re.findall(r"'((?:[^']|'')*)'=", perfdata)
    assert len(labels) == 2 and all("=" not in label for label in labels)
    assert "CRIT=1" not in perfdata


@pytest.fixture(scope="module")
def hostile_dsn(server_dsn: str) -> Iterator[str]:
    dsn = make_database(server_dsn, "security_output")

    async def seed() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO pgqueuer (priority, status, entrypoint, execute_after) "
                "VALUES (0, 'queued', $1, now() - interval '2 hours')",
                HOSTILE,
            )
        finally:
            await connection.close()

    asyncio.run(seed())
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)


def cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_", "PG"))}
    return subprocess.run(
        [sys.executable, "-m", "pgq_console", "--dsn", dsn, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_snapshot_and_check_write_no_terminal_controls(hostile_dsn: str) -> None:
    table = cli(hostile_dsn, "snapshot")
    assert table.returncode == 0, table.stderr
    assert "evil\\x1b]0;pwned" in table.stdout
    assert not RAW_UNSAFE.search(table.stdout)

    as_json = cli(hostile_dsn, "snapshot", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stdout.isascii() and not RAW_UNSAFE.search(as_json.stdout)
    names = [row["entrypoint"] for row in json.loads(as_json.stdout)["entrypoints"]]
    assert names == [HOSTILE]  # escaped on the wire, exact once parsed

    check = cli(hostile_dsn, "check", "--max-age", "*=1m,1h")
    assert check.returncode == 2, check
    assert check.stdout.count("\n") == 1 and not RAW_UNSAFE.search(check.stdout)
    assert check.stdout.count(" | ") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id:99999999999999999999", "id: 99999999999999999999 is out of range"),
        ("id:1,99999999999999999999", "id: 99999999999999999999 is out of range"),
        ("id:" + "9" * 5000, "id: 999999999999999999999999 is out of range"),
        ("prio:>3000000000", "prio: 3000000000 is out of range"),
        ("age:>99999999999d", "age: '>99999999999d' is more than 100 years"),
    ],
)
def test_filter_values_out_of_range_are_one_line_messages(text: str, expected: str) -> None:
    from pgq_console.core.errors import ConsoleError
    from pgq_console.core.jobs import parse_filter

    with pytest.raises(ConsoleError) as caught:
        parse_filter(text)
    assert str(caught.value).startswith(expected) and "\n" not in str(caught.value)


def test_refused_arguments_are_echoed_escaped() -> None:
    hostile = "--x\x1b]0;owned\x07\n| CRIT=1"
    check = cli("postgresql://u@127.0.0.1:1/x", "check", hostile)
    assert check.returncode == 3 and check.stdout.startswith("PGQ UNKNOWN - ")
    assert check.stdout.count("\n") == 1 and not RAW_UNSAFE.search(check.stdout)
    tui = cli("postgresql://u@127.0.0.1:1/x", hostile)
    assert tui.returncode == 2 and not RAW_UNSAFE.search(tui.stderr.rstrip("\n"))
