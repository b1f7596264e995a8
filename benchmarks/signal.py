"""Training-signal benchmarks (issue 14), in two parts.

**compare**: the flagship (``configs/quickstart.yaml``: SFT warm start, then GRPO on 512
prompts with a verifier) with and without dynamic sampling and the pass-rate curriculum, at
equal RFT training time, for each seed. The **plain** arm is the config as shipped; its RFT
stage's CPU seconds become the **signal** arm's budget: the same config plus
``stages.rft.dynamic_sampling`` and ``stages.rft.curriculum``, its RFT stage stopped when it has
used as many CPU seconds (the learning rate is constant, so stopping early changes no schedule;
``max_steps`` is raised so the time, not the step count, ends it). Reported per arm: the share
of generated prompt groups that were informative (rewards not all equal), the share of the
trained batches' groups that were, generations per informative group, RFT steps, and the held-out
pass rate on the same 100 rows::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/signal.py compare            # 3 seeds, ≈ 45 min on 2 cores
    .venv/bin/python benchmarks/signal.py compare --seeds 0 --out /tmp/sig      # one seed

Writes ``signal.json`` and ``signal.png`` into ``--out``; a seed already there is kept (its
measures are read again from its ``metrics.jsonl``). The committed results of the README's
table: ``benchmarks/signal-results.json`` and ``.png``.


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

import argparse
import copy
import functools
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import rft

REPO = Path(__file__).resolve().parents[1]
ADDITION = REPO / "examples" / "addition"
COMPARE_ARMS = ("plain", "signal")
COMPARE_LABELS = {"plain": "SFT → RFT as shipped", "signal": "+ dynamic sampling + curriculum"}


@functools.cache
def _flagship() -> Any:
    """``benchmarks/flagship.py`` as a module (loaded once): its stage clock and config parsing are shared."""
    spec = importlib.util.spec_from_file_location("rft_bench_flagship", Path(__file__).with_name("flagship.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# -- compare: the flagship with and without dynamic sampling and the curriculum ---------------


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def signal_measures(metrics: list[dict[str, Any]], group_size: int) -> dict[str, float | None]:
    """The RFT stage's signal from ``metrics.jsonl`` records, averaged over its steps.

    ``generated``: share of the prompt groups generated that were informative (rewards not all
    equal); ``trained``: share of the groups in the batches trained on that were;
    ``generations_per_informative_group``: completions generated per informative group (steps
    without one left out). Without dynamic sampling all three come from TRL's
    ``frac_reward_zero_std`` (every generated group is trained on).

    >>> recs = [{"stage": "rft", "step": s, "frac_reward_zero_std": z, "loss": 0.1} for s, z in ((1, 0.5), (2, 0.75))]
    >>> signal_measures(recs, 8)
    {'generated': 0.375, 'trained': 0.375, 'generations_per_informative_group': 24.0, 'curriculum_retired': None}
    """
    steps = [r for r in metrics if r.get("stage") == "rft" and "loss" in r]
    ds = "dynamic_sampling/informative_share"
    if any(r.get(ds) is not None for r in steps):
        generated = [float(r[ds]) for r in steps if r.get(ds) is not None]
        trained = [float(r["dynamic_sampling/batch_informative_share"]) for r in steps if r.get(ds) is not None]
        per = [
            float(r["dynamic_sampling/generations_per_informative_group"])
            for r in steps
            if r.get("dynamic_sampling/generations_per_informative_group") is not None
        ]
    else:
        generated = trained = [1.0 - float(r["frac_reward_zero_std"]) for r in steps if "frac_reward_zero_std" in r]
        per = [group_size / share for share in generated if share > 0]
    retired = [float(r["curriculum/retired"]) for r in steps if r.get("curriculum/retired") is not None]
    return {
        "generated": _mean(generated),
        "trained": _mean(trained),
        "generations_per_informative_group": _mean(per),
        "curriculum_retired": retired[-1] if retired else None,
    }


def run_compare_seed(raw: dict[str, Any], config: Path, seed: int, out: Path, max_rounds: int) -> dict[str, Any]:
    """Both arms for one seed: the config as shipped, then with the signal features at its RFT CPU time."""
    from rft.train.pipeline import run_training
    from rft.train.report import read_jsonl

    fl = _flagship()
    t_seed = time.perf_counter()

    def say(msg: str) -> None:
        print(f"  [seed {seed} {time.perf_counter() - t_seed:6.0f}s] {msg}", flush=True)

    arms: dict[str, dict[str, Any]] = {}
    budget: float | None = None
    for arm in COMPARE_ARMS:
        cfg = copy.deepcopy(raw)
        cfg["seed"] = seed
        rft_stage = cfg["stages"]["rft"]
        if arm == "signal":
            rft_stage["dynamic_sampling"] = {"enabled": True, "max_rounds": max_rounds}
            rft_stage["curriculum"] = {"enabled": True}
            rft_stage.setdefault("trl", {})["max_steps"] = 100_000  # the plain arm's CPU time ends it
        clock = fl._clock(budget)
        say(f"{arm}: training" + (f" (RFT stopped at {budget:.0f} CPU s)" if budget else " (the config as shipped)"))
        t0 = time.perf_counter()
        parsed = fl._parse(cfg, config, out / arm)
        res = run_training(
            parsed,
            progress=False,
            extra_callbacks={"rft": [clock]},
            log=lambda m, arm=arm: say(m) if not m.startswith("evaluating base") or arm == "plain" else None,
        )
        if budget is None:
            budget = clock.cpu
        arms[arm] = {
            "pass_rate": (res.get("rft") or {}).get("pass_rate"),
            "after_sft": (res.get("sft") or {}).get("pass_rate"),
            "base": (res.get("base") or {}).get("pass_rate"),
            "rft_steps": clock.steps,
            "rft_cpu_s": round(clock.cpu, 1),
            "rft_wall_s": round(clock.wall, 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            "informative": signal_measures(read_jsonl(out / arm / "metrics.jsonl"), parsed.rft.num_generations),
        }
        say(f"{arm}: held-out pass rate {arms[arm]['pass_rate']} after {clock.steps} RFT steps")
    return {"seed": seed, "arms": arms}


def compare_table(seeds: list[dict[str, Any]]) -> str:
    """One row per arm: pass rate per seed and mean ± sd, informative shares, steps and time (means)."""
    fl = _flagship()
    head = (
        "| arm | "
        + " | ".join(f"seed {s['seed']}" for s in seeds)
        + " | mean ± sd (min–max) | informative groups: generated / trained | gens per informative group "
        "| RFT steps | RFT CPU min |"
    )
    lines = [head, "|" + " --- |" * (len(seeds) + 6)]
    for arm in COMPARE_ARMS:
        rows = [s["arms"][arm] for s in seeds]
        rates = [a["pass_rate"] for a in rows if a["pass_rate"] is not None]
        inf = [a["informative"] for a in rows]

        def m(key: str, inf: list[dict[str, Any]] = inf) -> str:
            vals = [x[key] for x in inf if x[key] is not None]
            return "–" if not vals else f"{statistics.fmean(vals):.2f}"

        lines.append(
            f"| {COMPARE_LABELS[arm]} | "
            + " | ".join(fl._rate(a["pass_rate"]) for a in rows)
            + f" | {fl._agg(fl._stats(rates))} | {m('generated')} / {m('trained')} | "
            + f"{m('generations_per_informative_group')} | "
            + f"{statistics.fmean(a['rft_steps'] for a in rows):.0f} | "
            + f"{statistics.fmean(a['rft_cpu_s'] for a in rows) / 60:.1f} |"
        )
    return "\n".join(lines)


def compare_plot(seeds: list[dict[str, Any]], path: Path) -> None:
    """Held-out pass rate (bars, dots per seed) and the trained batches' informative share per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, title in (
        (axes[0], lambda a: a["pass_rate"], "held-out pass rate"),
        (axes[1], lambda a: a["informative"]["trained"], "informative groups in trained batches"),
    ):
        for i, arm in enumerate(COMPARE_ARMS):
            vals = [key(s["arms"][arm]) for s in seeds if key(s["arms"][arm]) is not None]
            mean = statistics.fmean(vals) if vals else 0.0
            ax.bar(i, mean, color=("#4c72b0", "#dd8452")[i], alpha=0.8)
            ax.scatter([i] * len(vals), vals, color="black", zorder=3, s=18)
            ax.text(i, 0.04, f"{mean:.2f}", ha="center", color="white", fontweight="bold")
        ax.set_xticks(range(len(COMPARE_ARMS)), [COMPARE_LABELS[a] for a in COMPARE_ARMS], fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"flagship, {len(seeds)} seeds, equal RFT CPU time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    """Every seed of the comparison; seeds already in ``--out``'s ``signal.json`` are kept."""
    import yaml

    out = Path(args.out or REPO / "runs" / f"signal-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    config = Path(args.config)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    if "sft" not in raw.get("stages", {}) or "rft" not in raw.get("stages", {}):
        raise SystemExit(f"{config}: the comparison needs a config with stages.sft and stages.rft")
    from rft.train.report import read_jsonl

    group = _flagship()._parse(raw, config, out).rft.num_generations
    path = out / "signal.json"
    done = {s["seed"]: s for s in json.loads(path.read_text())["seeds"]} if path.exists() else {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        if seed in done:
            print(f"seed {seed}: kept from {path}", flush=True)
            for arm, measured in done[seed]["arms"].items():  # re-read: the measures may be newer than the run
                metrics = out / f"seed{seed}" / arm / "metrics.jsonl"
                if metrics.is_file():
                    measured["informative"] = signal_measures(read_jsonl(metrics), group)
            continue
        print(f"seed {seed}: {out / f'seed{seed}'}", flush=True)
        done[seed] = run_compare_seed(raw, config, seed, out / f"seed{seed}", args.max_rounds)
        result = {"config": str(config), "max_rounds": args.max_rounds, "seeds": [done[k] for k in sorted(done)]}
        path.write_text(json.dumps(result, indent=2))
        print(compare_table(result["seeds"]), flush=True)
    seeds = [done[k] for k in sorted(done)]
    path.write_text(json.dumps({"config": str(config), "max_rounds": args.max_rounds, "seeds": seeds}, indent=2))
    print(compare_table(seeds), flush=True)
    compare_plot(seeds, out / "signal.png")
    print(f"\nwrote {path} and {out / 'signal.png'} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return {"config": str(config), "max_rounds": args.max_rounds, "seeds": seeds}


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
    c = sub.add_parser("compare", help="the flagship with and without dynamic sampling and curriculum, equal time")
    c.add_argument("--config", default=str(REPO / "configs" / "quickstart.yaml"), help="an SFT → RFT config")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--max-rounds", type=int, default=3, help="stages.rft.dynamic_sampling.max_rounds")
    c.add_argument("--out", default=None, help="directory for runs and results (default: a new runs/ dir)")
    c.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args(argv)
    result = run_guard(args) if args.part == "guard" else run_compare(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
