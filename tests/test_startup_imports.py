"""What the console imports before its first paint (issue 15: first numbers <= 1 s after launch).

The screens other than the overview, the in-process consumers (pgqueuer's QueueManager wrapped,
pydantic forms) and the jobs/failures queries are imported when first used, after the overview
is on screen. A module-level import added back anywhere on the app's path would cost the
startup again without failing anything else: this test says which one.
"""

from __future__ import annotations

import subprocess
import sys

# Imported on first use only: none of them is needed to show the overview's first numbers.
LAZY = (
    "pgq_console.screens.jobs",
    "pgq_console.screens.failures",
    "pgq_console.screens.workers",
    "pgq_console.screens.schedules",
    "pgq_console.screens.health",
    "pgq_console.screens.consumers",
    "pgq_console.screens.charts",
    "pgq_console.screens.enqueue_only",
    "pgq_console.screens.job_actions",
    "pgq_console.core.consumers.supervisor",
    "pgq_console.core.consumers.runtime",
    "pgq_console.core.consumers.spec",
    "pgq_console.core.jobs",
    "pgq_console.core.enqueue",
    "pgq_console.core.charts",
    "pgq_console.core.health",
    "pgq_console.core.schedules",
)


def test_the_app_and_its_context_import_no_later_screen_or_consumer_module() -> None:
    code = (
        "import sys\n"
        "import pgq_console.app\n"
        "from pgq_console.context import ConsoleContext\n"
        "from pgq_console.core.consumers.capture import LoggingState\n"
        "context = ConsoleContext()\n"
        "LoggingState.capture()\n"
        "assert not context.has_consumers and context.quit_reason() is None\n"
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"imported before the first paint: {done.stdout}"


def test_the_consumers_package_still_offers_its_names() -> None:
    """The package's names resolve on first use (`core/consumers/__init__.py`)."""
    import pgq_console.core.consumers as consumers
    from pgq_console.context import ConsoleContext

    for name in consumers.__all__:
        assert getattr(consumers, name) is not None
    context = ConsoleContext()
    context.consumer_reconnect_attempts = 3
    assert context.consumers.max_reconnect_attempts == 3
    assert context.has_consumers and context.consumers is context.consumers
