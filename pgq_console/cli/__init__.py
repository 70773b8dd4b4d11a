"""`pgq-console`: parse arguments, resolve settings, connect (or start the demo), run the app.

Subcommands share the same options, config file and profiles: `paths` (where things live),
`snapshot` and `check` (one-shot, no TUI, for scripts and monitoring) and `serve` (the app in
a browser). Every failure is one line on stderr: exit 2 for the TUI, 3 (UNKNOWN) for `check`.
"""

from __future__ import annotations

from pgq_console.cli.dispatch import main
from pgq_console.cli.logs import LOG_MAX_BYTES, configure_logging, log_path
from pgq_console.cli.parser import build_parser, cli_options
from pgq_console.cli.run import make_app

__all__ = [
    "LOG_MAX_BYTES",
    "build_parser",
    "cli_options",
    "configure_logging",
    "log_path",
    "main",
    "make_app",
]
