"""Every example's shipped data is exactly what its seeded make_data.py writes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO


@pytest.mark.parametrize("example", ["addition", "flagship", "agent"])
def test_shipped_data_is_what_make_data_writes(tmp_path, example):
    folder = REPO / "examples" / example
    subprocess.run(
        [sys.executable, str(folder / "make_data.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), f"{name} is stale: rerun make_data.py"
