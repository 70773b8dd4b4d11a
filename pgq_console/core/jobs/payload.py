"""Rendering a payload as lines of plain text (UI-free): JSON, text or a hex dump."""

from __future__ import annotations

import json
from dataclasses import dataclass

# -- payload rendering (UI-free: lines of plain text) -----------------------------------------

# Deeper JSON is shown as the text it is: pretty-printed, each level indents every line below
# it (1,000 levels are megabytes of spaces), and whether it parses at all depends on Python's
# recursion limit at that moment (a library may have raised it), so the view would vary.
MAX_PRETTY_DEPTH = 100


@dataclass(frozen=True)
class RenderedPayload:
    kind: str  # "json", "text", "hex", "empty"
    text: str


def render_payload(payload: bytes | None, *, truncated: bool = False) -> RenderedPayload:
    """Pretty JSON, UTF-8 text or a hex dump, whichever fits. The text is still untrusted."""
    if payload is None:
        return RenderedPayload("empty", "(no payload)")
    if not payload:
        return RenderedPayload("empty", "(empty payload)")
    if not truncated:
        try:
            decoded = payload.decode("utf-8")
            parsed = json.loads(decoded)
            if nesting_depth(parsed) <= MAX_PRETTY_DEPTH:
                pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
                return RenderedPayload("json", pretty)
        except (UnicodeDecodeError, ValueError, RecursionError):
            pass  # RecursionError: nested too deeply to parse; shown as text
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut inside a multi-byte character at the page end is still text.
        if truncated and exc.start >= len(payload) - 3:
            text = payload[: exc.start].decode("utf-8")
        else:
            return RenderedPayload("hex", hex_dump(payload))
    if "\x00" in text:
        return RenderedPayload("hex", hex_dump(payload))
    return RenderedPayload("text", text)


def nesting_depth(value: object) -> int:
    """How deep lists and objects nest in parsed JSON (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def hex_dump(data: bytes, width: int = 16) -> str:
    lines = []
    for offset in range(0, len(data), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        ascii_ = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<{width * 3 - 1}}  {ascii_}")
    return "\n".join(lines)
