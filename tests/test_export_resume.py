"""Resume after a kill gives the same data order and final step as an uninterrupted run; export merges the adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import REPO, full_and_killed_runs, read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

from rft.cli.main import app

N = 2  # steps before the kill; the runs train 2N RFT steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_config(tmp: Path, model_dir: Path) -> Path:
    """The tiny run, inline scoring, no eval, 2N RFT steps with a checkpoint every N
    (the runs pass their output directory on the command line)."""
    cfg = tiny_config(tmp, model_dir, eval={"enabled": False})
    cfg["scoring"]["inline"] = True
    cfg["stages"]["rft"]["trl"].update(max_steps=2 * N, save_steps=N)
    return write_config(tmp, cfg)


def prompts_per_step(run: Path) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for r in read_jsonl(run / "rollouts.jsonl"):
        out.setdefault(r["step"], []).append(r["prompt"][-1]["content"])
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """An uninterrupted 2N-step run, and a run killed after checkpoint N then resumed with the CLI."""
    from rft.models.resolve import create_tiny_model

    tmp = tmp_path_factory.mktemp("resume")
    model_dir = create_tiny_model(tmp / "model")
    config = make_config(tmp, model_dir)

    full, killed = full_and_killed_runs(config, tmp, N)
    state = {
        "adapter_after_kill": (killed / "adapter").exists(),
        "steps_after_kill": sorted(prompts_per_step(killed)),
    }
    # a checkpoint that was being written when the process died: no completion marker, must be ignored
    ckpts = killed / "rft" / "checkpoints"
    shutil.copytree(ckpts / f"checkpoint-{N}", ckpts / f"checkpoint-{N + 1}")
    (ckpts / f"checkpoint-{N + 1}" / "rft-complete.json").unlink()
    (ckpts / f"checkpoint-{N + 1}" / "adapter_model.safetensors").write_bytes(b"truncated")

    res = CliRunner().invoke(app, ["train", str(config), "--resume", str(killed), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return {"full": full, "killed": killed, "model": model_dir, "state": state, "output": res.output}  # type: ignore[dict-item]


@pytest.mark.slow
def test_kill_leaves_a_complete_checkpoint_and_no_adapter(runs):
    # the kill came right after checkpoint N: steps 0..N-1 were scored, nothing was finalised
    assert runs["state"]["steps_after_kill"] == list(range(N))
    assert runs["state"]["adapter_after_kill"] is False


@pytest.mark.slow
def test_resume_continues_with_the_same_prompts_and_final_step(runs):
    full, resumed = runs["full"], runs["killed"]
    # the finished SFT stage is not trained again
    assert "sft: finished earlier, skipped" in runs["output"]
    # same prompts at every step (TRL's seeded sampler + the checkpoint's position), no duplicates
    assert prompts_per_step(resumed) == prompts_per_step(full)
    assert sorted(prompts_per_step(full)) == list(range(2 * N))
    done_full = json.loads((full / "rft" / "DONE").read_text())
    done_resumed = json.loads((resumed / "rft" / "DONE").read_text())
    assert done_full["global_step"] == done_resumed["global_step"] == 2 * N
    # the checkpoint restores the RNG too: the same completions are sampled, the same adapter results
    completions = [
        [(r["step"], r["completion"]) for r in read_jsonl(run / "rollouts.jsonl")] for run in (full, resumed)
    ]
    assert completions[0] == completions[1]
    import torch
    from safetensors.torch import load_file

    wa, wb = (load_file(str(run / "adapter" / "adapter_model.safetensors")) for run in (full, resumed))
    assert wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)
    # metrics have one record per RFT step, none duplicated by the restart
    steps = [r["step"] for r in read_jsonl(resumed / "metrics.jsonl") if r["stage"] == "rft" and "loss" in r]
    assert steps == list(range(1, 2 * N + 1))


@pytest.mark.slow
def test_resume_of_a_finished_run_trains_nothing(runs, tmp_path):
    config = runs["killed"].parent / "run.yaml"
    res = CliRunner().invoke(app, ["train", str(config), "--resume", str(runs["full"]), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "rft: finished earlier, skipped" in res.output


def test_resume_of_something_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    res = CliRunner().invoke(app, ["train", str(REPO / "configs" / "tiny.yaml"), "--resume", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not an rftkit run directory" in " ".join(res.output.split())


@pytest.mark.slow
def test_export_merges_the_adapter_with_matching_logits(runs, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    res = CliRunner().invoke(app, ["export", str(runs["full"]), "--merge", str(out)])
    assert res.exit_code == 0, res.output
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(runs["model"])).eval()
    plain_base_logits = None
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok("What is 2 + 3?", return_tensors="pt")
    with torch.no_grad():
        plain_base_logits = base(**ids).logits.clone()
        adapter_logits = PeftModel.from_pretrained(base, str(runs["full"] / "adapter")).eval()(**ids).logits
        merged_logits = merged(**ids).logits
    # the adapter changes the model (else this comparison would prove nothing) ...
    assert not torch.allclose(adapter_logits, plain_base_logits, atol=1e-6)
    # ... and the merged model computes the same function as base + adapter
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-4)
    # the merged directory is a plain model: no adapter files
    assert not (out / "adapter_config.json").exists()


def test_export_refuses_a_non_empty_target(runs, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "f").write_text("x")
    res = CliRunner().invoke(app, ["export", str(runs["full"]), "--merge", str(tmp_path / "taken")])
    assert res.exit_code == 2 and "not empty" in res.output
