"""Overhead of rftkit's RFT trainer path over bare TRL.

The same tiny model, data, GRPO settings and a cheap grader (exact match) run through

- **bare**: ``trl.GRPOTrainer`` with a plain TRL reward function, and
- **rft**: the trainer ``rft train`` builds (``rft.train.grpo.build_grpo_trainer``): graders scored
  through the scoring engine (``make_executor``) via the reward bridge, rollouts.jsonl,
  metrics.jsonl, the checkpoint marker and the trainable-parameter check,

alternating in one process (bare, rft, bare, rft, …) so machine load hits both alike. Each
trainer runs ``--steps`` steps; the first step of each is dropped as warm-up. Prints the
median step time of each and their ratio (targets: ≤ 1.05 local executor, ≤ 1.10 Ray).

    .venv/bin/python benchmarks/overhead.py --rounds 3 --steps 6
    .venv/bin/python benchmarks/overhead.py --executor ray
"""

from __future__ import annotations

import sys

# Run as a script, this directory comes first on sys.path, and benchmarks/signal.py would stand in
# for the standard library's `signal` module (subprocess and asyncio import it). Take it off first.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def exact_match_reward(prompts, completions, answer, **kwargs):
    """The bare-TRL reward function: same logic as the built-in ``exact_match`` grader."""
    out = []
    for c, a in zip(completions, answer):
        text = c if isinstance(c, str) else "".join(m.get("content") or "" for m in c)
        out.append(float(text.strip() == str(a).strip()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="bare/rft pairs")
    ap.add_argument("--steps", type=int, default=6, help="GRPO steps per trainer (the first is warm-up)")
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--inline", action="store_true", help="local executor: score in this process (no worker processes)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for a tiny model on a shared machine)"
    )
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--max-completion-length", type=int, default=16)
    args = ap.parse_args()

    import datasets
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rft.config import DataConfig, LoraSettings, cpu_safe_defaults
    from rft.data.rows import load_splits, render_prompt
    from rft.models.resolve import ResolvedModel, create_tiny_model, load_model
    from rft.plugins import get_plugin_manager, get_registry, grader_set_from_config
    from rft.scoring import ScoringOptions, make_executor
    from rft.train.callbacks import (
        CheckpointMarker,
        MetricsWriter,
        TrainableCheck,
        quiet_console,
    )
    from rft.train.grpo import build_grpo_trainer
    from rft.train.rewards import RewardBridge

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="rft-overhead-"))
    model_dir = create_tiny_model(tmp / "model")
    resolved = ResolvedModel("tiny", model_dir, kind="tiny")
    splits = load_splits(DataConfig(train=REPO / "examples/tiny/train.jsonl", eval_size=0), seed=0)
    lora = LoraSettings(r=4, alpha=8)
    n = args.num_generations
    base_args = {
        **cpu_safe_defaults(learning_rate=1e-4),
        "seed": 0,
        "max_steps": args.steps,
        "num_generations": n,
        "per_device_train_batch_size": 2 * n,
        "max_completion_length": args.max_completion_length,
        "temperature": 1.0,
        "save_strategy": "no",
        "disable_tqdm": True,
        "log_completions": False,
    }

    import psutil

    me = psutil.Process()

    def cpu_seconds() -> float:
        """CPU time of this process and its children (grader workers): robust to other load on the machine."""
        total = time.process_time()
        for child in me.children(recursive=True):
            try:
                t = child.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, a, state, control, **kw):
            self._t, self._c = time.perf_counter(), cpu_seconds()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self._t)
            self.cpu.append(cpu_seconds() - self._c)

    registry = get_registry(get_plugin_manager())
    grader_set = grader_set_from_config({"graders": [{"name": "exact_match"}]})
    assert "exact_match" in registry

    def run_bare(k: int) -> list[float]:
        model, tok = load_model(resolved)
        ds = datasets.Dataset.from_list(
            [{"prompt": render_prompt(e.prompt, tok), "answer": e.row["answer"]} for e in splits.train]
        )
        timer = StepTimer()
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[exact_match_reward],
            train_dataset=ds,
            processing_class=tok,
            args=GRPOConfig(**{**base_args, "output_dir": str(tmp / f"bare{k}")}),
            peft_config=lora.to_peft(),
            callbacks=[timer],
        )
        quiet_console(trainer, progress=False)
        trainer.train()
        return timer.times[1:], timer.cpu[1:]

    def run_rft(k: int, executor) -> list[float]:
        model, tok = load_model(resolved)
        out = tmp / f"rft{k}"
        out.mkdir()
        bridge = RewardBridge(
            grader_set, executor, rows=[e.row for e in splits.train], rollouts_path=out / "rollouts.jsonl"
        )
        timer = StepTimer()
        trainer = build_grpo_trainer(
            model,
            tok,
            splits.train,
            bridge,
            trl_args={**base_args, "output_dir": str(out / "checkpoints")},
            lora=lora,
            callbacks=[CheckpointMarker(), MetricsWriter(out / "metrics.jsonl", "rft"), TrainableCheck("rft"), timer],
        )
        quiet_console(trainer, progress=False)
        trainer.train()
        return timer.times[1:], timer.cpu[1:]

    bare: list[float] = []
    rft: list[float] = []
    bare_cpu: list[float] = []
    rft_cpu: list[float] = []
    opts = ScoringOptions(executor=args.executor, num_workers=1, inline=args.inline)
    with make_executor(grader_set, args.executor, opts) as executor:
        for k in range(args.rounds):
            b, bc = run_bare(k)
            r, rc = run_rft(k, executor)
            bare += b
            rft += r
            bare_cpu += bc
            rft_cpu += rc
            print(
                f"round {k + 1}: bare median {statistics.median(b):.3f} s/step, rft median {statistics.median(r):.3f} s/step"
            )
    mb, mr = statistics.median(bare), statistics.median(rft)
    cb, cr = statistics.median(bare_cpu), statistics.median(rft_cpu)
    target = 1.05 if args.executor == "local" else 1.10
    print(
        f"\nexecutor={args.executor}{' (inline)' if args.inline else ''} threads={args.threads} "
        f"steps={len(bare)}+{len(rft)} (warm-up dropped) num_generations={n} max_completion_length={args.max_completion_length}"
    )
    print(f"bare TRL : median {mb:.3f} s/step wall, {cb:.3f} s/step CPU")
    print(f"rft train: median {mr:.3f} s/step wall, {cr:.3f} s/step CPU")
    print(f"ratio rft/bare = {mr / mb:.3f} wall, {cr / cb:.3f} CPU incl. grader workers (target <= {target})")


if __name__ == "__main__":
    main()
