"""Input suggestions for a comma-separated list of names: → completes the name being typed."""

from __future__ import annotations

from collections.abc import Iterable

from textual.suggester import Suggester


class ListItemSuggester(Suggester):
    """Suggests the first known name that starts with the last item of a comma-separated value
    ("send_email, res" → "send_email, resize_image"); names already listed are not offered."""

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.names = sorted(set(names))

    async def get_suggestion(self, value: str) -> str | None:
        head, comma, last = value.rpartition(",")
        typed = last.lstrip()
        if not typed:
            return None
        listed = {item.strip() for item in head.split(",")} if comma else set()
        for name in self.names:
            if name.startswith(typed) and name != typed and name not in listed:
                return value[: len(value) - len(typed)] + name
        return None
