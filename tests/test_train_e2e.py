"""`rft train` end to end on a tiny random model (SFT 2 steps → RFT 2 steps), plus the reward bridge
and the hand-off check in isolation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

from rft.cli.main import app
from rft.core import GraderSet, Outcome, OutcomeKind, grader
from rft.core.errors import GraderError, RFTError
from rft.scoring.base import BatchResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model) -> Path:
    """One SFT → RFT run through the CLI, shared by the tests that inspect its outputs."""
    tmp = tmp_path_factory.mktemp("e2e")
    path = write_config(tmp, tiny_config(tmp, tiny_model))
    res = CliRunner().invoke(app, ["train", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return tmp / "run"


@pytest.mark.slow
def test_run_directory_layout(trained_run):
    for name in (
        "config.resolved.yaml",
        "run.json",
        "metrics.jsonl",
        "rollouts.jsonl",
        "eval.json",
        "report.md",
        "eval.png",
        "rewards.png",
        "adapter/adapter_config.json",
        "sft/adapter",
        "rft/checkpoints/checkpoint-2",
    ):
        assert (trained_run / name).exists(), name
    # a checkpoint is trusted only once it carries the completion marker
    assert (trained_run / "rft/checkpoints/checkpoint-2/rft-complete.json").exists()
    resolved = yaml.safe_load((trained_run / "config.resolved.yaml").read_text())
    assert resolved["stages"]["rft"]["num_generations"] == 2 and resolved["lora"]["r"] == 4


@pytest.mark.slow
def test_metrics_log_each_grader_and_scoring_health(trained_run):
    recs = read_jsonl(trained_run / "metrics.jsonl")
    rft = [r for r in recs if r["stage"] == "rft" and "loss" in r]
    sft = [r for r in recs if r["stage"] == "sft" and "loss" in r]
    # 2 steps per stage, one record each (logging_steps 1)
    assert [r["step"] for r in sft] == [1, 2] and [r["step"] for r in rft] == [1, 2]
    for r in rft:
        # one TRL reward function per grader, named by the grader id
        assert "rewards/exact_match/mean" in r and "rewards/brevity/mean" in r
        # grader latency / errors / cache come through log_metric
        assert "graders/exact_match/latency_p95" in r and "graders/brevity/error_rate" in r
    # the combined reward is TRL's weighted sum with the configured weights (1.0 and 0.5)
    r = rft[0]
    assert r["reward"] == pytest.approx(1.0 * r["rewards/exact_match/mean"] + 0.5 * r["rewards/brevity/mean"], abs=1e-5)


@pytest.mark.slow
def test_rollouts_record_every_completion_with_per_grader_scores(trained_run):
    rows = read_jsonl(trained_run / "rollouts.jsonl")
    # 2 steps × 2 prompts × 2 generations
    assert len(rows) == 8 and sorted({r["step"] for r in rows}) == [0, 1]
    for r in rows:
        assert isinstance(r["completion"], str) and r["prompt"][-1]["role"] == "user"
        assert set(r["graders"]) == {"exact_match", "brevity"}
        assert r["graders"]["brevity"]["kind"] == "score" and 0.0 <= r["graders"]["brevity"]["score"] <= 1.0
    # prompts come in groups of num_generations
    assert rows[0]["prompt"] == rows[1]["prompt"]


@pytest.mark.slow
def test_eval_before_and_after_each_stage(trained_run):
    ev = json.loads((trained_run / "eval.json").read_text())
    assert list(ev) == ["base", "sft", "rft"]
    for phase in ev.values():
        assert phase["n"] == 4  # eval.max_rows of the 4 held-out rows
        assert set(phase["graders"]) == {"exact_match", "brevity"}
        assert 0.0 <= phase["pass_rate"] <= 1.0
    # every held-out row is kept, in the same order in each phase, so phases compare row by row
    rows = [[s["row"] for s in phase["samples"]] for phase in ev.values()]
    assert len(rows[0]) == 4 and rows[0] == rows[1] == rows[2]
    assert all(":" in r for r in rows[0])  # file:line of the held-out row
    report = (trained_run / "report.md").read_text()
    assert "| pass rate |" in report and "![rewards](rewards.png)" in report


@pytest.mark.slow
def test_final_adapter_loads_with_plain_peft(trained_run, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    model = PeftModel.from_pretrained(base, str(trained_run / "adapter"))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    # LoRA B starts at zero; after SFT and RFT the adapter holds learned weights
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)


@pytest.mark.slow
def test_a_used_run_directory_is_not_overwritten(trained_run):
    cfg_path = trained_run.parent / "run.yaml"
    res = CliRunner().invoke(app, ["train", str(cfg_path), "--no-progress"])
    assert res.exit_code == 2 and "--resume" in " ".join(res.output.split())


@pytest.mark.slow
def test_broken_grader_stops_training_with_its_name(tmp_path, tiny_model):
    plugin = tmp_path / "broken.py"
    plugin.write_text(
        "import rft\n\n@rft.grader\ndef always_fails(completion: str) -> float:\n"
        "    raise RuntimeError('grader bug')\n\n@rft.hookimpl\ndef rft_register_graders(register):\n    register(always_fails)\n"
    )
    cfg = tiny_config(
        tmp_path,
        tiny_model,
        graders={"plugins": [str(plugin)], "graders": [{"name": "always_fails"}]},
        scoring={"executor": "local", "num_workers": 1, "error_budget": 0.0, "inline": True},
        eval={"enabled": False},
    )
    del cfg["stages"]["sft"]
    res = CliRunner().invoke(app, ["train", str(write_config(tmp_path, cfg)), "--no-progress"])
    out = " ".join(res.output.split())
    assert res.exit_code == 2, out
    assert "always_fails" in out and not (tmp_path / "run" / "adapter").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_rft_with_the_ray_executor(tmp_path, tiny_model, ray_cluster):
    cfg = tiny_config(tmp_path, tiny_model, scoring={"executor": "ray", "num_workers": 1}, eval={"enabled": False})
    del cfg["stages"]["sft"]
    cfg["stages"]["rft"]["trl"]["max_steps"] = 1
    res = CliRunner().invoke(app, ["train", str(write_config(tmp_path, cfg)), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    recs = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert recs and "rewards/exact_match/mean" in recs[0]


# ---------------------------------------------------------------------------
# the reward bridge, without training
# ---------------------------------------------------------------------------


class CountingExecutor:
    """Scores in-process and counts batches (the bridge needs only ``score``)."""

    def __init__(self, grader_set: GraderSet, fail: bool = False):
        self.grader_set = grader_set
        self.calls = 0
        self.fail = fail

    def score(self, samples, *, step=None):
        self.calls += 1
        if self.fail:
            raise GraderError("grader 'a' failed on 3 of 4 samples", grader="a")
        outcomes = [{e.id: e.grader.grade([s])[0] for e in self.grader_set} for s in samples]
        rewards = [self.grader_set.combine({k: o.score for k, o in per.items()}) for per in outcomes]
        return BatchResult(outcomes, rewards, {"graders/a/latency_p95": 0.001})


@grader
def is_four(completion: str, answer: str) -> float:
    return float(completion.strip() == answer)


@grader
def short(completion: str) -> float:
    return float(len(completion) < 3)


ROWS = [{"answer": "4"}, {"answer": "5"}]


def test_bridge_scores_each_batch_once_for_all_graders():
    from rft.train.rewards import RewardBridge

    gs = GraderSet([is_four, short])
    ex = CountingExecutor(gs)
    logged: list[tuple[str, float]] = []
    bridge = RewardBridge(gs, ex, rows=ROWS)
    funcs = bridge.reward_funcs()
    # TRL names reward functions by __name__: one per grader id
    assert [f.__name__ for f in funcs] == ["is_four", "short"] and bridge.reward_weights == [1.0, 1.0]
    prompts = [[{"role": "user", "content": "2+2?"}]] * 2
    completions = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "four"}]]
    kw = {"_rft_row": [0, 0], "log_metric": lambda n, v: logged.append((n, v)), "trainer_state": None}
    assert funcs[0](prompts=prompts, completions=completions, **kw) == [1.0, 0.0]
    assert funcs[1](prompts=prompts, completions=completions, **kw) == [1.0, 0.0]
    # both functions served from one scoring call; metrics logged once
    assert ex.calls == 1 and [m for m in logged if not m[0].endswith("/advantage_share")] == [
        ("graders/a/latency_p95", 0.001)
    ]
    # a new batch (new list objects from TRL) is scored again
    funcs[0](prompts=list(prompts), completions=list(completions), **kw)
    assert ex.calls == 2


def test_rollouts_say_why_a_formula_gave_no_reward(tmp_path):
    from rft.scoring import make_executor
    from rft.train.rewards import RewardBridge

    gs = GraderSet([is_four, short], formula="is_four / short")  # short is 0 for "four": division by zero
    with make_executor(gs, "local", inline=True, cache=False) as ex:
        bridge = RewardBridge(gs, ex, rows=ROWS, rollouts_path=tmp_path / "rollouts.jsonl")
        prompts = [[{"role": "user", "content": "2+2?"}]] * 2
        completions = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "four"}]]
        rewards = bridge.reward_funcs()[0](
            prompts=prompts, completions=completions, _rft_row=[0, 0], trainer_state=None
        )
    assert rewards[1] is None
    recs = read_jsonl(tmp_path / "rollouts.jsonl")
    assert "reward_error" not in recs[0]
    assert recs[1]["reward"] is None and recs[1]["reward_error"]["kind"] == "formula_error"


def test_formula_gives_one_combined_reward_plus_logged_graders():
    from rft.train.rewards import RewardBridge

    gs = GraderSet([is_four, short], formula="0.5 * is_four + 0.5 * short")
    bridge = RewardBridge(gs, CountingExecutor(gs), rows=ROWS)
    funcs = bridge.reward_funcs()
    # the formula trains; the graders are logged at weight 0
    assert [f.__name__ for f in funcs] == ["reward", "is_four", "short"] and bridge.reward_weights == [1.0, 0.0, 0.0]
    out = funcs[0](prompts=["p"], completions=["4"], _rft_row=[0])
    assert out == [1.0]


def test_grader_error_propagates_out_of_the_reward_function():
    from rft.train.rewards import RewardBridge

    gs = GraderSet([is_four])
    bridge = RewardBridge(gs, CountingExecutor(gs, fail=True), rows=ROWS)
    with pytest.raises(GraderError, match="failed on 3 of 4"):
        bridge.reward_funcs()[0](prompts=["p"], completions=["4"], _rft_row=[0])


def test_rollouts_file_records_reason_and_error(tmp_path):
    from rft.train.rewards import RewardBridge

    gs = GraderSet([is_four])

    class Fixed(CountingExecutor):
        def score(self, samples, *, step=None):
            per = [
                {"is_four": Outcome(OutcomeKind.GRADER_ERROR, error="boom")},
                {"is_four": Outcome(OutcomeKind.SCORE, 1.0, reason="exact")},
            ]
            return BatchResult(per, [None, 1.0])

    bridge = RewardBridge(gs, Fixed(gs), rows=ROWS, rollouts_path=tmp_path / "r.jsonl")
    bridge.reward_funcs()[0](prompts=["p", "p"], completions=["x", "4"], _rft_row=[0, 0])
    recs = read_jsonl(tmp_path / "r.jsonl")
    assert recs[0]["graders"]["is_four"] == {"kind": "grader_error", "error": "boom"}
    assert recs[1]["graders"]["is_four"] == {"score": 1.0, "kind": "score", "reason": "exact"}


# ---------------------------------------------------------------------------
# the hand-off check
# ---------------------------------------------------------------------------


def _peft(tiny_model: Path, trainable: bool):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_model)), LoraConfig(r=2, target_modules="all-linear")
    )
    if trainable:
        return model
    for p in model.parameters():
        p.requires_grad_(False)  # what loading an adapter without is_trainable=True gives
    assert isinstance(model, PeftModel)
    return model


class _State:
    global_step = 1


def test_frozen_adapter_is_refused(tiny_model):
    from rft.train.callbacks import TrainableCheck

    with pytest.raises(RFTError, match="no trainable parameters"):
        TrainableCheck("rft").on_train_begin(None, _State(), None, model=_peft(tiny_model, trainable=False))


def test_unchanged_parameters_after_a_real_gradient_are_refused(tiny_model):
    from rft.train.callbacks import TrainableCheck

    model = _peft(tiny_model, trainable=True)
    check = TrainableCheck("rft")
    check.on_train_begin(None, _State(), None, model=model)
    # a zero gradient (equal rewards in every group) cannot move the weights: no verdict yet
    check.on_log(None, _State(), None, logs={"grad_norm": 0.0}, model=model)
    assert not check.verified
    with pytest.raises(RFTError, match="did not change"):
        check.on_log(None, _State(), None, logs={"grad_norm": 0.5}, model=model)
    # once the weights move, the check passes
    check2 = TrainableCheck("rft")
    check2.on_train_begin(None, _State(), None, model=model)
    next(p for n, p in model.named_parameters() if "lora_B" in n).data += 0.1
    check2.on_log(None, _State(), None, logs={"grad_norm": 0.5}, model=model)
    assert check2.verified


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("do_sample", [False, True])
def test_generate_greedy_ignores_batching_and_sampling_is_seeded(tiny_model, do_sample):
    from rft.models.resolve import ResolvedModel, load_model
    from rft.train.eval import generate

    model, tok = load_model(ResolvedModel("tiny", tiny_model, kind="tiny"))
    prompts = [[{"role": "user", "content": "What is 2 + 3?"}], [{"role": "user", "content": "Call get_weather"}]]
    # greedy: the batching must not change the text (left padding is right); sampling: the same seed repeats
    a = generate(model, tok, prompts, max_new_tokens=6, do_sample=do_sample, seed=1, progress=False)
    b = generate(
        model,
        tok,
        prompts,
        max_new_tokens=6,
        do_sample=do_sample,
        seed=1,
        progress=False,
        batch_size=2 if do_sample else 1,
    )
    assert len(a) == 2 and all(isinstance(x, str) for x in a)
    assert a == b


def test_summary_counts_errors_and_leaves_not_applicable_out():
    from rft.train.eval import summarize

    gs = GraderSet([is_four, short])
    outcomes = [
        {"is_four": Outcome(OutcomeKind.SCORE, 1.0), "short": Outcome(OutcomeKind.NOT_APPLICABLE)},
        {"is_four": Outcome(OutcomeKind.TIMEOUT, error="slow"), "short": Outcome(OutcomeKind.SCORE, 0.0)},
    ]
    s = summarize(gs, BatchResult(outcomes, [1.0, 0.0]), threshold=1.0)
    # pass rate over rewards: 1 of 2; is_four's mean over its one score, its timeout counted
    assert s["pass_rate"] == 0.5 and s["mean_reward"] == 0.5
    assert s["graders"]["is_four"] == {"mean": 1.0, "pass_rate": 1.0, "scored": 1, "errors": 1}
    assert s["graders"]["short"]["scored"] == 1 and s["graders"]["short"]["mean"] == 0.0
