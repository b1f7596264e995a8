"""Every benchmark script starts the way benchmarks/README.md runs it: ``python benchmarks/X.py``.

Run as a script, a file's directory comes first on ``sys.path``, so ``benchmarks/signal.py``
stands in for the standard library's ``signal`` module (``subprocess`` and ``asyncio`` import
it) unless the script takes the directory off the path first. Some scripts then failed at
import, others ran with the benchmark posing as ``signal``. A ``sitecustomize`` on
``PYTHONPATH`` reports, when the script exits, which file ``signal`` came from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))
REPORT = """
import atexit, sys

@atexit.register
def _report():
    module = sys.modules.get("signal")
    sys.stderr.write(f"\\nSIGNAL_MODULE={getattr(module, '__file__', None)}\\n")
"""


def test_there_are_benchmark_scripts():
    assert len(SCRIPTS) >= 8 and ROOT / "benchmarks" / "signal.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_script_starts_from_the_command_line_with_the_real_signal_module(script, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(REPORT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run(
        [sys.executable, str(script.relative_to(ROOT)), "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout
    reported = [line for line in res.stderr.splitlines() if line.startswith("SIGNAL_MODULE=")]
    assert reported, res.stderr[-2000:]  # the report ran
    loaded = reported[-1].split("=", 1)[1]
    assert loaded == "None" or "benchmarks" not in Path(loaded).parts, f"`signal` came from {loaded}"
