"""Every `--dsn` and `--profile` of a command line, wherever it stands: shared by the main
parser (cli/parser.py) and `fleet`'s (cli/fleet_parser.py)."""

from __future__ import annotations

import argparse
from typing import Any


class Given:
    """Every `--dsn` and `--profile` on the command line, in order, wherever it stands (before
    or after the subcommand: a subcommand's parser overwrites the main one's value, so the
    namespace alone keeps only the last). More than one names several installations: the
    console starts on the fleet, a one-installation subcommand refuses (cli/dispatch.py)."""

    def __init__(self) -> None:
        self.dsns: list[str] = []
        self.profiles: list[str] = []

    def clear(self) -> None:
        self.dsns.clear()
        self.profiles.clear()


class RecordGiven(argparse.Action):
    """`--dsn` / `--profile`: the namespace gets the value (the last one, as before), and
    `Given` every one of them."""

    def __init__(self, *args: Any, given: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.given = given

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        self.given.append(str(values))
        setattr(namespace, self.dest, values)
