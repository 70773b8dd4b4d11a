"""Real topologies for tests: a throwaway PostgreSQL 15 cluster on a TCP port, PgBouncer in
front of it (transaction or session pooling).

PgBouncer and PostgreSQL refuse to run as root, so both run as an unprivileged user
(`postgres` through runuser when the tests run as root) from a scratch directory the fixture
creates and removes. Everything listens on 127.0.0.1 on free ports, and is stopped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    """PostgreSQL's server binaries: PGQ_CONSOLE_PG_BIN, the newest Debian ones, or pgserver's
    (the embedded server the test suite installs from PyPI)."""
    if os.environ.get("PGQ_CONSOLE_PG_BIN"):
        return Path(os.environ["PGQ_CONSOLE_PG_BIN"])
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if debian and (debian[-1] / "pg_basebackup").exists():
        return debian[-1]
    with contextlib.suppress(ImportError):
        import pgserver

        return Path(pgserver.__file__).parent / "pginstall" / "bin"
    return Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SERVICE_USER = "postgres"
START_TIMEOUT_S = 60.0


def _missing(what: str) -> None:
    """Skip outside CI; under CI a missing tool is a failure (.ci/run installs it)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not installed (apt-get install pgbouncer postgresql-15)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_service_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", SERVICE_USER, "--", *argv]


def _run(argv: list[str]) -> None:
    done = subprocess.run(_as_service_user(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}")


def _wait_for_port(port: int, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    text = log.read_text() if log.exists() else ""
    raise RuntimeError(f"{what} did not listen on {port}: {text[-2000:]}")


def scratch_dir() -> Path:
    """A directory the service user owns (removed by the caller)."""
    path = Path(tempfile.mkdtemp(prefix="pgqc-topology-"))
    path.chmod(0o1777)
    if os.geteuid() == 0:
        shutil.chown(path, SERVICE_USER)
    return path


@dataclass
class Cluster:
    """A running PostgreSQL data directory on a TCP port (trust auth, user postgres)."""

    data: Path
    port: int
    log: Path

    @property
    def dsn(self) -> str:
        return self.database_dsn("postgres")

    def database_dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"])
        _wait_for_port(self.port, "PostgreSQL", self.log)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate", "-w"])


def start_primary(root: Path, *, replication: bool = False) -> Cluster:
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL binaries ({PG_BIN})")
    data = root / "primary"
    _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N"])
    port = free_port()
    config = [
        f"port = {port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{root}'",
        "fsync = off",
        "max_connections = 60",
    ]
    if replication:
        config += ["wal_level = replica", "max_wal_senders = 4"]
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n".join(config) + "\n")
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host replication all 127.0.0.1/32 trust\n")
    cluster = Cluster(data, port, root / "primary.log")
    cluster.start()
    return cluster


def start_replica(root: Path, primary: Cluster) -> Cluster:
    """A hot standby of `primary` (pg_basebackup -R: streaming, with its own port)."""
    data = root / "replica"
    _run(
        [
            str(PG_BIN / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",  # the default spread checkpoint takes minutes
        ]
    )
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(f"port = {port}\nhot_standby = on\n")
    log = root / "replica.log"
    replica = Cluster(data, port, log)
    replica.start()
    return replica


@dataclass
class Bouncer:
    """A running PgBouncer in front of one database."""

    port: int
    mode: str
    pidfile: Path
    log: Path
    database: str

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)


def start_pgbouncer(
    root: Path, server_port: int, database: str, mode: str, *, extra: str = ""
) -> Bouncer:
    """PgBouncer with Debian's stock settings (only extra_float_digits ignored at startup)."""
    if not Path(PGBOUNCER).exists():
        _missing("pgbouncer")
    port = free_port()
    directory = root / f"pgbouncer-{port}"
    directory.mkdir()
    users = directory / "users.txt"
    users.write_text('"postgres" ""\n')
    ini = directory / "pgbouncer.ini"
    log = directory / "pgbouncer.log"
    pidfile = directory / "pgbouncer.pid"
    ini.write_text(
        f"""[databases]
{database} = host=127.0.0.1 port={server_port} dbname={database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {users}
pool_mode = {mode}
default_pool_size = 10
ignore_startup_parameters = extra_float_digits
logfile = {log}
pidfile = {pidfile}
{extra}
"""
    )
    if os.geteuid() == 0:
        for path in (directory, users, ini):
            shutil.chown(path, SERVICE_USER)
    _run([PGBOUNCER, "-d", str(ini)])
    _wait_for_port(port, "PgBouncer", log)
    return Bouncer(port, mode, pidfile, log, database)


@contextlib.contextmanager
def running_primary(replication: bool = False) -> Iterator[tuple[Path, Cluster]]:
    root = scratch_dir()
    cluster: Cluster | None = None
    try:
        cluster = start_primary(root, replication=replication)
        yield root, cluster
    finally:
        if cluster is not None:
            cluster.stop()
        if not os.environ.get("PGQC_KEEP_TOPOLOGY"):
            shutil.rmtree(root, ignore_errors=True)
