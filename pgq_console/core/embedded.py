"""Throwaway PostgreSQL 16 server for ``--demo``, backed by the ``pgserver`` wheel.

The server listens on a unix socket only (no TCP port, so it can never clash with
a system PostgreSQL) and runs as the ``pgserver`` system user when we are root,
because initdb refuses to run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)
# The TUI owns the terminal: never let logging's last-resort handler print to stderr.
logger.addHandler(logging.NullHandler())
logging.getLogger("pgserver").addHandler(logging.NullHandler())

_MISSING_EXTRA = "--demo needs the demo extra: pip install 'pgq-console[demo]'"
_STOP_WAIT_S = 10.0


def _ensure_runtime_dir() -> None:
    """Point XDG_RUNTIME_DIR at a private, writable dir before pgserver is imported.

    pgserver computes its lock-file path from ``platformdirs.user_runtime_path`` at
    import time; for root that is /run/user/0, which often does not exist (and
    platformdirs then warns on stderr).
    """
    if "pgserver" in sys.modules:
        return  # too late to influence the lock path; keep whatever it picked
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and os.path.isdir(current) and os.access(current, os.W_OK | os.X_OK):
        return
    path = Path(tempfile.gettempdir()) / f"pgq-console-runtime-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    # /tmp is shared: refuse a symlink or a dir someone else planted there.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"refusing to use {path} as runtime dir: not a directory we own")
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _import_pgserver() -> ModuleType:
    _ensure_runtime_dir()
    try:
        return importlib.import_module("pgserver")
    except ImportError as exc:
        raise RuntimeError(_MISSING_EXTRA) from exc


def ensure_server_user(pgserver: ModuleType, name: str = "pgserver") -> None:
    """As root, create the system user the server runs as, one process at a time.

    pgserver runs `useradd` when the user is missing; two consoles (or test workers) starting
    their first server at once each ran it, and `useradd`s side by side can hand out a uid
    that the other's rewrite of /etc/passwd then drops: that initdb failed with "could not
    look up effective user ID". An advisory lock on /etc (a directory every such process can
    open, whose inode `useradd` never replaces) serialises the check-and-create.
    """
    if os.geteuid() != 0:
        return
    import fcntl

    fd = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        pgserver.utils.ensure_user_exists(name)
    finally:
        os.close(fd)  # also releases the lock


def _alive(proc: Any) -> bool:
    """psutil process still running (a zombie has already stopped)."""
    try:
        return bool(proc.is_running()) and proc.status() != "zombie"
    except Exception:  # NoSuchProcess, AccessDenied, ...
        return False


class EmbeddedPostgres:
    """A private PostgreSQL server that lives as long as this object is started.

    With ``data_dir=None`` a fresh temporary directory is created on start and
    deleted on stop; a given ``data_dir`` is kept (and reused on the next start).
    """

    def __init__(self, data_dir: Path | None = None) -> None:
        self._requested_dir = data_dir
        self._owned_root: Path | None = None
        self._pgdata: Path | None = None
        self._server: Any = None
        self._uri: str | None = None
        # start/stop can be called from a worker thread and from atexit.
        self._lock = threading.RLock()

    @property
    def uri(self) -> str | None:
        """URI of the running server's ``postgres`` database, or None when stopped."""
        return self._uri

    @property
    def data_dir(self) -> Path | None:
        """PGDATA of the running server, or None when stopped."""
        return self._pgdata

    def start(self) -> str:
        """Start the server (blocking, ~1 s) and return a libpq URI for it."""
        with self._lock:
            if self._uri is not None:
                return self._uri
            pgserver = _import_pgserver()
            if self._requested_dir is None:
                self._owned_root = Path(tempfile.mkdtemp(prefix="pgq-demo-"))
                pgdata = self._owned_root / "pgdata"
                cleanup_mode = "delete"
            else:
                pgdata = self._requested_dir.expanduser().resolve()
                pgdata.parent.mkdir(parents=True, exist_ok=True)
                cleanup_mode = "stop"
            self._pgdata = pgdata
            try:
                ensure_server_user(pgserver)
                # pgserver chowns pgdata to the `pgserver` user and makes every parent
                # directory o+rx so that user can reach it.
                self._server = pgserver.get_server(pgdata, cleanup_mode=cleanup_mode)
                uri = str(self._server.get_uri())
            except BaseException:
                self._force_stop(pgdata)
                self._server = None
                self._pgdata = None
                self._remove_owned_root()
                raise
            self._uri = uri
            # pgserver registers its own atexit hook, but ours also covers a server it
            # declines to stop (its pid registry can be stale after a crash).
            atexit.register(self.stop)
            logger.info("embedded PostgreSQL started in %s (%s)", pgdata, uri)
            return uri

    def stop(self) -> None:
        """Stop the server and delete the data dir if we created it. Idempotent."""
        with self._lock:
            atexit.unregister(self.stop)
            server, self._server = self._server, None
            pgdata, self._pgdata = self._pgdata, None
            self._uri = None
            if server is not None and pgdata is not None:
                procs = self._server_processes(server)
                try:
                    server.cleanup()  # pg_ctl -w stop (+ rmtree in 'delete' mode)
                except Exception:
                    logger.exception("pgserver cleanup failed for %s", pgdata)
                if any(_alive(p) for p in procs):
                    self._force_stop(pgdata, procs)
                self._wait_gone(procs)
            self._remove_owned_root()

    def create_database(self, name: str) -> str:
        """Create database ``name`` if it does not exist yet; return its URI."""
        import psycopg
        from psycopg import sql

        uri = self._uri
        if uri is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        with psycopg.connect(uri, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        parts = urlsplit(uri)
        return urlunsplit(parts._replace(path="/" + quote(name, safe="")))

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------

    @staticmethod
    def _server_processes(server: Any) -> list[Any]:
        """The postmaster and its children, captured before stopping so we can wait on them."""
        try:
            postmaster = server.get_postmaster_info().process
            if postmaster is None:
                return []
            return [postmaster, *postmaster.children(recursive=True)]
        except Exception:
            return []

    def _force_stop(self, pgdata: Path, procs: list[Any] | None = None) -> None:
        """Fallback when pgserver did not stop the server: pg_ctl stop, then signals."""
        if not (pgdata / "postmaster.pid").exists() and not procs:
            return
        try:
            pgserver = importlib.import_module("pgserver")
            user = "pgserver" if os.geteuid() == 0 else None
            pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
        except Exception:
            logger.warning("pg_ctl stop failed for %s; signalling processes", pgdata)
        for proc in procs or []:
            if _alive(proc):
                with contextlib.suppress(Exception):
                    proc.terminate()

    @staticmethod
    def _wait_gone(procs: list[Any]) -> None:
        deadline = time.monotonic() + _STOP_WAIT_S
        while any(_alive(p) for p in procs):
            if time.monotonic() > deadline:
                for proc in procs:
                    if _alive(proc):
                        logger.warning("killing leftover postgres process %s", proc.pid)
                        with contextlib.suppress(Exception):
                            proc.kill()
                return
            time.sleep(0.02)

    def _remove_owned_root(self) -> None:
        root, self._owned_root = self._owned_root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
