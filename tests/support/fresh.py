"""Running a snippet in a fresh interpreter, for what only shows at import or start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` (with ``args`` in ``sys.argv``) from the repository root, with
    only the repository on the path and a bare environment; its standard output.
    A failing snippet fails the test, with its standard error."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
