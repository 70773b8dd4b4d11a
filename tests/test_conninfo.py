"""`core.conninfo` parses plain connection strings exactly as libpq does (through psycopg), and
says "ask psycopg" (None) for everything else: the console's every launch parses its DSN
without importing psycopg, and no DSN parses differently for it."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from pgq_console.core import conninfo
from pgq_console.core.target import dsn_parts

PLAIN = [
    "",
    "   ",
    "host=localhost",
    "host=localhost port=5432 dbname=app user=u password=p",
    "host = a  port= 1",
    "password='a b\\'c'",
    "password=a\\ b",
    "host=''",
    "host=a\tport=2\n",
    "dbname=é user=ü",
    "host=a host=b",
    "application_name=x options='-c statement_timeout=5s' sslmode=disable",
    "postgresql://",
    "postgres://",
    "postgresql://u:p@h:5/db?sslmode=require&application_name=x",
    "postgresql://u@h",
    "postgresql://:p@h",
    "postgresql://u:@h",
    "postgresql://u:p:q@h/db",
    "postgresql://u:p@q@h/db",
    "postgresql://u%40:p%2F@h/d%20b",
    "postgresql://h/db?host=/tmp",
    "postgresql://postgres:@/postgres?host=/tmp/pgq-demo-x/pgdata",
    "postgresql://h:/db",
    "postgresql://h:abc/db",
    "postgresql://h?",
    "postgresql://h?sslmode=require&",
    "postgresql://h/db/x?application_name=y",
    "postgresql://h/%c3%a9",
    "postgresql://h/db#frag",
    "postgresql://u?x@h",
    "postgresql://h?user=a@b",
    "postgresql://h/db?options=-c%20a%3Db",
    "postgresql://h/%20db%20",
    "postgresql://u@h?user=v",
]
# libpq's rewrites, errors, version-dependent rules: psycopg answers.
ASK_PSYCOPG = [
    "foo=bar",
    "=x",
    "host",
    "password='unterminated",
    "requiressl=1",
    "host=a\x00",
    "postgresql://h1,h2/db",
    "postgresql://[::1]:5/db",
    "postgresql://h?a",
    "postgresql://h?&sslmode=require",
    "postgresql://h?sslmode==x",
    "postgresql://h?ssl=true",
    "postgresql://h?requiressl=1",
    "postgresql://h/%zz",
    "postgresql://h/%00",
    "postgresql://h/%",
    "postgresql://h/%c3",
    "postgresql:// h",  # libpq 17+ trims or refuses spaces in a URI
    "postgresql://h/db ",
    "postgresql://h?load_balance_hosts=random",  # a newer libpq's keyword
]


def psycopg_says(dsn: str) -> list[tuple[str, str]] | None:
    try:
        return [(key, str(value)) for key, value in conninfo_to_dict(dsn).items()]
    except Exception:
        return None


@pytest.mark.parametrize("dsn", PLAIN)
def test_plain_strings_parse_as_libpq_parses_them(dsn: str) -> None:
    parsed = conninfo.parse(dsn)
    assert parsed is not None
    assert list(parsed.items()) == psycopg_says(dsn)  # same keys, values and order


@pytest.mark.parametrize("dsn", ASK_PSYCOPG)
def test_everything_else_is_left_to_psycopg(dsn: str) -> None:
    assert conninfo.parse(dsn) is None


PIECES = st.sampled_from(
    [
        *"postgresql://@:/?&=%[],' \\\t\"hxu0123ab#\x85\xa0\r\n\x0b;+-_.é",
        "host",
        "user",
        "dbname",
        "password",
        "port",
        "sslmode",
        "options",
        "ssl",
        "=",
        "%41",
        "%00",
        "%c3%a9",
        "postgresql://",
        "postgres://",
    ]
)


@given(st.lists(PIECES, max_size=24).map("".join))
@example("postgresql://u:p@h:5432/db?application_name=a%20b")
@example("user=u password='p w' host=h")
def test_any_string_it_parses_psycopg_parses_the_same(dsn: str) -> None:
    parsed = conninfo.parse(dsn)
    if parsed is not None:
        assert list(parsed.items()) == psycopg_says(dsn)


def test_dsn_parts_and_its_errors_are_unchanged() -> None:
    assert dsn_parts("postgresql://u:pw@db.example:6432/app?sslmode=require") == {
        "user": "u",
        "password": "pw",
        "dbname": "app",
        "host": "db.example",
        "port": "6432",
        "sslmode": "require",
    }
    # A string the fast path leaves alone still gets libpq's own words, password scrubbed.
    with pytest.raises(Exception, match="invalid connection string") as refused:
        dsn_parts("host=h password=s3cret bogus_option=1")
    assert "s3cret" not in str(refused.value)
