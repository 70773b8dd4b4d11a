"""pgq_console.core is the non-UI domain: importing all of it must not import Textual or Rich."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pgq_console.core


def test_core_never_imports_textual() -> None:
    modules = [
        f"pgq_console.core.{m.name}" for m in pkgutil.iter_modules(pgq_console.core.__path__)
    ]
    assert "pgq_console.core.overview" in modules and "pgq_console.core.backend" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "bad += sorted(m for m in sys.modules if m.startswith(('pgq_console.app', "
        "'pgq_console.screens', 'pgq_console.widgets')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"core pulled in: {done.stdout}"
