"""Failure fingerprints: which logged exceptions are "the same failure" (as Sentry groups them).

A fingerprint is the exception type, the message with its variable parts masked (numbers, UUIDs,
hex ids, quoted strings, e-mail addresses, URL query strings, timestamps), and the innermost
traceback frame that is not in a library (`file:function`). "card declined for job 6213" and
"card declined for job 6214" raised at the same place are one failure, seen twice.

The rules are written once, here, in the regular-expression dialect Python's `re` and
PostgreSQL's AREs share, so the database groups a day of log rows by exactly the fingerprint this
module computes (`sql_masked_message`, `sql_culprit_frame`) instead of shipping every row to the
console; tests check both give the same answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Characters that end a URL or a token in running text (literal whitespace: no class shorthands
# inside brackets, which the two dialects read differently).
_STOP = " \t\r\n\"'<>"
_WORD_BEFORE = "(?<![0-9A-Za-z_])"
_WORD_AFTER = "(?![0-9A-Za-z_])"

# (what, pattern, replacement), applied in order: wider shapes before the numbers inside them.
MASKS: tuple[tuple[str, str, str], ...] = (
    ("url query", f"(https?://[^{_STOP}?#]+)[?][^{_STOP}#]*", r"\1?<query>"),
    (
        "email",
        "[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9-]+([.][A-Za-z0-9-]+)*[.][A-Za-z]{2,}",
        "<email>",
    ),
    ("quoted string", "'[^'\n]*'|\"[^\"\n]*\"", "<str>"),
    (
        "timestamp",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]+)?)?"
        "(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?",
        "<ts>",
    ),
    (
        "uuid",
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "<uuid>",
    ),
    ("hex id", f"{_WORD_BEFORE}0[xX][0-9a-fA-F]+{_WORD_AFTER}", "<hex>"),
    (
        "hex id",
        f"{_WORD_BEFORE}(?=[0-9]*[a-fA-F])(?=[a-fA-F]*[0-9])[0-9a-fA-F]{{8,}}{_WORD_AFTER}",
        "<hex>",
    ),
    # A digit run not glued to a word before it: "job 6213", "id=7", "user_42" (not "ipv4").
    ("number", "(?<![A-Za-z])[0-9]+([.][0-9]+)?", "<n>"),
)

# One frame line of `traceback.format_exception`: `  File "/app/x.py", line 12, in charge`.
FRAME = 'File "([^"\n]*)", line [0-9]+, in ([^ \t\r\n]+)'
# Frames of installed packages, the standard library and the interpreter are not the culprit.
LIBRARY_PATH = (
    "(site-packages|dist-packages)[/\\\\]|[/\\\\]lib[/\\\\]python[0-9.]*[/\\\\]|^<|"
    "[/\\\\]pgqueuer[/\\\\]"
)

_COMPILED_MASKS = tuple((re.compile(pattern), replacement) for _, pattern, replacement in MASKS)
_FRAME_RE = re.compile(FRAME)
_LIBRARY_RE = re.compile(LIBRARY_PATH)


@dataclass(frozen=True, order=True)
class Fingerprint:
    exception_type: str
    message: str  # masked
    frame: str  # "file:function", or "" when the traceback has no frame

    @property
    def key(self) -> str:
        # A table row key: the three parts cannot contain the separator unnoticed (\x1f is a
        # control character: masked text never shows it, and it only has to be unique).
        return "\x1f".join((self.exception_type, self.message, self.frame))

    def title(self) -> str:
        return f"{self.exception_type}: {self.message}" if self.message else self.exception_type


def mask_message(message: str) -> str:
    """The message with the parts that vary between occurrences replaced by placeholders."""
    for pattern, replacement in _COMPILED_MASKS:
        message = pattern.sub(replacement, message)
    return message


def frames(traceback: str) -> list[tuple[str, str]]:
    """(file, function) of each frame line, outermost first."""
    return [(path, function.strip(" ")) for path, function in _FRAME_RE.findall(traceback)]


def is_library(path: str) -> bool:
    return _LIBRARY_RE.search(path) is not None


def culprit_frame(traceback: str) -> str:
    """`file:function` of the innermost frame outside libraries (else the innermost frame)."""
    found = frames(traceback)
    if not found:
        return ""
    own = [frame for frame in found if not is_library(frame[0])]
    path, function = (own or found)[-1]
    return f"{path}:{function}"


def fingerprint(exception_type: str, message: str, traceback: str) -> Fingerprint:
    return Fingerprint(exception_type, mask_message(message), culprit_frame(traceback))


# -- the same rules in SQL ---------------------------------------------------------------------


def sql_masked_message(column: str, first_param: int) -> tuple[str, tuple[str, ...]]:
    """A SQL expression masking `column` as `mask_message` does, and its parameters.

    Parameters are numbered from `$first_param`; the patterns travel as parameters, never as
    SQL text.
    """
    expression = column
    args: list[str] = []
    for _, pattern, replacement in MASKS:
        n = first_param + len(args)
        expression = f"regexp_replace({expression}, ${n}::text, ${n + 1}::text, 'g')"
        args += [pattern, replacement]
    return expression, tuple(args)


def sql_culprit_frame(column: str, first_param: int) -> tuple[str, tuple[str, ...]]:
    """A SQL expression giving `culprit_frame(column)`, and its parameters (`$first_param`...)."""
    frame, library = f"${first_param}::text", f"${first_param + 1}::text"
    expression = (
        "coalesce((SELECT f.m[1] || ':' || btrim(f.m[2]) "
        f"FROM regexp_matches(coalesce({column}, ''), {frame}, 'g') WITH ORDINALITY AS f(m, i) "
        f"ORDER BY (f.m[1] ~ {library}), f.i DESC LIMIT 1), '')"
    )
    return expression, (FRAME, LIBRARY_PATH)
