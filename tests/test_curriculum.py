"""The pass-rate curriculum (stages.rft.curriculum): the pure state object, its sampler, and its
checkpoint file surviving a kill and `rft train --resume`."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from helpers import full_and_killed_runs, read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

from rft.cli.main import app
from rft.config.sections import CurriculumSettings
from rft.core.errors import ConfigError, RFTError
from rft.train.sampling import STATE_FILE, Curriculum, curriculum_batches, read_state, write_state


def make(n: int = 4, **kw: float) -> Curriculum:
    settings = {"retire_after": 3, "never_solved_weight": 0.25, "window": 4, **kw}
    return Curriculum(n, **settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# the state object
# ---------------------------------------------------------------------------


def test_prompts_solved_every_time_are_retired_and_never_solved_ones_weigh_less():
    cur = make()
    assert cur.weights() == [1.0, 1.0, 1.0, 1.0]  # untried prompts weigh 1
    cur.record(0, [True, True])
    assert cur.weight(0) == 1.0  # solved, but not yet `retire_after` times in a row
    cur.record(0, [True])
    assert cur.weight(0) == 0.0 and cur.retired == [0]
    cur.record(1, [False, False, False])
    assert cur.weight(1) == 0.25 and cur.never_solved == [1]
    cur.record(2, [True, True, False, True])  # a failure resets the streak: not retired
    assert cur.weight(2) == 1.0 and cur.prompts[2].streak == 1
    cur.record(1, [True])  # solved once: no longer "never solved"
    assert cur.weight(1) == 1.0 and cur.never_solved == []


def test_the_running_pass_rate_covers_the_window_and_skips_unscorable_completions():
    cur = make(window=4)
    cur.record(3, [False, False, True, None, True, True])
    # the last 4 scored outcomes: F, T, T, T (None is unscorable: neither pass nor fail)
    assert cur.pass_rate(3) == 0.75 and cur.prompts[3].attempts == 5
    assert cur.pass_rate(0) is None
    m = cur.metrics()
    assert m["curriculum/pass_rate"] == 0.75 and m["curriculum/untried"] == 3


def test_weights_change_how_often_prompts_are_drawn():
    cur = make(n=4, never_solved_weight=0.25)
    cur.record(1, [False])  # never solved: weight 0.25
    cur.record(2, [True, True, True])  # retired: weight 0
    rng = random.Random(0)
    counts = Counter(i for _ in range(4000) for i in cur.draw(1, rng))
    assert counts[2] == 0
    assert counts[0] / counts[1] == pytest.approx(4.0, rel=0.2)
    assert counts[3] / counts[1] == pytest.approx(4.0, rel=0.2)
    # a batch draws distinct prompts while enough weigh > 0
    assert all(len(set(cur.draw(3, rng))) == 3 for _ in range(50))


def test_when_everything_is_retired_training_goes_on_with_all_prompts():
    cur = make(n=2, retire_after=1)
    cur.record(0, [True])
    cur.record(1, [True])
    assert cur.weights() == [0.0, 0.0]
    assert sorted(cur.draw(2, random.Random(1))) == [0, 1]
    zero = make(n=2, never_solved_weight=0.0)
    zero.record(0, [False])
    zero.record(1, [False])
    # never solved with weight 0 and nothing else left: the prompts that are not retired are drawn
    assert sorted(zero.draw(2, random.Random(1))) == [0, 1]


def test_state_round_trips_and_refuses_other_data(tmp_path):
    cur = make()
    cur.record(0, [True, True, True])
    cur.record(1, [False, True])
    path = write_state(tmp_path, curriculum=cur, totals=None, step=7)
    assert path.name == STATE_FILE and not list(tmp_path.glob("*.tmp"))
    state = read_state(tmp_path)
    assert state is not None and state["global_step"] == 7
    again = make()
    again.load_dict(state["curriculum"])
    assert again.to_dict() == cur.to_dict() and again.weights() == cur.weights()
    # resuming with a lower retire_after applies it to the saved streaks
    strict = make(retire_after=1)
    strict.load_dict(state["curriculum"])
    assert strict.retired == [0, 1]
    with pytest.raises(RFTError, match="data changed"):
        make(n=5).load_dict(state["curriculum"], source="ckpt")
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(RFTError, match=STATE_FILE):
        read_state(tmp_path)
    assert read_state(tmp_path / "nowhere") is None


def test_the_sampler_follows_the_weights_of_the_moment_in_trl_order():
    from rft.train.trainer import CurriculumSampler

    cur = make(n=4, retire_after=1)
    sampler = CurriculumSampler(cur, mini_repeat_count=2, batch_size=2, repeat_count=3, seed=0)
    assert len(sampler) == 2 * 2 * 2 * 3  # like TRL's RepeatSampler: epochs keep their length
    it = iter(sampler)
    first = [next(it) for _ in range(12)]
    # each prompt twice in a row, the batch three times (one generation batch, its optimisation steps)
    assert first[:4] * 3 == first and first[0] == first[1] and first[2] == first[3]
    for i in range(4):  # every prompt but one is retired before the next batch is drawn
        if i != 3:
            cur.record(i, [True])
    second = [next(it) for _ in range(12)]
    assert set(second) == {3}
    # the pure batch generator draws num_prompts // batch_size batches per epoch
    assert len(list(curriculum_batches(make(n=5), 2, random.Random(0)))) == 2


def test_settings_are_checked():
    assert CurriculumSettings().enabled is False
    with pytest.raises(ConfigError, match="stages.rft.curriculum.never_solved_weight"):
        CurriculumSettings(never_solved_weight=1.5)


# ---------------------------------------------------------------------------
# kill + --resume on a tiny model
# ---------------------------------------------------------------------------

GRADERS_PY = '''
import rft


@rft.grader
def even_answer(completion: str, answer: str) -> float:
    """Passes every completion of a prompt with an even answer, none of the others (deterministic)."""
    return 1.0 if int(answer) % 2 == 0 else 0.0


@rft.hookimpl
def rft_register_graders(register):
    register(even_answer)
'''

N = 2  # steps before the kill; the runs train 2N RFT steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from rft.models.resolve import create_tiny_model

    tmp = tmp_path_factory.mktemp("curriculum")
    model = create_tiny_model(tmp / "model")
    plugin = tmp / "curriculum_graders.py"
    plugin.write_text(GRADERS_PY)
    cfg = tiny_config(
        tmp,
        model,
        graders={"plugins": [str(plugin)], "graders": [{"name": "even_answer"}]},
        scoring={"executor": "local", "num_workers": 1, "inline": True},
        eval={"enabled": False, "pass_threshold": 1.0},
    )
    del cfg["stages"]["sft"]
    cfg["stages"]["rft"]["trl"].update(max_steps=2 * N, save_steps=N)
    # 2 generations per prompt: an even-answer prompt is retired after its first group
    cfg["stages"]["rft"]["curriculum"] = {"enabled": True, "retire_after": 2, "never_solved_weight": 0.5}
    config = write_config(tmp, cfg)

    full, killed = full_and_killed_runs(config, tmp, N)
    res = CliRunner().invoke(app, ["train", str(config), "--resume", str(killed), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return {"full": full, "killed": killed}


def _state(run: Path, step: int) -> dict:
    return json.loads((run / "rft" / "checkpoints" / f"checkpoint-{step}" / STATE_FILE).read_text())["curriculum"]


def _answers(run: Path) -> dict[str, int]:
    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "examples/tiny/train.jsonl").open()]
    return {str(i): int(r["answer"]) for i, r in enumerate(rows)}


@pytest.mark.slow
def test_each_checkpoint_holds_the_curriculum_state(runs):
    full = runs["full"]
    answers = _answers(full)
    for step in (N, 2 * N):
        state = _state(full, step)
        prompts = state["prompts"]
        # 2 prompts × 2 completions per step, all recorded
        assert sum(p["attempts"] for p in prompts.values()) == step * 4
        for idx, p in prompts.items():
            even = answers[idx] % 2 == 0
            assert p["retired"] is even and (p["passes"] == p["attempts"] if even else p["passes"] == 0)
        # the state file is written before the checkpoint is marked complete
        ckpt = full / "rft" / "checkpoints" / f"checkpoint-{step}"
        assert (ckpt / "rft-complete.json").exists() and not (ckpt / (STATE_FILE + ".tmp")).exists()
    recs = [r for r in read_jsonl(full / "metrics.jsonl") if r["stage"] == "rft" and "loss" in r]
    assert all("curriculum/retired" in r and "curriculum/pass_rate" in r for r in recs)
    assert recs[-1]["curriculum/retired"] == sum(p["retired"] for p in _state(full, 2 * N)["prompts"].values())


@pytest.mark.slow
def test_the_curriculum_survives_a_kill_and_resume(runs):
    full, resumed = runs["full"], runs["killed"]
    # up to the kill both runs are the same run
    restored = _state(resumed, N)
    assert restored == _state(full, N)
    final = _state(resumed, 2 * N)
    # the resumed run continued the restored state: every completion of all 2N steps is counted
    # (a curriculum started fresh on resume would hold only the last N steps')
    assert sum(p["attempts"] for p in final["prompts"].values()) == 2 * N * 4
    for idx, p in restored["prompts"].items():
        assert final["prompts"][idx]["attempts"] >= p["attempts"]
    # and it drove sampling: a prompt retired before the kill is never drawn after the resume
    retired = {idx for idx, p in restored["prompts"].items() if p["retired"]}
    assert retired, "the seed's first steps should retire an even-answer prompt"
    rows = [json.loads(line) for line in (Path(__file__).parents[1] / "examples/tiny/train.jsonl").open()]
    retired_prompts = {rows[int(i)]["messages"][0]["content"] for i in retired}
    after = [r for r in read_jsonl(resumed / "rollouts.jsonl") if r["step"] >= N]
    assert after and not {r["prompt"][-1]["content"] for r in after} & retired_prompts
