"""The console's log file: rotated, with every known secret scrubbed from what it records."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3  # console.log.1 .. .3 beside it
log = logging.getLogger("pgq_console")


def log_path() -> Path:
    import platformdirs

    return platformdirs.user_log_path("pgq-console") / "console.log"


# Passwords this process knows of: no log line may carry one (see ScrubbingFormatter).
KNOWN_SECRETS: set[str] = set()


def remember_secrets(target: object) -> None:
    from pgq_console.core.target import secrets_of

    dsn = str(getattr(target, "dsn", "") or "")
    KNOWN_SECRETS.update(secrets_of(dsn))
    password = getattr(target, "password", None)
    if password:
        KNOWN_SECRETS.add(str(password))


class ScrubbingFormatter(logging.Formatter):
    """Every record, traceback included, without a password (known or by its place) and
    without terminal controls (the log is read with `tail` and `less`)."""

    def format(self, record: logging.LogRecord) -> str:
        from pgq_console.core.errors import scrub
        from pgq_console.core.text import printable

        text = scrub(super().format(record), tuple(KNOWN_SECRETS))
        return "\n".join(printable(line) for line in text.split("\n"))


def configure_logging() -> None:
    """Logs go to a file: the terminal belongs to the TUI, and pgqueuer logs at CRITICAL."""
    path = log_path()
    root = logging.getLogger()
    for existing_handler in list(root.handlers):
        root.removeHandler(existing_handler)
    handler: logging.Handler
    try:
        # 0700/0600 like the audit file: the log names hosts, users, entrypoints and errors.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        # Bounded: a long-running console (or a demo left on) never fills the disk.
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(ScrubbingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # pgqueuer's own logger may carry a stream handler of its own.
    for name in ("pgqueuer",):
        logger = logging.getLogger(name)
        for existing in list(logger.handlers):
            logger.removeHandler(existing)
        logger.propagate = True
