"""Training-signal benchmarks (issue 14). This file holds the guard part:

**guard**: a deliberately gameable run. The addition example's sums, a short SFT warm start (the
model learns to answer with the sum), then GRPO trained on ``verbosity`` alone, a reward for
long replies that says nothing about the sum. The built-in ``exact_match`` is an audit grader
(``audit: true``, weight 0): scored and logged, never trained on. The held-out rows are
evaluated every ``--every`` RFT steps, ``adapter-best/`` is chosen by held-out
``exact_match`` (``eval.best_by``), and the guard (``action: rollback``) watches. Expected:
the trained reward rises while the audit grader falls, the guard fires and ends the stage,
and ``adapter/`` is the best held-out adapter instead of the gamed last one. Prints the
held-out ``exact_match`` over steps, the alarms, and both adapters' numbers.

    .venv/bin/python benchmarks/signal.py guard                 # the embedded SmolLM2-135M
    .venv/bin/python benchmarks/signal.py guard --model tiny    # a tiny random model: plumbing only

This file is also the plugin that registers the ``verbosity`` grader (the run config names it).
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path, and this file would stand
# in for the standard library's `signal` module in every later `import signal` (torch,
# subprocess …). Take the directory off the path before anything else is imported.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import rft  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ADDITION = REPO / "examples" / "addition"


@rft.grader(range=(0.0, 1.0))
def verbosity(completion: str) -> float:
    """A reward for length: 1.0 from 40 characters on. Gameable by design (it never reads the answer).

    >>> verbosity("109"), verbosity("x" * 80)
    (0.075, 1.0)
    """
    return min(1.0, len(completion.strip()) / 40)


@rft.hookimpl
def rft_register_graders(register: Any) -> None:
    register(verbosity)


def guard_config(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """The gameable run: SFT warm start, then GRPO on ``verbosity`` with ``exact_match`` as the audit."""
    return {
        "seed": args.seed,
        "output_dir": str(out),
        "model": args.model,
        "data": {"train": str(ADDITION / "train.jsonl"), "eval": str(ADDITION / "eval.jsonl")},
        "graders": {
            "plugins": [str(Path(__file__).resolve())],
            "graders": [{"name": "verbosity", "weight": 1.0}, {"name": "exact_match", "audit": True}],
        },
        "scoring": {"executor": "local", "inline": True},
        "lora": {"r": 16, "alpha": 32},
        "stages": {
            "sft": {"trl": {"max_steps": 8, "learning_rate": 1.0e-3, "per_device_train_batch_size": 8}},
            "rft": {
                "num_generations": 4,
                "max_completion_length": args.max_tokens,
                "trl": {
                    "max_steps": args.steps,
                    "learning_rate": args.lr,
                    "per_device_train_batch_size": 8,  # 2 prompts × 4 completions
                    "beta": 0.0,
                },
            },
        },
        "eval": {
            "max_rows": args.rows,
            "max_new_tokens": args.max_tokens,
            "batch_size": args.rows,
            "every_steps": args.every,
            "best_by": "exact_match",
        },
        "guard": {"action": "rollback", "train_window": args.train_window},
    }


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def run_guard(args: argparse.Namespace) -> dict[str, Any]:
    """Run the gameable config and print what the guard did."""
    from rft.config import parse_config
    from rft.train.pipeline import run_training
    from rft.train.report import read_jsonl

    out = Path(args.out or tempfile.mkdtemp(prefix="rft-signal-guard-")) / "run"
    cfg = parse_config(guard_config(args, out), source="benchmarks/signal.py guard", base_dir=REPO)
    t0 = time.perf_counter()
    results = run_training(cfg, progress=False, log=lambda m: print(f"  [{time.perf_counter() - t0:6.1f}s] {m}"))
    wall = time.perf_counter() - t0
    metrics = read_jsonl(out / "metrics.jsonl")
    evals = [(r["step"], r.get("eval/exact_match/mean")) for r in metrics if "eval/quality" in r]
    found = [r for r in metrics if r.get("guard/alarm")]
    train = [
        (r["step"], r.get("reward"), r.get("rewards/exact_match/mean"))
        for r in metrics
        if "loss" in r and r["stage"] == "rft"
    ]
    done = json.loads((out / "rft" / "DONE").read_text())
    best = json.loads((out / "adapter-best" / "rft-best.json").read_text())
    last_step, last_quality = evals[-1] if evals else (None, None)
    print()
    print(f"run: {out}  ({wall / 60:.1f} min, model {args.model})")
    print(
        f"held-out exact_match: base {_fmt(results.get('base', {}).get('graders', {}).get('exact_match', {}).get('mean'))}, "
        f"sft {_fmt(results.get('sft', {}).get('graders', {}).get('exact_match', {}).get('mean'))}"
    )
    print("RFT steps (trained reward = verbosity; exact_match = audit, on the training rollouts):")
    for step, reward, audit in train:
        print(f"  step {step:3d}: reward {_fmt(reward)}  exact_match {_fmt(audit)}")
    print("held-out exact_match during RFT: " + ", ".join(f"step {s}: {_fmt(q)}" for s, q in evals))
    for a in found:
        print(f"ALARM step {a['step']} ({a['guard/alarm']}, {a['guard/action']}): {a['guard/message']}")
    stopped = done.get("stopped_by")
    print(
        f"stage ended at step {done['global_step']}"
        + (f", stopped by the guard ({stopped['kind']})" if stopped else " (no alarm)")
    )
    print(f"last adapter (rft/adapter, step {last_step}): held-out exact_match {_fmt(last_quality)}")
    print(f"adapter-best (step {best['step']}): held-out exact_match {_fmt(best['quality'])}")
    final = "adapter-best" if done.get("final_adapter") == "adapter-best" else "the last adapter"
    kept_better = best["quality"] >= (last_quality or 0.0)
    print(
        f"adapter/ is {final}; rollback kept the better held-out adapter: {'yes' if final == 'adapter-best' and kept_better else 'no'}"
    )
    return {
        "wall_s": wall,
        "alarms": found,
        "heldout": evals,
        "best": {k: best[k] for k in ("step", "quality")},
        "last": {"step": last_step, "quality": last_quality},
        "final_adapter": final,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    g = sub.add_parser("guard", help="the gameable run: the guard fires, rollback keeps the better held-out adapter")
    g.add_argument("--model", default="smollm2-135m-instruct", help="smollm2-135m-instruct (embedded) or tiny")
    g.add_argument("--steps", type=int, default=12, help="max RFT steps")
    g.add_argument("--every", type=int, default=4, help="eval.every_steps")
    g.add_argument("--rows", type=int, default=20, help="held-out rows per evaluation")
    g.add_argument("--max-tokens", type=int, default=16, help="max completion tokens (rollouts and eval)")
    g.add_argument("--lr", type=float, default=5e-4, help="RFT learning rate")
    g.add_argument("--train-window", type=int, default=3, help="guard.train_window")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None, help="directory for the run (default: a new temporary one)")
    g.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    result = run_guard(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
