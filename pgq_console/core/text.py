"""Untrusted text from the database, made safe to put on a terminal."""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidi/zero-width format characters that can disguise text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(value: str, *, limit: int | None = None) -> str:
    """Control characters shown as visible escapes (ESC becomes \\x1b); optionally truncated."""
    text = _UNSAFE.sub(
        lambda match: (
            f"\\x{ord(match.group()):02x}"
            if ord(match.group()) < 0x100
            else f"\\u{ord(match.group()):04x}"
        ),
        value,
    )
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text
