"""Helpers shared by several test modules (pytest puts tests/ on sys.path: ``from helpers import …``).

Fixtures live in ``conftest.py``; this module holds plain functions and sources.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_DATA = REPO / "examples" / "tiny"


# ---------------------------------------------------------------------------
# training runs on a tiny model (test_train_e2e, test_export_resume)
# ---------------------------------------------------------------------------


def tiny_config(tmp: Path, model_dir: Path, **overrides: Any) -> dict[str, Any]:
    """configs/tiny.yaml with absolute paths and a per-test tiny model directory.

    ``overrides`` replace top-level keys; None removes one.
    """
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["model"] = f"tiny:{model_dir}"
    cfg["output_dir"] = str(tmp / "run")
    cfg["data"] = {"train": str(TINY_DATA / "train.jsonl"), "eval": str(TINY_DATA / "eval.jsonl")}
    cfg["graders"]["plugins"] = [str(TINY_DATA / "graders.py")]
    for key, value in overrides.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def write_config(tmp: Path, cfg: dict[str, Any]) -> Path:
    """``cfg`` as ``tmp/run.yaml``."""
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON Lines file (blank lines skipped)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------------------
# advisor plugin files (test_advisor, test_advisor_cli)
# ---------------------------------------------------------------------------

#: The start of an advisor test's plugin file: a grader with a reference answer
#: (``number_match``) and a gameable one (``length_bonus``); append more graders and the
#: ``rft_register_graders`` hook.
ADVISOR_GRADERS_PY = '''
import re
import rft


@rft.grader(range=(0.0, 1.0))
def number_match(completion: str, answer: str) -> float:
    """1.0 when the last number in the completion equals the answer."""
    nums = re.findall(r"-?\\d+", completion)
    return float(bool(nums) and nums[-1] == str(answer).strip())


@rft.grader(range=(0.0, 1.0))
def length_bonus(completion: str) -> float:
    """Rewards long answers: gameable by padding."""
    return min(1.0, len(completion) / 500)
'''


#: An OpenAI tool and a reference call to it (the tool_call grader's tests).
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    }
]
REF_CALL = {"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}


def full_and_killed_runs(config: Path, tmp: Path, n: int) -> tuple[Path, Path]:
    """Train ``config`` uninterrupted into ``tmp/full``, and into ``tmp/killed`` stopped right
    after RFT checkpoint ``n`` (as a kill would: a KeyboardInterrupt out of the trainer)."""
    import pytest
    from typer.testing import CliRunner

    from rft.cli.main import app
    from rft.config.run import load_config
    from rft.train.callbacks import StopAfterSave
    from rft.train.pipeline import run_training

    full = tmp / "full"
    res = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(full), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    killed = tmp / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_training(
            load_config(config, output_dir=killed), progress=False, extra_callbacks={"rft": [StopAfterSave(n)]}
        )
    return full, killed
