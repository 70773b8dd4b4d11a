"""How the installed package finds its own files: built-in themes, the version."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pgq_console

REPO = Path(__file__).resolve().parents[1]


def test_builtin_themes_never_come_from_a_themes_folder_beside_the_package(
    tmp_path: Path,
) -> None:
    """Installed, the folder beside the package is site-packages: anyone's `themes/`."""
    site = tmp_path / "site-packages"
    shutil.copytree(
        Path(pgq_console.__file__).parent,
        site / "pgq_console",
        ignore=shutil.ignore_patterns("__pycache__", "themes"),
    )
    (site / "themes").mkdir()
    (site / "themes" / "planted.toml").write_text('name = "planted"\nprimary = "#123456"\n')
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = "from pgq_console.themes import builtin_theme_dirs; print(builtin_theme_dirs())"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert result.stdout.strip() == "[]", result.stdout

    # The wheel's layout: the themes inside the package are the built-in ones.
    shutil.copytree(REPO / "themes", site / "pgq_console" / "themes")
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert str(site / "pgq_console" / "themes") in result.stdout
    assert str(site / "themes") + "'" not in result.stdout


def test_the_version_has_one_source() -> None:
    metadata_version = importlib.metadata.version("pgq-console")
    assert pgq_console.__version__ == metadata_version
    result = subprocess.run(
        [sys.executable, "-m", "pgq_console", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"pgq-console {metadata_version}"


def test_paths_lists_the_audit_file() -> None:
    from pgq_console.core.audit import audit_log_path

    result = subprocess.run(
        [sys.executable, "-m", "pgq_console", "paths"], capture_output=True, text=True, check=True
    )
    assert "audit file" in result.stdout and str(audit_log_path()) in result.stdout


def test_the_log_file_rotates() -> None:
    import logging
    import logging.handlers

    from pgq_console.cli import LOG_MAX_BYTES, configure_logging, log_path

    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging()
        (handler,) = root.handlers
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert handler.maxBytes == LOG_MAX_BYTES and handler.backupCount >= 1
        handler.maxBytes = 2_000  # what 5 MB of a long demo run does, in a few lines
        for number in range(100):
            logging.getLogger("pgq_console.test").warning("line %d %s", number, "x" * 50)
        assert log_path().with_name("console.log.1").exists()
        assert log_path().stat().st_size <= 2_000
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_a_simulated_demo_failure_logs_one_line_without_a_traceback() -> None:
    import io
    import logging

    from pgq_console.core.demo import DemoJobError, SimulatedFailureOneLine

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("pgqueuer")
    one_line = SimulatedFailureOneLine()
    logger.addHandler(handler)
    logger.addFilter(one_line)
    try:
        for exc in (DemoJobError("card declined for job 7 (simulated)"), KeyError("real")):
            try:
                raise exc
            except Exception as caught:  # the way pgqueuer's QueueManager logs a failed job
                logger.exception(
                    "Exception while processing entrypoint/job-id: %s/%s", "e", 7, exc_info=caught
                )
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(one_line)
    simulated, _, real = (
        stream.getvalue()
        .partition("Exception while processing")[2]
        .partition("Exception while processing")
    )
    assert simulated.strip() == "entrypoint/job-id: e/7: card declined for job 7 (simulated)"
    assert "Traceback" in real and "KeyError" in real  # a real failure keeps its traceback


def test_ci_turns_a_missing_browser_into_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """`.ci/run` sets CI=true: a browser test that cannot run must not pass as a skip."""
    from tests.test_scripting_serve import missing

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no browser"):
        missing("no browser")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no browser"):
        missing("no browser")
