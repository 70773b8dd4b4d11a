"""Untrusted text from the database, made safe to put on a terminal (or a clipboard, or a
monitoring system's status line)."""

from __future__ import annotations

import re

# Characters a terminal would act on, or that show as nothing and so disguise a name
# (`send_email`, `send_email\u2060` and `send\u00ad_email` must not read alike):
# C0 and C1 controls and DEL; every Unicode format (Cf) character, i.e. soft hyphen, bidi
# controls, zero-width (non-)joiners, word joiner, invisible operators, BOM, interlinear
# annotation, the tag characters U+E0000-E007F; the combining grapheme joiner U+034F; the line
# and paragraph separators U+2028/2029 (line breaks to some terminals); lone surrogates
# (unencodable: writing one would raise). `tests/test_text.py` checks the Cf list against
# the running Python's Unicode database.
UNSAFE_CLASS = (
    "\x00-\x1f\x7f-\x9f\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f"
)
_UNSAFE = re.compile(f"[{UNSAFE_CLASS}]")
# For a clipboard: the same, but line breaks and tabs are content.
_CLIPBOARD_CLASS = UNSAFE_CLASS.replace("\x00-\x1f", "\x00-\x08\x0b-\x1f", 1)
_UNSAFE_IN_CLIPBOARD = re.compile(f"[{_CLIPBOARD_CLASS}]")


def escape(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: str, *, limit: int | None = None) -> str:
    """Control and invisible characters shown as visible escapes (ESC becomes \\x1b, a word
    joiner \\u2060); optionally truncated to `limit` characters."""
    text = _UNSAFE.sub(lambda match: escape(match.group()), value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text


def has_unsafe(value: str) -> bool:
    """True when `value` holds a character `printable` would escape."""
    return _UNSAFE.search(value) is not None


def clipboard_text(value: str) -> str:
    """Text for the clipboard: line breaks and tabs kept, every other control or invisible
    character dropped (pasted into a terminal, an escape sequence would run there)."""
    return _UNSAFE_IN_CLIPBOARD.sub("", value)


def one_line(value: object, *, limit: int | None = None) -> str:
    """`value` (an exception's message, say) on one line: every run of whitespace becomes one
    space; cut to `limit` characters when given. Not made printable: see `printable`."""
    text = " ".join(str(value).split())
    return text if limit is None else text[:limit]


def middle_cut(text: str, limit: int) -> str:
    """`text`, or when longer than `limit` its start and end with "…" between them."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def error_line(exc: BaseException, *, limit: int | None = None) -> str:
    """An exception's message on one line, or its type's name when it has none."""
    return one_line(exc, limit=limit) or type(exc).__name__[:limit]


def printable_line(value: object, *, limit: int = 300) -> str:
    """`one_line`, then `printable`: an exception's message fit for a log pane or a toast."""
    return printable(one_line(value), limit=limit)
