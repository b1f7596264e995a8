"""The reward-hacking guard: each alarm and each action on scripted curves, the audit flag,
the config checks, the report, and a tiny-model run where the guard rolls back to adapter-best."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import read_jsonl, tiny_config, write_config

from rft.config.sections import GuardSettings
from rft.core.errors import ConfigError
from rft.train.guard import Guard, heldout_quality

# ---------------------------------------------------------------------------
# the pure Guard on scripted curves
# ---------------------------------------------------------------------------


def feed(guard: Guard, logs: list[dict[str, float]]) -> list[tuple[int, str]]:
    """Feed one log record per step (steps 1, 2, …); the (step, kind) of every alarm."""
    fired = []
    for step, rec in enumerate(logs, 1):
        fired += [(a.step, a.kind) for a in guard.observe_train(step, rec)]
    return fired


def test_length_alarm_fires_on_growth_and_on_shrinking_but_not_within_the_bound():
    s = GuardSettings(checks=["length"], train_window=2, length_drift=1.0)  # bound: ×2 either way
    L = "completions/mean_length"
    # 10, 10 early; 25, 25 late: ×2.5 → fires once both windows are full (step 4)
    assert feed(Guard(s), [{L: 10}, {L: 10}, {L: 25}, {L: 25}]) == [(4, "length")]
    # shrinking to a quarter fires too (a grader that pays for brevity is gamed as well)
    assert feed(Guard(s), [{L: 40}, {L: 40}, {L: 10}, {L: 10}]) == [(4, "length")]
    # ×1.9 stays inside the bound
    assert feed(Guard(s), [{L: 10}, {L: 10}, {L: 19}, {L: 19}]) == []


def test_audit_alarm_needs_the_trained_reward_up_and_the_audit_grader_down():
    s = GuardSettings(checks=["audit"], train_window=2, min_reward_rise=0.1, min_audit_drop=0.1)
    A = "rewards/correct/mean"
    hacked = [{"reward": r, A: a} for r, a in [(0.2, 0.6), (0.2, 0.6), (0.5, 0.3), (0.6, 0.2)]]
    g = Guard(s, audit_ids=["correct"])
    assert feed(g, hacked) == [(4, "audit")]
    assert g.alarms[0].values["audit_late"] == pytest.approx(0.25)
    assert "'correct'" in g.alarms[0].message
    # both rising is learning, not hacking
    healthy = [{"reward": r, A: a} for r, a in [(0.2, 0.2), (0.2, 0.2), (0.5, 0.5), (0.6, 0.6)]]
    assert feed(Guard(s, audit_ids=["correct"]), healthy) == []
    # the audit check is off without audit graders
    assert "audit" not in Guard(s).checks


def test_heldout_alarm_needs_train_reward_up_while_heldout_falls_over_the_window():
    s = GuardSettings(checks=["heldout"], window=2, min_reward_rise=0.1, min_heldout_drop=0.1)
    g = Guard(s)
    assert g.observe_heldout(0, 0.5) == []  # the stage's start (pre-RFT eval)
    feed(g, [{"reward": 0.2}, {"reward": 0.2}])
    assert g.observe_heldout(2, 0.45) == []  # a window needs window + 1 evaluations
    for step in (3, 4):
        g.observe_train(step, {"reward": 0.6})
    alarms = g.observe_heldout(4, 0.3)  # 0.5 → 0.3 held-out while the train reward went 0.2 → 0.6
    assert [(a.step, a.kind) for a in alarms] == [(4, "heldout")]
    assert alarms[0].values == pytest.approx(
        {"reward_early": 0.2, "reward_late": 0.6, "heldout_early": 0.5, "heldout_late": 0.3}
    )


def test_heldout_falling_while_train_reward_falls_too_is_no_alarm():
    g = Guard(GuardSettings(checks=["heldout"], window=1, min_reward_rise=0.1, min_heldout_drop=0.1))
    g.observe_train(1, {"reward": 0.6})
    g.observe_heldout(1, 0.5)
    g.observe_train(2, {"reward": 0.3})
    assert g.observe_heldout(2, 0.2) == []  # the whole run got worse: not reward hacking
    assert "heldout" not in Guard(GuardSettings(), heldout=False).checks  # no in-run eval: off


def test_an_alarm_fires_once_while_its_condition_holds_and_again_after_it_cleared():
    s = GuardSettings(checks=["length"], train_window=1, length_drift=1.0)
    L = "completions/mean_length"
    # early = step 1 (10); late = the last step: 30 (fires), 30 (holds), 12 (clears), 40 (fires again)
    assert feed(Guard(s), [{L: 10}, {L: 30}, {L: 30}, {L: 12}, {L: 40}]) == [(2, "length"), (5, "length")]


@pytest.mark.parametrize("action", ["warn", "stop", "rollback"])
def test_each_action_is_carried_by_the_alarm_and_its_record(action):
    g = Guard(GuardSettings(checks=["length"], train_window=1, action=action))
    feed(g, [{"completions/mean_length": 10}, {"completions/mean_length": 50}])
    (alarm,) = g.alarms
    rec = alarm.to_record()
    assert rec["stage"] == "rft" and rec["step"] == 2 and rec["guard/alarm"] == "length"
    assert rec["guard/action"] == action and rec["guard/length_late"] == 50


def test_non_step_records_and_nan_values_are_ignored():
    g = Guard(GuardSettings(checks=["length"], train_window=1))
    assert g.observe_train(3, {"train_runtime": 12.0}) == []
    assert g.observe_train(3, {"completions/mean_length": float("nan")}) == []
    assert g.train == []


def test_state_round_trip_drops_what_came_after_the_checkpoint():
    s = GuardSettings(checks=["length", "heldout"], train_window=1, window=1)
    g = Guard(s)
    feed(g, [{"completions/mean_length": 10, "reward": 0.1}, {"completions/mean_length": 50, "reward": 0.1}])
    g.observe_heldout(2, 0.4)
    g.observe_train(3, {"completions/mean_length": 50, "reward": 0.2})
    state = json.loads(json.dumps(g.state_dict()))  # it goes through a JSON file
    back = Guard(s)
    back.load_state_dict(state, upto=2)
    assert [r["step"] for r in back.train] == [1, 2] and back.heldout == [(2, 0.4)]
    assert [(a.step, a.kind) for a in back.alarms] == [(2, "length")]


def test_heldout_quality_reads_pass_rate_mean_reward_or_a_grader():
    summary = {"pass_rate": 0.5, "mean_reward": 0.7, "graders": {"correct": {"mean": 0.25}}}
    assert [heldout_quality(summary, k) for k in ("pass_rate", "mean_reward", "correct")] == [0.5, 0.7, 0.25]
    assert heldout_quality({"pass_rate": None}, "pass_rate") is None


# ---------------------------------------------------------------------------
# the trainer side: actions on a control object, records, checkpoint state
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "stops"), [("warn", False), ("stop", True), ("rollback", True)])
def test_guard_callback_records_alarms_and_stops_for_stop_and_rollback(tmp_path, action, stops):
    from rft.train.callbacks import GUARD_STATE, GuardCallback

    lines: list[str] = []
    cb = GuardCallback(
        Guard(GuardSettings(checks=["length"], train_window=1, action=action)), tmp_path / "m.jsonl", lines.append
    )
    control = SimpleNamespace(should_training_stop=False)
    for step, n in ((1, 10), (2, 50)):
        cb.on_log(SimpleNamespace(), SimpleNamespace(global_step=step), control, logs={"completions/mean_length": n})
    assert control.should_training_stop is stops
    assert (cb.stopped is not None) is stops
    (rec,) = read_jsonl(tmp_path / "m.jsonl")
    assert rec["guard/alarm"] == "length" and rec["guard/action"] == action and rec["step"] == 2
    assert lines and "guard alarm (length) at rft step 2" in lines[0]
    # the state goes into the checkpoint directory and comes back on resume
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    cb.on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=2), control)
    again = GuardCallback(Guard(GuardSettings(checks=["length"], train_window=1)), tmp_path / "m.jsonl")
    again.restore(ckpt)
    assert (ckpt / GUARD_STATE).exists() and [r["step"] for r in again.guard.train] == [1, 2]


# ---------------------------------------------------------------------------
# the audit flag and the config
# ---------------------------------------------------------------------------


def _grader_set(entries: list[Any], formula: str | None = None) -> Any:
    from rft.plugins import grader_set_from_config

    cfg: dict[str, Any] = {"graders": entries}
    if formula:
        cfg["formula"] = formula
    return grader_set_from_config(cfg)


def test_audit_graders_default_to_weight_0_and_refuse_any_other():
    gs = _grader_set([{"name": "exact_match"}, {"name": "think_format", "audit": True}])
    assert gs.audit_ids == ["think_format"] and gs["think_format"].weight == 0
    with pytest.raises(ConfigError, match=r"audit grader.*weight 0.5.*set `weight: 0`") as err:
        _grader_set([{"name": "exact_match"}, {"name": "think_format", "audit": True, "weight": 0.5}])
    assert err.value.key == "graders[1].weight"
    with pytest.raises(ConfigError, match="`audit` must be true or false"):
        _grader_set([{"name": "think_format", "audit": "yes"}])
    with pytest.raises(ConfigError, match="formula .* uses the audit grader 'think_format'"):
        _grader_set(
            [{"name": "exact_match"}, {"name": "think_format", "audit": True}], formula="exact_match + think_format"
        )


def _raw(**extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": "tiny",
        "data": {"train": "t.jsonl"},
        "graders": ["exact_match"],
        "stages": {"rft": {}},
    }
    raw.update(extra)
    return raw


def test_guard_config_checks_name_the_key_and_the_fix():
    from rft.config import parse_config

    cfg = parse_config(_raw(guard={}), check_trl=False)
    assert cfg.guard is not None and cfg.guard.action == "warn" and cfg.to_dict()["guard"]["window"] == 2
    assert parse_config(_raw(), check_trl=False).guard is None  # absent: no guard
    with pytest.raises(ConfigError, match="needs held-out evaluations during RFT; set eval.every_steps") as err:
        parse_config(_raw(guard={"action": "rollback"}), check_trl=False)
    assert err.value.key == "guard.action"
    with pytest.raises(ConfigError, match="eval.enabled is false"):
        parse_config(_raw(eval={"enabled": False, "every_steps": 2}), check_trl=False)
    with pytest.raises(ConfigError, match="'lenght' is not valid"):
        parse_config(_raw(guard={"checks": ["lenght"]}), check_trl=False)
    with pytest.raises(ConfigError, match="unknown guard check 'lenght'"):
        GuardSettings(checks=["lenght"])


def test_best_by_must_name_a_metric_or_a_grader(tmp_path):
    from rft.config import parse_config
    from rft.train.pipeline import make_plan

    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(20)))
    raw = _raw(eval={"every_steps": 2, "best_by": "exact_mach"}, guard={})
    raw["data"] = {"train": str(data), "eval_size": 4}
    with pytest.raises(ConfigError, match="did you mean 'exact_match'") as err:
        make_plan(parse_config(raw, check_trl=False))
    assert err.value.key == "eval.best_by"
    raw["eval"]["best_by"] = "exact_match"
    plan = make_plan(parse_config(raw, check_trl=False))
    assert "guard: the audit check needs a grader with `audit: true`; it is off" in plan.notes
    assert plan.to_dict()["eval"]["every_steps"] == 2


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------


def test_report_plots_train_vs_heldout_with_informative_share_and_alarms(tmp_path):
    from rft.train.report import write_report

    recs: list[dict[str, Any]] = [{"stage": "rft", "step": 0, "eval/quality": 0.5, "eval/best_by": "pass_rate"}]
    for step in range(1, 7):
        recs.append(
            {
                "stage": "rft",
                "step": step,
                "loss": 0.0,
                "reward": 0.1 * step,
                "signal/informative_share": 0.5,
                "graders/length/advantage_share": 0.8,
            }
        )
        if step % 2 == 0:
            recs.append({"stage": "rft", "step": step, "eval/quality": 0.5 - 0.1 * step, "eval/best_by": "pass_rate"})
    alarm = Guard(GuardSettings(checks=["length"], train_window=1, action="rollback"))
    feed(alarm, [{"completions/mean_length": 5}] * 3 + [{"completions/mean_length": 40}])
    recs.append(alarm.alarms[0].to_record())
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    report = write_report(tmp_path).read_text()
    assert (tmp_path / "signal.png").stat().st_size > 1000
    assert "![signal](signal.png)" in report and "## Training signal and guard" in report
    assert "| 4 | length | rollback |" in report
    assert "`signal/informative_share`" in report  # the dynamic-sampling key wins over TRL's
    assert "step 0: 0.500, step 2: 0.300, step 4: 0.100" in report  # the held-out points, listed
    assert "| length | 0.800 |" in report  # per-grader contribution to the advantage, when logged


# ---------------------------------------------------------------------------
# a tiny-model run: the audit alarm fires, rollback makes adapter/ the best held-out adapter
# ---------------------------------------------------------------------------

GAMEABLE_GRADERS = '''
import rft


@rft.grader
def rising(completion: str, step=None) -> float:
    """The trained reward: goes up with the step whatever the model does (a grader being gamed);
    a little length noise gives the groups a non-zero spread, so the adapter trains."""
    return 0.1 * (step or 0) + 0.001 * min(len(completion), 20)


@rft.grader
def falling(step=None) -> float:
    """The audit grader: goes down with the step in training; constant on held-out rows (no step)."""
    return 0.5 if step is None else max(0.0, 1.0 - 0.1 * step)


@rft.hookimpl
def rft_register_graders(register):
    register(rising)
    register(falling)
'''


def _gameable_rft_config(tmp_path):
    """A tiny-model RFT-only run trained on `rising` with `falling` as its audit grader."""
    from rft.models.resolve import create_tiny_model

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model_dir = create_tiny_model(tmp_path / "model")
    (tmp_path / "gameable.py").write_text(GAMEABLE_GRADERS)
    cfg = tiny_config(tmp_path, model_dir)
    cfg["graders"] = {
        "plugins": [str(tmp_path / "gameable.py")],
        "graders": [{"name": "rising", "weight": 1.0}, {"name": "falling", "audit": True}],
    }
    cfg["scoring"].update(inline=True, cache=False)
    del cfg["stages"]["sft"]
    return cfg


def _train(tmp_path, cfg):
    from typer.testing import CliRunner

    from rft.cli.main import app

    return CliRunner().invoke(app, ["train", str(write_config(tmp_path, cfg)), "--no-progress"])


@pytest.mark.slow
def test_rollback_on_a_tiny_model_keeps_the_best_heldout_adapter(tmp_path):
    cfg = _gameable_rft_config(tmp_path)
    cfg["stages"]["rft"]["trl"].update(max_steps=8, save_steps=2)
    cfg["eval"].update(every_steps=2, best_by="falling", pass_threshold=0.5)
    cfg["guard"] = {"action": "rollback", "checks": ["audit"], "train_window": 2}
    res = _train(tmp_path, cfg)
    assert res.exit_code == 0, res.output + repr(res.exception)
    run = tmp_path / "run"
    # training steps 1..4 score with step 0..3: reward 0.0 → 0.3 (+ ≤ 0.02 noise) while the audit grader goes
    # 1.0 → 0.7; means of the first and last 2 steps: reward +0.2, audit -0.2 → the alarm at step 4 stops the stage
    metrics = read_jsonl(run / "metrics.jsonl")
    (alarm,) = [r for r in metrics if r.get("guard/alarm")]
    assert alarm["step"] == 4 and alarm["guard/alarm"] == "audit" and alarm["guard/action"] == "rollback"
    assert max(r["step"] for r in metrics if r["stage"] == "rft" and "loss" in r) == 4
    done = json.loads((run / "rft" / "DONE").read_text())
    assert done["stopped_by"]["kind"] == "audit" and done["final_adapter"] == "adapter-best"
    # held-out evaluations at the start (the base eval), steps 2 and 4; all tie (0.5), the first is kept
    assert [r["step"] for r in metrics if "eval/quality" in r] == [0, 2, 4]
    best = json.loads((run / "adapter-best" / "rft-best.json").read_text())
    assert best["step"] == done["best_step"] == 0 and best["quality"] == 0.5
    # adapter/ is adapter-best/, not the last (rft/adapter) one
    same = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert same == (run / "adapter-best" / "adapter_model.safetensors").read_bytes()
    assert same != (run / "rft" / "adapter" / "adapter_model.safetensors").read_bytes()
    results = json.loads((run / "eval.json").read_text())
    assert results["rft"]["adapter"] == "adapter-best" and results["rft"]["step"] == 0
    report = (run / "report.md").read_text()
    assert "The guard stopped RFT at step 4 (audit); `adapter/` is `adapter-best/` (step 0)" in report
    assert (run / "signal.png").exists() and "guard alarm (audit) at rft step 4" in res.output


@pytest.mark.slow
def test_warn_trains_on_and_in_run_eval_keeps_adapter_best_next_to_adapter(tmp_path):
    cfg = _gameable_rft_config(tmp_path)
    cfg["stages"]["rft"]["trl"].update(max_steps=5, save_steps=10)
    cfg["eval"].update(every_steps=2)
    cfg["guard"] = {"checks": ["audit"], "train_window": 2}  # action warn
    res = _train(tmp_path, cfg)
    assert res.exit_code == 0, res.output + repr(res.exception)
    run = tmp_path / "run"
    metrics = read_jsonl(run / "metrics.jsonl")
    # the alarm is recorded, training goes on to max_steps, adapter/ is the last adapter
    assert [(r["step"], r["guard/action"]) for r in metrics if r.get("guard/alarm")] == [(4, "warn")]
    assert max(r["step"] for r in metrics if r["stage"] == "rft" and "loss" in r) == 5
    assert "stopped_by" not in json.loads((run / "rft" / "DONE").read_text())
    last = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert last == (run / "rft" / "adapter" / "adapter_model.safetensors").read_bytes()
    # held-out evaluations at the start, every 2 steps and at the last step (5); the best adapter is kept
    evals = [r for r in metrics if "eval/quality" in r]
    assert [r["step"] for r in evals] == [0, 2, 4, 5]
    best = json.loads((run / "adapter-best" / "rft-best.json").read_text())
    assert best["quality"] == max(r["eval/quality"] for r in evals) and best["best_by"] == "pass_rate"
    assert (run / "adapter-best" / "adapter_config.json").exists()
    # the final eval is the in-run eval of the last step, not a second generation pass
    results = json.loads((run / "eval.json").read_text())
    assert results["rft"]["pass_rate"] == evals[-1]["eval/pass_rate"]
    assert "rft step 2: held-out pass_rate" in res.output
