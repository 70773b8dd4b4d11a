"""`[keymap]` in the config file: binding ids mapped to the keys that replace their defaults.

    [keymap]
    quit = "ctrl+q"          # one key
    "cursor.down" = "j,down" # several, comma-separated

The app applies it with Textual's `App.set_keymap`; this module only checks it (no Textual
here). Every binding of the app and its screens has an id (`binding_ids`); an unknown id is a
one-line configuration error, with the nearest known id when there is one.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable, Mapping

_MODIFIERS = frozenset({"ctrl", "shift", "alt", "meta", "super", "hyper"})
# Textual's names of the keys that are not one printable character (`textual.keys`), and its
# short names of some punctuation; other punctuation goes by its Unicode name (question_mark).
_NAMED_KEYS = frozenset(
    {
        "up", "down", "left", "right", "home", "end", "pageup", "pagedown", "insert", "delete",
        "backspace", "tab", "enter", "return", "escape", "space", "newline",
        "slash", "backslash", "at", "minus", "plus", "underscore",
        *(f"f{n}" for n in range(1, 25)),
    }
)  # fmt: skip


def key_problem(key: str) -> str | None:
    """Why `key` (`ctrl+r`, `j`, `question_mark`) names no key Textual sends, or None."""
    *modifiers, name = key.split("+")
    unknown = [m for m in modifiers if m not in _MODIFIERS]
    if unknown:
        return f"unknown modifier {unknown[0]!r} (one of {', '.join(sorted(_MODIFIERS))})"
    if len(name) == 1:
        return None if name.isprintable() and not name.isspace() else "not a printable key"
    if name in _NAMED_KEYS:
        return None
    try:
        character = unicodedata.lookup(name.replace("_", " "))
    except KeyError:
        character = ""
    if character and name.isascii() and name.islower() and character.isascii():
        if not character.isprintable():
            return "not a printable key"
        return None  # a punctuation key by its Unicode name, as Textual names it
    return "no such key"


def binding_ids(classes: Iterable[type]) -> set[str]:
    """The ids of the bindings that `classes` (and their bases) declare."""
    ids: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            for binding in klass.__dict__.get("BINDINGS", ()):
                binding_id = getattr(binding, "id", None)
                if isinstance(binding_id, str):
                    ids.add(binding_id)
    return ids


def keymap_problem(keymap: Mapping[str, str], known: Iterable[str], where: str) -> str | None:
    """One line saying what is wrong with `keymap` (`where` names the file), or None."""
    known = sorted(known)
    for binding_id, keys in keymap.items():
        if binding_id not in known:
            near = difflib.get_close_matches(binding_id, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else " (README: Configuration)"
            return f"{where}: keymap: unknown binding id {binding_id!r}{hint}"
        named = [key.strip() for key in keys.split(",") if key.strip()]
        if not named:
            return f"{where}: keymap: {binding_id!r} has no keys"
        for key in named:
            problem = key_problem(key)
            if problem:
                shown = key.encode("unicode_escape").decode("ascii")
                return f"{where}: keymap: {binding_id!r}: key '{shown}': {problem}"
    return None
