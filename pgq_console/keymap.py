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
            hint = f"; did you mean {near[0]!r}?" if near else " (README: Remapping keys)"
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


def _bindings(cls: type) -> dict[str, tuple[str, list[str]]]:
    """`cls`'s bindings over its bases, nearest first: a label (the id, else the action) to
    its action and default keys."""
    found: dict[str, tuple[str, list[str]]] = {}
    for klass in cls.__mro__:
        for binding in klass.__dict__.get("BINDINGS", ()):
            if isinstance(binding, tuple):
                key, action, binding_id = binding[0], binding[1], None
            else:
                key, action, binding_id = binding.key, binding.action, binding.id
            action = action.removeprefix("app.")  # a screen's `app.quit` is the app's `quit`
            label = binding_id if isinstance(binding_id, str) else f"{action} (no id)"
            keys = [k.strip() for k in key.split(",") if k.strip()]
            found.setdefault(label, (action, keys))
    return found


def keymap_conflict(keymap: Mapping[str, str], classes: Iterable[type], where: str) -> str | None:
    """One line naming a key the keymap gives to a binding while another binding of the same
    class (the app, a screen, a widget, a dialog) keeps it for another action, or None: one
    of the two would be lost without a word (`"screen.2" = "q"`: q opens Jobs and quits no
    more). A screen's or widget's key over one of the app's is how Textual's defaults work
    already (the nearer one wins there), and is not one. Only keys the keymap sets count."""
    for cls in classes:
        owners: dict[str, list[tuple[str, str]]] = {}
        for label, (action, defaults) in _bindings(cls).items():
            keys = keymap.get(label)
            effective = [k.strip() for k in keys.split(",")] if keys else defaults
            for key in effective:
                owners.setdefault(key, []).append((label, action))
        for key, holders in owners.items():
            for label, action in holders:
                if label not in keymap:
                    continue
                other = next((o for o, a in holders if o != label and a != action), None)
                if other is not None:
                    shown = key.encode("unicode_escape").decode("ascii")
                    return (
                        f"{where}: keymap: {label!r} takes key '{shown}', "
                        f"which {other!r} also uses: give one of them another key"
                    )
    return None
