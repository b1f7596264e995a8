"""`rft view` on a real tiny `rft train` run, and the trackers pass-through.

One tiny run (SFT 2 steps → RFT 2 steps, seconds on a CPU) with
``stages.rft.trl.report_to: tensorboard``: the viewer's API shows what the run wrote, and
TensorBoard (offline, event files on disk) received TRL's per-grader rewards and rftkit's
grader metrics (latency, error rate) through TRL's logging.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

from rft.cli.main import app
from rft.view import create_app

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    tmp = tmp_path_factory.mktemp("view_train")
    model = create_tiny_model(tmp / "tiny")
    cfg = tiny_config(tmp, model)
    cfg["stages"]["rft"]["trl"]["report_to"] = "tensorboard"
    res = CliRunner().invoke(app, ["train", str(write_config(tmp, cfg)), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return tmp / "run"


def test_the_viewer_reads_a_real_run(tracked_run):
    from fastapi.testclient import TestClient

    c = TestClient(create_app([tracked_run]))
    info = c.get("/api/runs").json()[0]
    assert info["finished"] and info["graders"] == ["exact_match", "brevity"]
    rollouts = read_jsonl(tracked_run / "rollouts.jsonl")
    page = c.get("/api/runs/0/groups", params={"limit": 200}).json()
    # 2 steps × 2 prompts, each a group of num_generations = 2 completions
    assert page["lines"] == len(rollouts) == 8 and page["total"] == 4
    assert all(g["n"] == 2 for g in page["groups"])
    first = page["groups"][0]["completions"][0]
    assert first["completion"] == rollouts[0]["completion"][:600]
    assert first["graders"]["brevity"]["score"] == rollouts[0]["graders"]["brevity"]["score"]
    steps = c.get("/api/runs/0/steps").json()
    logged = {r["step"] for r in read_jsonl(tracked_run / "metrics.jsonl") if r["stage"] == "rft" and "reward" in r}
    assert {s["logged_step"] for s in steps} == logged  # a rollout step's rewards are logged one step later
    ev = c.get("/api/runs/0/eval").json()
    assert ev["phases"] == ["base", "sft", "rft"] and len(ev["rows"]) == 4
    assert ev["summary"]["rft"] == {
        k: json.loads((tracked_run / "eval.json").read_text())["rft"][k]
        for k in ("n", "mean_reward", "pass_rate", "graders")
    }


def test_report_to_tensorboard_gets_the_per_grader_metrics(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # TRL's output_dir is the stage's checkpoint directory; TensorBoard writes under its runs/
    event_dirs = {p.parent for p in (tracked_run / "rft" / "checkpoints" / "runs").rglob("events.out.tfevents.*")}
    assert event_dirs, f"no TensorBoard event file under {tracked_run / 'rft/checkpoints/runs'}"
    tags: set[str] = set()
    for d in event_dirs:
        acc = EventAccumulator(str(d))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    for grader in ("exact_match", "brevity"):
        assert f"train/rewards/{grader}/mean" in tags  # TRL's per reward function
        assert f"train/graders/{grader}/latency_p95" in tags  # rftkit's, through log_metric
        assert f"train/graders/{grader}/error_rate" in tags
    assert "train/reward" in tags and "train/loss" in tags
    # the SFT stage kept the default (report_to: none): nothing written there
    assert not (tracked_run / "sft" / "checkpoints" / "runs").exists()
