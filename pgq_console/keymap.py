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
from collections.abc import Iterable, Mapping


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
        if not [key for key in keys.split(",") if key.strip()]:
            return f"{where}: keymap: {binding_id!r} has no keys"
    return None
