"""Ten server restarts while monitoring, with traffic: `pytest -m slow` (not run by default)."""

from __future__ import annotations

import pytest

from tests.test_resilience import run_restart_scenario


@pytest.mark.slow
async def test_ten_restarts_console_recovers_every_time_and_no_job_is_lost() -> None:
    await run_restart_scenario(cycles=10)
