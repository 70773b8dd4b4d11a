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
import sys
import uuid

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="creating system users needs root (the case the race is about)"
)

ATTEMPTS = 5
PROCESSES = 6

CREATE = """
import sys
import pgq_console.core.embedded as embedded
pgserver = embedded._import_pgserver()
embedded.ensure_server_user(pgserver, sys.argv[1])
import pwd
print(pwd.getpwnam(sys.argv[1]).pw_uid)
"""


def _userdel(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True, check=False)


@pytest.mark.parametrize("attempt", range(ATTEMPTS))
def test_processes_creating_the_server_user_at_once_all_get_the_one_that_exists(
    attempt: int,
) -> None:
    name = f"pgqc-{uuid.uuid4().hex[:10]}"
    try:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CREATE, name],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        results = [child.communicate(timeout=120) for child in children]
        assert [child.returncode for child in children] == [0] * PROCESSES, results
        uids = {int(out.strip()) for out, _ in results}
        # Every process saw the uid the user really has now: none ran with one that vanished.
        assert uids == {pwd.getpwnam(name).pw_uid}, (uids, pwd.getpwnam(name))
    finally:
        _userdel(name)
