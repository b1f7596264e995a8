"""Dynamic sampling (stages.rft.dynamic_sampling): zero-variance groups are replaced by fresh prompts' groups.

The bookkeeping (FilterGroups, the batch merge) is tested on its own; two tiny-model runs show a
zero-variance grader triggering the extra rounds and the metrics reaching metrics.jsonl.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from helpers import read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

from rft.cli.main import app
from rft.config.sections import DynamicSamplingSettings
from rft.core.errors import ConfigError, RFTError
from rft.train.sampling import FilterGroups, SamplingTotals, group_informative, weighted_draw

# ---------------------------------------------------------------------------
# pure bookkeeping
# ---------------------------------------------------------------------------


def test_a_group_is_informative_only_when_its_rewards_differ():
    rewards = [1.0, 1.0, 0.0, 1.0, 0.5, None, None, None, 0.2, 0.2 + 1e-9, math.nan, 0.0]
    assert group_informative(rewards, 2) == [False, True, False, False, False, False]
    assert group_informative(rewards, 3) == [True, True, False, True]
    with pytest.raises(ValueError, match="groups of 5"):
        group_informative(rewards, 5)


def test_filter_groups_keeps_informative_groups_and_fills_from_the_first_round():
    fg = FilterGroups(target=4, max_rounds=3)
    fg.add_round([False, True, False, False])
    assert (fg.missing, fg.needs_more) == (3, True)
    fg.add_round([True, False, False])  # 3 fresh groups for the 3 missing
    assert (fg.missing, fg.needs_more) == (2, True)
    fg.add_round([False, False])
    # rounds are spent: the informative groups first, then the first round's uninformative ones
    assert not fg.needs_more
    assert fg.picks() == [(0, 1), (1, 0), (0, 0), (0, 2)]
    m = fg.metrics(group_size=2)
    assert m["dynamic_sampling/rounds"] == 3
    assert m["dynamic_sampling/informative_share"] == pytest.approx(2 / 9)
    assert m["dynamic_sampling/generations_per_informative_group"] == pytest.approx(9 * 2 / 2)
    assert m["dynamic_sampling/batch_informative_share"] == pytest.approx(2 / 4)
    totals = SamplingTotals()
    totals.add(fg, 2)
    assert SamplingTotals.from_dict(totals.to_dict()) == totals and totals.generations == 18


def test_filter_groups_stops_as_soon_as_the_batch_is_informative():
    fg = FilterGroups(target=2, max_rounds=5)
    fg.add_round([True, True])
    assert not fg.needs_more and fg.picks() == [(0, 0), (0, 1)]
    assert fg.metrics(4)["dynamic_sampling/generations_per_informative_group"] == 4
    none = FilterGroups(target=1, max_rounds=1)
    none.add_round([False])
    # one round only: nothing is resampled, the batch is what TRL generated; no informative group is NaN (null)
    assert not none.needs_more and none.picks() == [(0, 0)]
    assert math.isnan(none.metrics(4)["dynamic_sampling/generations_per_informative_group"])
    with pytest.raises(ValueError, match="whole batch"):
        FilterGroups(target=3, max_rounds=2).add_round([True])


def test_fresh_prompts_avoid_the_batch_while_others_are_left():
    rng = random.Random(0)
    drawn = weighted_draw([1.0] * 5, 3, rng, exclude=[0, 1])
    assert sorted(drawn) == [2, 3, 4]
    # more than the others: the excluded ones come back rather than repeats
    assert sorted(weighted_draw([1.0] * 3, 3, rng, exclude=[0, 1])) == [0, 1, 2]


def test_settings_are_checked():
    assert DynamicSamplingSettings().enabled is False
    with pytest.raises(ConfigError, match="stages.rft.dynamic_sampling.max_rounds"):
        DynamicSamplingSettings(enabled=True, max_rounds=0)


def test_merge_re_pads_the_picked_groups():
    import torch

    from rft.train.trainer import merge_generation_outputs

    pad = 9

    def batch(prompt_w: int, comp_w: int, base: int) -> dict[str, torch.Tensor | None]:
        rows = 4  # 2 groups of 2
        return {
            "prompt_ids": torch.full((rows, prompt_w), base),
            "prompt_mask": torch.ones(rows, prompt_w, dtype=torch.long),
            "completion_ids": torch.arange(rows * comp_w).view(rows, comp_w) + base,
            "completion_mask": torch.ones(rows, comp_w, dtype=torch.long),
            "advantages": torch.arange(rows, dtype=torch.float) + base,
            "num_items_in_batch": torch.tensor(rows * comp_w),
            "old_per_token_logps": None,  # TRL leaves it None when generation and step are aligned
        }

    a, b = batch(2, 3, 100), batch(3, 1, 200)
    out = merge_generation_outputs([a, b], [(0, 1), (1, 0)], group_size=2, pad_token_id=pad)
    assert out["advantages"].tolist() == [102.0, 103.0, 200.0, 201.0]
    # prompts are padded on the left, completions on the right, masks with 0
    assert out["prompt_ids"].tolist() == [[pad, 100, 100], [pad, 100, 100], [200, 200, 200], [200, 200, 200]]
    assert out["prompt_mask"].tolist()[0] == [0, 1, 1]
    assert out["completion_ids"][2:].tolist() == [[200, pad, pad], [201, pad, pad]]
    assert out["completion_mask"].tolist() == [[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert int(out["num_items_in_batch"]) == 8 and "old_per_token_logps" not in out
    b["pixel_values"] = torch.zeros(4, 1)
    a["pixel_values"] = torch.zeros(4, 1)
    with pytest.raises(RFTError, match="pixel_values"):
        merge_generation_outputs([a, b], [(0, 0)], group_size=2, pad_token_id=pad)


# ---------------------------------------------------------------------------
# tiny-model runs
# ---------------------------------------------------------------------------

GRADERS_PY = '''
import rft


@rft.grader
def constant(completion: str) -> float:
    """The same score for every completion: every group has zero variance."""
    return 1.0


@rft.grader
def odd_only(completion: str, answer: str) -> float:
    """Constant for prompts with an even answer (zero variance), the completion's length parity otherwise."""
    if int(answer) % 2 == 0:
        return 0.5
    return float(len(completion) % 2)


@rft.hookimpl
def rft_register_graders(register):
    register(constant)
    register(odd_only)
'''

STEPS = 2
PROMPTS = 2  # per step (per_device_train_batch_size 4 / num_generations 2)
GENS = 2


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def _run(tmp: Path, model: Path, grader: str, max_rounds: int, curriculum: dict | None = None) -> Path:
    plugin = tmp / "signal_graders.py"
    plugin.write_text(GRADERS_PY)
    cfg = tiny_config(
        tmp,
        model,
        graders={"plugins": [str(plugin)], "graders": [{"name": grader}]},
        scoring={"executor": "local", "num_workers": 1, "inline": True},
        eval={"enabled": False},
    )
    del cfg["stages"]["sft"]
    cfg["stages"]["rft"]["trl"].update(max_steps=STEPS, save_steps=STEPS)
    cfg["stages"]["rft"]["dynamic_sampling"] = {"enabled": True, "max_rounds": max_rounds}
    if curriculum is not None:
        cfg["stages"]["rft"]["curriculum"] = curriculum
    res = CliRunner().invoke(app, ["train", str(write_config(tmp, cfg)), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return tmp / "run"


@pytest.mark.slow
def test_a_zero_variance_grader_triggers_the_extra_rounds(tmp_path, tiny_model):
    run = _run(tmp_path, tiny_model, "constant", max_rounds=3)
    rows = read_jsonl(run / "rollouts.jsonl")
    per_step: dict[int, int] = {}
    for r in rows:
        per_step[r["step"]] = per_step.get(r["step"], 0) + 1
    # every round finds no informative group, so each step generates 3 rounds of PROMPTS fresh prompts
    assert per_step == {s: 3 * PROMPTS * GENS for s in range(STEPS)}
    recs = [r for r in read_jsonl(run / "metrics.jsonl") if r["stage"] == "rft" and "loss" in r]
    assert [r["step"] for r in recs] == [1, 2]
    for r in recs:
        assert r["dynamic_sampling/rounds"] == 3
        assert r["dynamic_sampling/informative_share"] == 0
        assert r["dynamic_sampling/batch_informative_share"] == 0
        # none found: TRL logs no value (it averages only real numbers), never a 0
        assert "dynamic_sampling/generations_per_informative_group" not in r
    # the totals are saved with the checkpoint
    import json

    state = json.loads((run / "rft" / "checkpoints" / f"checkpoint-{STEPS}" / "rft-sampling.json").read_text())
    assert state["dynamic_sampling"] == {
        "batches": STEPS,
        "rounds": 3 * STEPS,
        "groups": 3 * PROMPTS * STEPS,
        "informative": 0,
        "generations": 3 * PROMPTS * GENS * STEPS,
    }


@pytest.mark.slow
def test_informative_groups_from_fresh_prompts_replace_zero_variance_ones(tmp_path, tiny_model):
    run = _run(tmp_path, tiny_model, "odd_only", max_rounds=4)
    rows = read_jsonl(run / "rollouts.jsonl")
    recs = [r for r in read_jsonl(run / "metrics.jsonl") if r["stage"] == "rft" and "loss" in r]
    assert len(recs) == STEPS
    total_rounds = 0
    for r, step in zip(recs, range(STEPS), strict=True):
        step_rows = [x for x in rows if x["step"] == step]
        rounds = int(r["dynamic_sampling/rounds"])
        total_rounds += rounds
        # the first round has the whole batch; later rounds only the missing groups
        assert PROMPTS * GENS <= len(step_rows) <= PROMPTS * GENS * rounds
        groups = [step_rows[i : i + GENS] for i in range(0, len(step_rows), GENS)]
        informative = [len({g["reward"] for g in group}) > 1 for group in groups]
        # the logged share is what the rollouts show: informative groups / groups generated, all rounds
        assert r["dynamic_sampling/informative_share"] == pytest.approx(sum(informative) / len(groups))
        assert r["dynamic_sampling/batch_informative_share"] == pytest.approx(min(sum(informative), PROMPTS) / PROMPTS)
        # a further round ran only while the batch lacked informative groups
        assert rounds == 1 or sum(informative[:PROMPTS]) < PROMPTS
    # some batch needed fresh prompts (the seed's first batches hold even-answer prompts), and training went on
    assert total_rounds > STEPS
    # and a batch was merged from several rounds: more rounds, yet informative groups in it
    assert any(r["dynamic_sampling/rounds"] > 1 and r["dynamic_sampling/batch_informative_share"] > 0 for r in recs)


@pytest.mark.slow
def test_with_the_curriculum_every_round_is_recorded_and_saved(tmp_path, tiny_model):
    import json

    run = _run(tmp_path, tiny_model, "constant", max_rounds=2, curriculum={"enabled": True, "retire_after": 100})
    state = json.loads((run / "rft" / "checkpoints" / f"checkpoint-{STEPS}" / "rft-sampling.json").read_text())
    # `constant` scores 1.0 = eval.pass_threshold: every completion of every round passes and is recorded
    attempts = sum(p["attempts"] for p in state["curriculum"]["prompts"].values())
    assert attempts == state["dynamic_sampling"]["generations"] == 2 * PROMPTS * GENS * STEPS
    # fresh prompts avoid the batch's own prompts: no prompt twice in one step
    for step in range(STEPS):
        prompts = [r["prompt"][-1]["content"] for r in read_jsonl(run / "rollouts.jsonl") if r["step"] == step]
        assert len(set(prompts)) == len(prompts) // GENS
