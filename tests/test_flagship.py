"""The flagship quickstart (configs/quickstart.yaml, examples/flagship/): data, verifier, config.

Training it takes minutes on the embedded model; benchmarks/flagship.py measures it against
SFT alone (the table is in README.md). These tests run without training.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
FLAGSHIP = ROOT / "examples" / "flagship"
CONFIG = ROOT / "configs" / "quickstart.yaml"


def test_few_labels_many_verifier_only_prompts_and_disjoint_held_out_ranges():
    train, held_out = read_jsonl(FLAGSHIP / "train.jsonl"), read_jsonl(FLAGSHIP / "eval.jsonl")
    labeled = [r for r in train if r["messages"][-1]["role"] == "assistant"]
    assert (len(train), len(labeled), len(held_out)) == (512, 32, 100)
    # no row carries an `answer` column: rftkit would read it as a reference output for SFT
    assert not any("answer" in r for r in train + held_out)
    assert not {r["low"] for r in train} & {r["low"] for r in held_out}
    for row in labeled:  # each reference is one of several right answers
        x = int(row["messages"][-1]["content"])
        assert row["low"] < x < row["high"] and x % 2 == (row["parity"] == "odd")


@pytest.fixture(scope="module")
def graders():
    from rft.plugins import get_plugin_manager, get_registry

    registry = get_registry(get_plugin_manager(plugins=[str(FLAGSHIP / "graders.py")]))
    return registry.get("in_range").obj, registry.get("range_credit").obj


ROW = {"low": 818, "high": 830, "parity": "even"}


@pytest.mark.parametrize(
    ("completion", "passes", "credit"),
    [
        ("820", True, 1.0),  # every even number strictly inside passes, not just one reference
        ("828", True, 1.0),
        (" 824\n", True, 1.0),  # surrounding whitespace is not the model's answer
        ("825", False, 0.5),  # in the range, wrong parity
        ("818", False, 0.5),  # a copy of the bound: outside ("between" is exclusive), parity credit only
        ("830", False, 0.5),  # (a closeness credit for it was gamed by GRPO on one seed)
        ("819", False, 0.5),  # inside, wrong parity
        ("2000", False, 0.5),  # right parity, far away
        ("The number is 824", False, 0.0),  # not a bare number: the format is part of the task
        ("", False, 0.0),
    ],
)
def test_verifier_scores_right_and_wrong_answers(graders, completion, passes, credit):
    in_range, range_credit = graders
    assert in_range(completion=completion, item=ROW) == (1.0 if passes else 0.0)
    assert range_credit(completion=completion, item=ROW) == pytest.approx(credit)


def test_a_row_with_a_bad_parity_is_a_grader_error_not_a_zero(graders):
    from rft.core import Sample
    from rft.core.outcome import OutcomeKind

    in_range, _ = graders
    [outcome] = in_range.grade([Sample(completion="824", item={**ROW, "parity": "evn"})])
    assert outcome.kind == OutcomeKind.GRADER_ERROR and "parity" in (outcome.error or "")


def test_flagship_config_passes_dry_run_and_its_graders_pass_only_right_answers():
    proc = subprocess.run(
        [sys.executable, "-m", "rft", "train", str(CONFIG), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "512 train rows (32 with a reference)" in proc.stdout

    from rft.config.run import load_config
    from rft.core import Sample
    from rft.train.pipeline import make_plan

    cfg = load_config(CONFIG)
    plan = make_plan(cfg, create_model=False)
    assert cfg.model.name == "smollm2-135m-instruct" and plan.stages == ["sft", "rft"]
    assert [e.id for e in plan.grader_set] == ["in_range", "range_credit"]
    sft_rows = [e for e in plan.splits.train if e.reference is not None]
    assert len(sft_rows) == 32  # SFT sees only the labeled rows; RFT sees all 512 prompts
    example = plan.splits.eval[0]
    low, high, parity = example.row["low"], example.row["high"], example.row["parity"]
    right = [x for x in range(low + 1, high) if x % 2 == (parity == "odd")]
    wrong = [right[0] + 1, high, low]  # wrong parity, and the two (excluded) bounds
    for completion, passes in [(str(x), True) for x in right] + [(str(x), False) for x in wrong]:
        sample = Sample(completion=completion, item=example.row, prompt=example.prompt)
        scores = {e.id: e.grader.grade([sample])[0].score for e in plan.grader_set}
        assert (plan.grader_set.combine(scores) >= cfg.eval.pass_threshold) is passes, completion
