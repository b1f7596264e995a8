"""`rft advise --pilot`: arms at an equal budget, the winner drives the advice and the written config;
the learnable band; the cost estimate; the run report's RFT-over-SFT statement."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
import yaml
from helpers import TINY_DATA
from typer.testing import CliRunner

from rft.advise.advisor import Advice, advice_schema, advise
from rft.advise.checks import Verifiability
from rft.advise.cost import estimate_cost
from rft.advise.pilots import PilotArm, PilotBudget, PilotResult, apply_pilots, parse_budget, pilot_arms
from rft.advise.probe import ProbeOptions, ProbeResult, learnable_band, run_probe
from rft.advise.rules import decide
from rft.advise.stats import dataset_stats
from rft.advise.writer import build_config
from rft.cli.main import app
from rft.core.errors import ConfigError
from rft.plugins import grader_set_from_file
from rft.train.report import rft_over_sft, write_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def sums(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} + {b}?"},
                    {"role": "assistant", "content": str(a + b)},
                ],
                "answer": str(a + b),
            }
        )
    return rows


# ---------------------------------------------------------------------------
# the budget
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "amount"),
    [("120", "seconds", 120), ("120s", "seconds", 120), ("2m", "seconds", 120), ("1.5 min", "seconds", 90),
     ("20000 tokens", "tokens", 20000), ("4 steps", "steps", 4)],
)  # fmt: skip
def test_pilot_budget_units(text, kind, amount):
    assert parse_budget(text) == PilotBudget(kind, amount)


@pytest.mark.parametrize("text", ["", "fast", "0s", "-5", "10 parsecs", "2.5 steps"])
def test_a_bad_pilot_budget_names_the_option_and_the_forms(text):
    with pytest.raises(ConfigError, match=r"--pilot-budget.*(seconds|whole)"):
        parse_budget(text)


def test_sft_then_rft_splits_the_budget_and_spends_all_of_it():
    both = ("sft", "rft")
    assert [PilotBudget("steps", 8).share(s, both) for s in both] == [2, 6]
    assert [PilotBudget("steps", 2).share(s, both) for s in both] == [1, 1]
    assert [PilotBudget("seconds", 120).share(s, both) for s in both] == [30, 90]
    assert PilotBudget("seconds", 120).share("rft", ("rft",)) == 120


def test_the_budget_callback_stops_training_when_the_time_is_spent(monkeypatch):
    from rft.advise import pilots

    seen: list[float] = []
    cb = pilots._budget_callback(PilotBudget("seconds", 10), 10.0, seen.append)
    clock = iter([0.0, 4.0, 8.0, 12.0])
    monkeypatch.setattr(pilots.time, "perf_counter", lambda: next(clock))
    control = SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(None, None, control)
    for step in (1, 2):
        cb.on_step_end(None, SimpleNamespace(global_step=step), control)
        assert not control.should_training_stop
    cb.on_step_end(None, SimpleNamespace(global_step=3), control)
    assert control.should_training_stop and cb.stopped and cb.steps == 3
    assert seen == [0.4, 0.8, 1.0]
    assert cb.median_step() == 4.0


def test_the_budget_callback_counts_tokens_from_the_trainer_logs():
    from rft.advise import pilots

    cb = pilots._budget_callback(PilotBudget("tokens", 100), 100.0, None)
    control = SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(None, None, control)
    cb.on_log(None, None, control, logs={"loss": 1.0, "num_tokens": 60})
    assert not control.should_training_stop
    cb.on_log(None, None, control, logs={"loss": 1.0, "num_tokens": 120})
    assert control.should_training_stop and cb.tokens == 120


# ---------------------------------------------------------------------------
# the learnable band
# ---------------------------------------------------------------------------


def test_band_shares_and_group_size():
    band = learnable_band([0, 0, 0, 1, 2, 3, 4, 4], 4)
    assert (band.prompts, band.samples_per_prompt) == (8, 4)
    assert band.pass_rates == [0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert (band.mixed_share, band.zero_share, band.one_share) == (0.375, 0.375, 0.25)
    # the expected share of prompts with mixed outcomes grows with G and saturates at the mixed share
    sig = band.signal_by_group_size
    assert sig["2"] < sig["4"] < sig["8"] <= sig["16"] <= band.mixed_share
    assert band.num_generations == 8  # the smallest G within 90% of the best
    assert learnable_band([0, 0, 4], 4).num_generations is None  # no prompt has a signal at any G
    with pytest.raises(ConfigError, match=r"\[0, 4\]"):
        learnable_band([5], 4)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rft.models.resolve import create_tiny_model, load_model, resolve_model

    path = create_tiny_model(tmp_path_factory.mktemp("pilots_tiny") / "tiny")
    model, tok = load_model(resolve_model(str(path)))
    return path, model, tok


def test_band_on_a_scripted_probe(tmp_path, tiny):
    """A grader that passes by row, whatever the completion: every prompt's K samples all pass or all fail."""
    path, model, tok = tiny
    (tmp_path / "scripted.py").write_text(
        "import rft\n\n@rft.grader\ndef by_row(completion: str, answer: str) -> float:\n"
        "    return 1.0 if answer == 'yes' else 0.0\n\n"
        "@rft.hookimpl\ndef rft_register_graders(register):\n    register(by_row)\n"
    )
    (tmp_path / "g.yaml").write_text("plugins: [scripted.py]\ngraders:\n  - name: by_row\n")
    rows = [{"prompt": f"Question {i}?", "answer": "yes" if i < 3 else "no"} for i in range(8)]
    opts = ProbeOptions(model=str(path), rows=8, samples=3, max_new_tokens=4, pass_score=1.0)
    p = run_probe(rows, grader_set_from_file(tmp_path / "g.yaml"), opts, model=model, tokenizer=tok)
    assert p.band is not None
    assert sorted(p.band.pass_rates) == [0.0] * 5 + [1.0] * 3
    assert (p.band.mixed_share, p.band.zero_share, p.band.one_share) == (0.0, 0.625, 0.375)
    assert p.band.num_generations is None
    assert p.seconds_per_completion is not None and p.seconds_per_completion > 0
    assert p.to_dict()["band"]["zero_share"] == 0.625


def _math_rows(n: int) -> list[dict]:
    return [{"prompt": f"Solve step by step: what is {i} * 3 + 1?", "answer": str(i * 3 + 1)} for i in range(n)]


def test_a_probe_without_mixed_outcomes_turns_rft_into_a_warm_start():
    stats = dataset_stats(_math_rows(200))
    band = learnable_band([0] * 13 + [4] * 3, 4)  # pass@1 19%: "learnable", yet no prompt has a signal
    probe = ProbeResult(pass_at_1=0.19, pass_at_k=0.19, zero_variance_share=1.0, rows=16, samples_per_row=4, band=band)
    steps = decide(stats, Verifiability(verifiable=True, configured=True), probe)
    assert [s.rule for s in steps][-2:] == ["probe/learnable", "probe/band"]
    assert steps[-1].recommendation == "sft_then_rft"
    assert steps[-1].numbers["band_zero_share"] == 0.8125
    # a probe with mixed outcomes keeps RFT
    mixed = learnable_band([1, 2, 3, 2] * 4, 4)
    probe.band = mixed
    assert decide(stats, Verifiability(verifiable=True, configured=True), probe)[-1].rule == "probe/learnable"


# ---------------------------------------------------------------------------
# the winner drives the advice, the written config and the cost (no training)
# ---------------------------------------------------------------------------


def _arm(name: str, pass_rate: float, step_s: dict[str, float | None]) -> PilotArm:
    return PilotArm(
        arm=name,
        pass_rate=pass_rate,
        mean_reward=pass_rate * 1.5,
        steps={s: 10 for s in step_s},
        step_s=step_s,
        tokens={s: None for s in step_s},
        train_s=60.0,
        wall_s=80.0,
        stopped_by_budget=True,
    )


def _advice_for(tmp_path: Path) -> tuple[Advice, object]:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sums(200)))
    shutil.copy(TINY_DATA / "graders.py", tmp_path / "graders.py")
    (tmp_path / "graders.yaml").write_text("plugins: [graders.py]\ngraders:\n  - name: exact_match\n")
    gs = grader_set_from_file(tmp_path / "graders.yaml")
    rows = sums(200)
    a = advise(rows, grader_set=gs, inputs={"data": str(data), "graders": str(tmp_path / "graders.yaml")})
    return a, gs


def test_the_measured_winner_becomes_the_recommendation_and_the_config(tmp_path):
    advice, gs = _advice_for(tmp_path)
    rule = advice.recommendation
    winner = "sft" if rule != "sft" else "rft"
    arms = {
        "sft": _arm("sft", 0.8 if winner == "sft" else 0.2, {"sft": 0.5}),
        "rft": _arm("rft", 0.8 if winner == "rft" else 0.2, {"rft": 2.0}),
        "sft_then_rft": _arm("sft_then_rft", 0.5, {"sft": 0.5, "rft": 2.0}),
    }
    result = PilotResult(
        model="tiny",
        budget=PilotBudget("seconds", 60),
        eval_rows=20,
        arms=arms,
        winner=winner,
        rule_recommendation=rule,
        agrees=False,
        base={"pass_rate": 0.0, "mean_reward": 0.0},
    )
    apply_pilots(advice, result)
    assert advice.recommendation == winner
    assert advice.steps[-1].rule == "pilot/measured" and advice.branch.endswith("pilot/measured")
    assert f"the rules recommended {rule}, the measurement disagrees" in advice.steps[-1].because
    assert any("the recommendation follows the measurement" in w for w in advice.warnings)
    cfg = build_config(advice, tmp_path / "out.yaml", grader_set=gs)
    assert set(cfg["stages"]) == {winner}
    # no --eval: an eval split is held out; the graders are the ones given
    assert cfg["data"]["eval_size"] == 0.1 and cfg["graders"] == "graders.yaml"
    cost = estimate_cost(advice, grader_set=gs)
    assert cost is not None and cost.recommendation == winner and cost.missing == []
    stage = cost.stages[winner]
    assert stage.step_s == arms[winner].step_s[winner] and stage.total_s == pytest.approx(stage.steps * stage.step_s)
    assert cost.total_s == pytest.approx(stage.total_s) and "estimate" in cost.note
    jsonschema.validate(json.loads(json.dumps(advice.to_dict())), advice_schema())


def test_a_lead_within_the_noise_of_the_held_out_rows_is_flagged(tmp_path):
    advice, _ = _advice_for(tmp_path)
    arms = {"sft": _arm("sft", 0.01, {"sft": 0.5}), "rft": _arm("rft", 0.0, {"rft": 2.0})}
    close = PilotResult(
        model="m", budget=PilotBudget("seconds", 60), eval_rows=100, arms=arms, winner="sft",
        rule_recommendation="sft", agrees=True,
    )  # fmt: skip
    apply_pilots(advice, close)
    assert any("within the noise of 100 rows" in w for w in advice.warnings)
    advice2, _ = _advice_for(tmp_path)
    arms["sft"] = _arm("sft", 0.7, {"sft": 0.5})
    apply_pilots(advice2, PilotResult(**{**close.__dict__, "arms": arms}))
    assert not any("noise" in w for w in advice2.warnings)


def test_cost_from_the_probe_alone_estimates_rft_and_names_what_is_unmeasured(tmp_path):
    advice, gs = _advice_for(tmp_path)
    advice.probe = ProbeResult(model="m", rows=4, samples_per_row=4, max_new_tokens=8, seconds_per_completion=0.1)
    advice.recommendation = "sft_then_rft"
    cost = estimate_cost(advice, grader_set=gs)
    assert cost is not None and cost.missing == ["sft"] and cost.total_s is None
    rft = cost.stages["rft"]
    assert rft.step_s is not None and rft.basis is not None and rft.basis.startswith("probe")
    assert "--pilot" in cost.note


def test_pilot_arms_follow_what_the_data_allows(tmp_path):
    advice, gs = _advice_for(tmp_path)
    assert pilot_arms(advice, gs) == (["sft", "rft", "sft_then_rft"], {})
    arms, skipped = pilot_arms(advice, None)
    assert arms == ["sft"] and set(skipped) == {"rft", "sft_then_rft"}


# ---------------------------------------------------------------------------
# rft advise --pilot on a tiny model, end to end
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piloted(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("pilot_cli")
    shutil.copy(TINY_DATA / "graders.py", d / "graders.py")
    (d / "graders.yaml").write_text(
        "plugins: [graders.py]\ngraders:\n  - name: exact_match\n    weight: 1.0\n  - name: brevity\n    weight: 0.5\n"
    )
    shutil.copy(TINY_DATA / "train.jsonl", d / "train.jsonl")
    shutil.copy(TINY_DATA / "eval.jsonl", d / "eval.jsonl")
    path = tiny[0]
    res = invoke(
        "advise", d / "train.jsonl", "--eval", d / "eval.jsonl", "--graders", d / "graders.yaml",
        "--probe-model", f"tiny:{path}", "--probe-rows", "2", "--probe-samples", "2", "--probe-max-tokens", "4",
        "--pilot", "--pilot-budget", "2 steps", "--pilot-dir", d / "pilots", "--pilot-eval-rows", "4",
        "--json", "--write-config", d / "winner.yaml",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    return d, json.loads(res.stdout)


def test_pilots_run_all_three_arms_with_the_json_shape(piloted):
    d, obj = piloted
    jsonschema.validate(obj, advice_schema())
    pilot = obj["pilot"]
    assert set(pilot["arms"]) == {"sft", "rft", "sft_then_rft"}
    assert pilot["budget"] == {"kind": "steps", "amount": 2}
    for name, arm in pilot["arms"].items():
        assert arm["arm"] == name and arm["pass_rate"] is not None and arm["mean_reward"] is not None
        assert sum(arm["steps"].values()) == 2  # an equal budget: 2 optimizer steps per arm
        assert Path(arm["run_dir"]).is_dir() and (Path(arm["run_dir"]) / "eval.json").is_file()
    assert pilot["arms"]["sft_then_rft"]["steps"] == {"sft": 1, "rft": 1}
    assert pilot["eval_rows"] == 4 and pilot["base"] is not None


def test_the_winner_drives_the_recommendation_and_the_written_config(piloted):
    d, obj = piloted
    winner = obj["pilot"]["winner"]
    assert obj["recommendation"] == winner
    assert obj["steps"][-1]["rule"] == "pilot/measured"
    assert obj["pilot"]["agrees"] == (obj["pilot"]["rule_recommendation"] == winner)
    assert obj["config"] == {"path": str(d / "winner.yaml"), "error": None}
    cfg = yaml.safe_load((d / "winner.yaml").read_text())
    assert set(cfg["stages"]) == {"sft_then_rft": {"sft", "rft"}}.get(winner, {winner})
    assert cfg["graders"] == "graders.yaml" and cfg["data"]["eval"] == "eval.jsonl"
    # scaled to the full data, not the pilot's 2 steps
    assert all(s["trl"]["max_steps"] >= 10 for s in cfg["stages"].values())
    assert "# pilots at 2 steps each" in (d / "winner.yaml").read_text()
    # every stage's step time was measured by a pilot
    assert obj["cost"]["missing"] == [] and obj["cost"]["total_s"] is not None


def test_advise_warns_when_the_full_run_trains_far_longer_than_the_pilots(piloted, tiny, monkeypatch):
    """Measured on the flagship: a 2-minute pilot picked SFT, a 6-minute one SFT → RFT."""
    from rft.advise import pilots

    d, _ = piloted

    def measured(advice, grader_set, *, budget, model, directory, eval_rows, progress):
        slow = {"sft": 30.0, "rft": 80.0}  # seconds per step, as on a model far larger than the tiny one
        arms = {"sft": _arm("sft", 0.6, {"sft": slow["sft"]}), "sft_then_rft": _arm("sft_then_rft", 0.3, slow)}
        return PilotResult(
            model=model, budget=budget, eval_rows=100, arms=arms, winner="sft",
            rule_recommendation=advice.recommendation, agrees=advice.recommendation == "sft",
        )  # fmt: skip

    monkeypatch.setattr(pilots, "run_pilots", measured)
    res = invoke(
        "advise", d / "train.jsonl", "--eval", d / "eval.jsonl", "--graders", d / "graders.yaml",
        "--probe-model", f"tiny:{tiny[0]}", "--probe-rows", "2", "--probe-samples", "2", "--probe-max-tokens", "4",
        "--pilot", "--pilot-budget", "60s", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    # SFT won, but the SFT → RFT arm's full run (its written config at the pilots' step times: at least
    # RFT_MIN_STEPS RFT steps of 80 s) is far longer than the pilots: the advice says the pilots may mislead
    from rft.advise.writer import RFT_MIN_STEPS

    (short,) = [w for w in obj["warnings"] if w.startswith("the pilots trained 60 s per arm")]
    found = re.search(r"a full sft_then_rft run is estimated at (\d+) s", short)
    assert found is not None and int(found.group(1)) >= RFT_MIN_STEPS * 80
    assert f"--pilot-budget about {found.group(1)}s" in short


def test_the_written_winner_config_passes_dry_run(piloted):
    d, _ = piloted
    res = invoke("train", d / "winner.yaml", "--dry-run")
    assert res.exit_code == 0, res.output


def test_the_pilot_table_and_the_rules_are_printed(piloted, capsys):
    from rft.cli.advise import render

    _, obj = piloted
    render(obj)
    out = capsys.readouterr().out
    assert "pilots on" in out and "held-out pass rate" in out and "sft_then_rft" in out
    assert "measured winner" in out and "rule-based recommendation" in out
    assert "estimated full-run training time" in out and "estimate" in out


def test_pilot_needs_a_model_and_graders(tmp_path):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in sums(20)))
    res = invoke("advise", data, "--pilot")
    assert res.exit_code != 0 and "--probe-model" in res.output


# ---------------------------------------------------------------------------
# the run report: what RFT added over the SFT checkpoint
# ---------------------------------------------------------------------------


def _report(tmp_path: Path, sft: dict, rft: dict) -> str:
    (tmp_path / "eval.json").write_text(json.dumps({"base": {"pass_rate": 0.0, "mean_reward": 0.0, "graders": {}, "n": 10},
                                                      "sft": {**sft, "graders": {}, "n": 10},
                                                      "rft": {**rft, "graders": {}, "n": 10}}))  # fmt: skip
    return write_report(tmp_path).read_text()


def test_report_states_what_rft_added_over_sft(tmp_path):
    text = _report(tmp_path, {"pass_rate": 0.4, "mean_reward": 0.8}, {"pass_rate": 0.6, "mean_reward": 1.1})
    assert "## What RFT added over the SFT checkpoint" in text
    assert "pass rate +0.200, mean reward +0.300" in text and "0.400 → 0.600" in text
    assert "Warning" not in text


@pytest.mark.parametrize(("pass_rate", "reward"), [(0.4, 0.8), (0.3, 0.7)])
def test_report_warns_when_rft_added_nothing(tmp_path, pass_rate, reward):
    text = _report(tmp_path, {"pass_rate": 0.4, "mean_reward": 0.8}, {"pass_rate": pass_rate, "mean_reward": reward})
    assert "**Warning: RFT added nothing over the SFT checkpoint**" in text


def test_no_statement_without_both_stages():
    assert rft_over_sft({"base": {"pass_rate": 0.1}, "rft": {"pass_rate": 0.5}}) == []


@pytest.mark.parametrize("text", ["90s", "20000 tokens"])
def test_a_time_or_token_budget_not_the_written_steps_ends_every_arm(tmp_path, text):
    # SFT alone must be free to spend its whole budget (more epochs): the fair comparison
    from rft.advise.pilots import PILOT_STEP_CAP, _arm_config

    advice, gs = _advice_for(tmp_path)
    for arm in ("sft", "sft_then_rft"):
        cfg = _arm_config(
            advice, arm, tmp_path / "p", grader_set=gs, model="tiny", budget=parse_budget(text), eval_rows=4
        )
        stages = [s for s in (cfg.sft, cfg.rft) if s is not None]
        assert stages and all(s.trl["max_steps"] >= PILOT_STEP_CAP for s in stages)
