"""The embedded server's system user is created once even when several processes start their
first server at the same moment (a fresh root machine running the test workers, or two demos).

Reproduced on a fresh machine: four test workers each ran pgserver's `useradd`; one got uid 1002,
which the others' rewrite of /etc/passwd dropped, and its initdb failed with "could not look up
effective user ID 1002: user does not exist" (177 errors in one suite run).
"""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import pgq_console.core.embedded as embedded

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating system users needs root (the case the race is about)"
)

ATTEMPTS = 5
CALLERS = 6


def _userdel(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_callers_creating_the_server_user_at_once_all_get_the_one_that_exists(
    attempt: int,
) -> None:
    # Threads, each with its own lock descriptor and its own `useradd` child: the same race as
    # processes (flock locks belong to the open file, not the process), without starting six
    # interpreters per attempt.
    pgserver = embedded._import_pgserver()
    name = f"pgqc-{uuid.uuid4().hex[:10]}"
    start = threading.Barrier(CALLERS)

    def create() -> int:
        start.wait()
        embedded.ensure_server_user(pgserver, name)
        return pwd.getpwnam(name).pw_uid

    try:
        with ThreadPoolExecutor(CALLERS) as pool:
            uids = set(pool.map(lambda _: create(), range(CALLERS)))
        # Every caller saw the uid the user really has now: none ran with one that vanished.
        assert uids == {pwd.getpwnam(name).pw_uid}, (uids, pwd.getpwnam(name))
    finally:
        _userdel(name)
