"""Fuzz: generated hostile input against every parser an operator or a database
feeds. A crash is any exception that is not a one-line user message (ConsoleError, the form's
FormErrors, a refused theme's one-line problem).

Pure functions only (no database), so the whole suite stays fast: about 11,000 inputs per CI run
(`--hypothesis-profile=full`; the examples per test are summed in EXAMPLES_PER_RUN below and
checked by the last test), a fifth of them in the default run (tests/conftest.py: `examples`).
"""

from __future__ import annotations

import json
import string
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgq_console.core.audit import AUDIT_EVENT_TYPE, parse_announcement
from pgq_console.core.enqueue import FIELDS, FormErrors, PayloadKind, parse_enqueue_form
from pgq_console.core.errors import ConsoleError
from pgq_console.core.jobs import parse_filter, render_payload
from pgq_console.core.text import has_unsafe, printable
from pgq_console.screens.job_detail import pretty_json, printable_block
from tests.conftest import examples

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EXAMPLES = {
    "filter": 2500,
    "form": 2500,
    "headers": 1000,
    "payload": 1500,
    "notify": 1000,
    "printable": 1000,
    "config": 800,
    "theme": 700,
}
EXAMPLES_PER_RUN = sum(EXAMPLES.values())


def fuzz(name: str) -> settings:
    return settings(
        max_examples=examples(EXAMPLES[name]),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=False,
    )


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "\r" not in message


# Text with the characters that break things: controls, invisible ones, surrogates, quotes.
NASTY = st.sampled_from(
    list("\x00\x1b\x07\n\r\t\x7f\x9b\u00ad\u034f\u200b\u200d\u202e\u2028\u2060\ufeff\ud800")
    + ["\U000e0041", '"', "'", "\\", ",", ":", ">", "<", "=", "|", "%", "_", "-", " "]
)
HOSTILE_TEXT = st.text(
    alphabet=st.one_of(st.characters(), NASTY, st.sampled_from(string.printable)), max_size=80
)


# -- the jobs filter line --------------------------------------------------------------------

QUALIFIERS = ["ep", "status", "id", "prio", "age", "payload", "header", "x", ""]
FILTER_WORD = st.one_of(
    HOSTILE_TEXT,
    st.builds(
        lambda q, op, value: f"{q}:{op}{value}",
        st.sampled_from(QUALIFIERS),
        st.sampled_from(["", ">", ">=", "<", "<=", "=", "!"]),
        st.one_of(
            HOSTILE_TEXT,
            st.integers().map(str),
            st.integers(min_value=0).map(lambda n: f"{n}{'smhd'[n % 4]}"),
            st.lists(st.integers().map(str), max_size=4).map(",".join),
            st.text(alphabet="0123456789", min_size=15, max_size=6000),
        ),
    ),
)


@fuzz("filter")
@given(st.lists(FILTER_WORD, max_size=6).map(" ".join))
def test_the_filter_line(text: str) -> None:
    try:
        parsed = parse_filter(text)
    except ConsoleError as exc:
        assert one_line(str(exc)), repr(str(exc))
        return
    for term in parsed.terms:
        for arg in term.args:
            if isinstance(arg, int):
                assert -(2**63) <= arg < 2**63
            if isinstance(arg, float):
                assert 0 <= arg <= 100 * 366 * 86400


# -- the enqueue form, every field ------------------------------------------------------------

FIELD_VALUE = st.one_of(
    HOSTILE_TEXT,
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " ", "0", "-1", "1e308", "nan", "18:00", "2026-11-24T18:00", "99:99"]),
)
SAFE_KINDS = [kind.value for kind in PayloadKind if kind is not PayloadKind.FILE]


@fuzz("form")
@given(
    st.fixed_dictionaries(
        {},
        optional={name: FIELD_VALUE for name in FIELDS if name != "payload_kind"},
    ),
    st.one_of(st.sampled_from(SAFE_KINDS), HOSTILE_TEXT.filter(lambda t: "file" not in t)),
)
def test_every_form_field(raw: dict[str, str], kind: str) -> None:
    raw = {**raw, "payload_kind": kind}
    try:
        request = parse_enqueue_form(raw, NOW)
    except FormErrors as exc:
        assert exc.by_field and all(one_line(m) for m in exc.by_field.values()), exc.by_field
        return
    # What passed the form must be storable: UTF-8, no NUL in text, a visible entrypoint.
    request.entrypoint.encode("utf-8")
    assert not has_unsafe(request.entrypoint)
    if request.dedupe_key is not None:
        request.dedupe_key.encode("utf-8")
    if request.headers is not None:
        json.dumps(request.headers, ensure_ascii=False).encode("utf-8")


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(alphabet=st.characters())
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@fuzz("headers")
@given(
    st.one_of(
        JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False)),
        JSON_VALUES.map(json.dumps),
        st.integers(min_value=1, max_value=5000).map(lambda n: '{"a": ' + "[" * n + "]" * n + "}"),
        HOSTILE_TEXT,
    )
)
def test_headers(text: str) -> None:
    try:
        request = parse_enqueue_form({"entrypoint": "a", "headers": text}, NOW)
    except FormErrors as exc:
        assert set(exc.by_field) == {"headers"} and one_line(exc.by_field["headers"])
        return
    if request.headers is not None:
        json.dumps(request.headers, ensure_ascii=False).encode("utf-8")


# -- payload bytes as the job detail shows them -------------------------------------------------


@fuzz("payload")
@given(
    st.one_of(
        st.binary(max_size=600),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
        HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    st.booleans(),
)
def test_payload_bytes(payload: bytes, truncated: bool) -> None:
    rendered = render_payload(payload, truncated=truncated)
    shown = printable_block(rendered.text)
    assert not has_unsafe(shown.replace("\n", ""))
    shown.encode("utf-8")  # nothing unencodable reaches the terminal
    pretty_json(payload.decode("utf-8", "replace"))


# -- NOTIFY payloads (the parsing function; the listener is hardened on its own) -------------


@fuzz("notify")
@given(
    st.one_of(
        HOSTILE_TEXT,
        st.binary(max_size=200),
        st.fixed_dictionaries(
            {"type": st.just(AUDIT_EVENT_TYPE)},
            optional={
                key: JSON_VALUES
                for key in ("action", "count", "previewed", "user", "host", "reason", "time")
            },
        ).map(json.dumps),
        st.builds(
            lambda count: (
                json.dumps({"type": AUDIT_EVENT_TYPE, "action": "x", "previewed": 1})[:-1]
                + f', "count": {count}}}'
            ),
            st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1" * 5000]),
        ),
        st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n),
    )
)
def test_notify_payloads(payload: str | bytes) -> None:
    announcement = parse_announcement(payload)
    if announcement is not None:
        announcement.describe()


# -- what the TUI puts on the terminal ----------------------------------------------------------


@fuzz("printable")
@given(HOSTILE_TEXT, st.one_of(st.none(), st.integers(min_value=0, max_value=100)))
def test_printable_output_is_safe(text: str, limit: int | None) -> None:
    shown = printable(text, limit=limit)
    assert not has_unsafe(shown)
    shown.encode("utf-8")
    if limit is not None:
        assert len(shown) <= max(limit, 1)


# -- config and theme TOML -----------------------------------------------------------------------

TOML_SCALAR = st.one_of(
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "0", "-1", "0.0", "[]", "{}", '""']),
    HOSTILE_TEXT.map(lambda t: json.dumps(t)),  # a TOML basic string (or a decode error)
)
CONFIG_KEYS = ["profile", "theme", "refresh", "driver", "read_only", "nonsense"]
PROFILE_KEYS = [
    "dsn",
    "host",
    "port",
    "user",
    "dbname",
    "sslmode",
    "driver",
    "schema",
    "prefix",
    "channel",
    "read_only",
    "label",
    "color",
    "password",
    "password_env",
    "password_command",
    "bogus",
]


Items = list[tuple[str, str]]


def config_text(top: Items, profiles: list[tuple[str, Items]]) -> str:
    lines = [f"{key} = {value}" for key, value in top]
    for name, items in profiles:
        lines.append(f"[profiles.{json.dumps(name)}]")
        lines += [f"{key} = {value}" for key, value in items]
    return "\n".join(lines) + "\n"


@fuzz("config")
@given(
    st.one_of(
        st.builds(
            config_text,
            st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), TOML_SCALAR), max_size=4),
            st.lists(
                st.tuples(
                    st.one_of(st.sampled_from(["prod", "dev"]), HOSTILE_TEXT),
                    st.lists(st.tuples(st.sampled_from(PROFILE_KEYS), TOML_SCALAR), max_size=5),
                ),
                max_size=2,
            ),
        ),
        HOSTILE_TEXT,
    ),
    st.sampled_from([None, "prod", "dev", "x"]),
)
def test_config_files(text: str, profile: str | None) -> None:
    from pgq_console.config import CliOptions, load_settings

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "config.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            settings_ = load_settings(CliOptions(config=str(path), profile=profile), {})
        except ConsoleError as exc:
            assert one_line(str(exc)), repr(str(exc))
            return
        assert 0 < settings_.refresh <= 86_400


COLOUR = st.one_of(
    st.sampled_from(["#123456", "#fff", "red", "rgb(1,2,3)", "hsl(0,50%,50%)", "ansi_red"]),
    HOSTILE_TEXT,
)
VARIABLE = st.one_of(
    st.sampled_from(
        ["status-held", "muted", "footer-key-foreground", "block-cursor-text-style", "Bad Name"]
    ),
    HOSTILE_TEXT,
)


def theme_text(name: str, primary: str, variables: list[tuple[str, str]]) -> str:
    lines = [f"name = {json.dumps(name)}", f"primary = {json.dumps(primary)}", "[variables]"]
    lines += [f"{json.dumps(key)} = {json.dumps(value)}" for key, value in variables]
    return "\n".join(lines) + "\n"


APP_CSS = (Path(__file__).parents[1] / "pgq_console" / "app.tcss").read_text()


@fuzz("theme")
@given(
    st.one_of(
        st.builds(
            theme_text,
            st.one_of(st.just("fuzzed"), HOSTILE_TEXT),
            COLOUR,
            st.lists(st.tuples(VARIABLE, st.one_of(COLOUR, st.just("bold reverse"))), max_size=3),
        ),
        HOSTILE_TEXT,
    )
)
def test_theme_files(text: str) -> None:
    from textual.css.stylesheet import Stylesheet

    from pgq_console.themes import VARIABLE_DEFAULTS, load_themes

    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "fuzzed.toml").write_text(text, encoding="utf-8", errors="replace")
        themes, problems = load_themes([Path(directory)])
    assert all(one_line(problem) for problem in problems)
    for theme in themes:
        # An accepted theme must not break the stylesheet: that was the crash at start.
        variables = {**VARIABLE_DEFAULTS, **theme.to_color_system().generate(), **theme.variables}
        sheet = Stylesheet(variables=variables)
        sheet.add_source(APP_CSS, read_from=("app.tcss", ""))
        sheet.parse()


def test_the_suite_generates_at_least_ten_thousand_inputs() -> None:
    assert EXAMPLES_PER_RUN >= 10_000
