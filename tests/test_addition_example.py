"""The addition example (configs/addition.yaml, the quickstart before the flagship): data, grader, config.

Training it end to end takes minutes on the embedded model; the numbers are in examples/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ADDITION = ROOT / "examples" / "addition"
CONFIG = ROOT / "configs" / "addition.yaml"


def test_held_out_sums_never_appear_in_training():
    def pair(row):  # "What is 27 + 82?" -> {27, 82}, so "82 + 27" counts as the same question
        a, b = row["messages"][1]["content"].removeprefix("What is ").removesuffix("?").split(" + ")
        return frozenset((int(a), int(b)))

    train, held_out = read_jsonl(ADDITION / "train.jsonl"), read_jsonl(ADDITION / "eval.jsonl")
    assert (len(train), len(held_out)) == (1000, 100)
    assert not {pair(r) for r in train} & {pair(r) for r in held_out}
    for row in train + held_out:  # the SFT reference (assistant turn) and the graders' answer are the sum
        a, b = row["messages"][1]["content"].removeprefix("What is ").removesuffix("?").split(" + ")
        total = str(int(a) + int(b))
        assert row["messages"][-1] == {"role": "assistant", "content": total} and row["answer"] == total


@pytest.fixture(scope="module")
def digit_credit():
    from rft.plugins import get_plugin_manager, get_registry

    pm = get_plugin_manager(plugins=[str(ADDITION / "graders.py")])
    return get_registry(pm).get("digit_credit").obj


@pytest.mark.parametrize(
    ("completion", "answer", "score"),
    [
        ("109", "109", 1.0),  # the right sum
        (" 109\n", "109", 1.0),  # surrounding whitespace is not the model's answer
        ("119", "109", 2 / 3),  # tens digit wrong, the other two right
        ("57", "58", 0.5),  # ones digit wrong
        ("444", "44", 0.0),  # an extra digit earns nothing: GRPO learned to game this once
        ("9", "109", 0.0),  # too short: no position credit
        ("The sum is 109", "109", 0.0),  # not a bare number: the format is part of the task
        ("", "109", 0.0),
    ],
)
def test_digit_credit(digit_credit, completion, answer, score):
    assert digit_credit(completion=completion, answer=answer) == pytest.approx(score)


def test_addition_config_is_valid_and_scores_references_as_passing():
    from rft.config.run import load_config
    from rft.core import Sample
    from rft.train.pipeline import make_plan

    cfg = load_config(CONFIG)
    plan = make_plan(cfg, create_model=False)  # validates data rows and grader inputs; no conversion
    assert cfg.model.name == "smollm2-135m-instruct"
    assert plan.stages == ["sft", "rft"]
    assert (len(plan.splits.train), len(plan.splits.eval)) == (1000, 100)
    assert [e.id for e in plan.grader_set] == ["exact_match", "digit_credit"]
    # the reference answer passes (reward 1 + 0.5 >= pass_threshold 1); a near miss does not (<= 0.5)
    example = plan.splits.eval[0]
    for completion, passes in ((example.reference, True), (str(int(example.reference) + 10), False)):
        sample = Sample(completion=completion, item=example.row, prompt=example.prompt)
        scores = {e.id: e.grader.grade([sample])[0].score for e in plan.grader_set}
        assert (plan.grader_set.combine(scores) >= cfg.eval.pass_threshold) is passes
