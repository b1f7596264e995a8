"""Checkpoint cadence by default: a checkpoint at least every `checkpoint_minutes` of training,
so a killed RFT stage resumed with --resume continues from its last checkpoint, not step 0."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import read_jsonl, tiny_config, write_config

from rft.config import parse_config
from rft.train.callbacks import TimedCheckpoint


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_timed_checkpoint_asks_for_a_save_once_the_minutes_passed_since_the_last_one():
    clock = FakeClock()
    cb = TimedCheckpoint(2.0, clock=clock)
    args, state = SimpleNamespace(), SimpleNamespace(global_step=1)
    cb.on_train_begin(args, state, SimpleNamespace(should_save=False))
    saves = []
    for minute in (0.5, 1.0, 1.9, 2.0, 2.5, 3.9, 4.0):
        clock.now = minute * 60
        control = SimpleNamespace(should_save=False)
        cb.on_step_end(args, state, control)
        if control.should_save:  # the Trainer saves, then calls on_save
            saves.append(minute)
            cb.on_save(args, state, control)
    assert saves == [2.0, 4.0]


def _raw(trl: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "model": "tiny",
        "data": {"train": "t.jsonl"},
        "graders": ["exact_match"],
        "stages": {"sft": {}, "rft": {"trl": trl or {}}},
    }
    raw.update(extra)
    return raw


@pytest.mark.parametrize(
    ("raw", "rft_minutes"),
    [
        (_raw(), 2.0),  # the default: every 2 minutes
        (_raw(checkpoint_minutes=0.5), 0.5),
        (_raw({"save_steps": 10}), None),  # the stage chose its own cadence: TRL's save_steps alone
        (_raw({"save_steps": 10}, checkpoint_minutes=3), 3),  # both named: whichever comes first
        (_raw({"save_strategy": "no"}, checkpoint_minutes=3), None),  # no checkpoints asked for
        (_raw(checkpoint_minutes=None), None),
    ],
)
def test_the_cadence_of_each_stage(raw, rft_minutes):
    cfg = parse_config(raw, check_trl=False)
    assert cfg.stage_checkpoint_minutes("rft") == rft_minutes
    # the sft stage sets no save_steps here: it keeps the time-based cadence (None when it is off)
    assert cfg.stage_checkpoint_minutes("sft") == cfg.checkpoint_minutes
    assert cfg.to_dict()["checkpoint_minutes"] == cfg.checkpoint_minutes


def test_checkpoint_minutes_must_be_positive():
    from rft.core.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_minutes"):
        parse_config(_raw(checkpoint_minutes=0), check_trl=False)


@pytest.mark.slow
def test_a_killed_rft_stage_resumes_from_its_timed_checkpoint_not_step_0(tmp_path):
    """TRL's save_steps never fires (1000); the time-based cadence (here: every step) does."""
    from typer.testing import CliRunner

    from rft.cli.main import app
    from rft.config.run import load_config
    from rft.models.resolve import create_tiny_model
    from rft.train.callbacks import GUARD_STATE, StopAfterSave
    from rft.train.pipeline import run_training

    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    model_dir = create_tiny_model(tmp_path / "model")
    cfg = tiny_config(tmp_path, model_dir, eval={"enabled": False}, checkpoint_minutes=1e-6)
    cfg["scoring"]["inline"] = True
    del cfg["stages"]["sft"]
    cfg["stages"]["rft"]["trl"].update(max_steps=4, save_steps=1000)
    cfg["guard"] = {"checks": ["length"], "train_window": 1, "length_drift": 100.0}  # its state rides along
    config = write_config(tmp_path, cfg)
    run = tmp_path / "run"

    with pytest.raises(KeyboardInterrupt):
        run_training(load_config(config), progress=False, extra_callbacks={"rft": [StopAfterSave(2)]})
    ckpt = run / "rft" / "checkpoints" / "checkpoint-2"
    assert (ckpt / "rft-complete.json").exists() and (ckpt / GUARD_STATE).exists()
    steps_before = sorted({r["step"] for r in read_jsonl(run / "rollouts.jsonl")})
    assert steps_before == [0, 1]

    res = CliRunner().invoke(app, ["train", str(config), "--resume", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "rft: training from" in res.output and "checkpoint-2" in res.output
    # the resumed stage continued at step 3: rollouts of steps 2 and 3 were added, steps 0 and 1 not redone
    rollouts = read_jsonl(run / "rollouts.jsonl")
    assert sorted({r["step"] for r in rollouts}) == [0, 1, 2, 3]
    per_step = [sum(r["step"] == s for r in rollouts) for s in range(4)]
    assert len(set(per_step)) == 1  # no step scored twice
    loss_steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl") if r["stage"] == "rft" and "loss" in r]
    assert loss_steps == [1, 2, 3, 4]
    assert json.loads((run / "rft" / "DONE").read_text())["global_step"] == 4
    # the guard's state came back from checkpoint-2 and went on: each step once in the last checkpoint
    last = run / "rft" / "checkpoints" / "checkpoint-4" / GUARD_STATE
    assert [r["step"] for r in json.loads(last.read_text())["train"]] == [1, 2, 3, 4]
