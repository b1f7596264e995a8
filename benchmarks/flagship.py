"""The flagship benchmark (issue 13): does SFT → RFT beat SFT only at equal training time?

Runs the quickstart config (``configs/quickstart.yaml``, the number-splitting task of
``examples/flagship/``) for each seed in three arms, all on the same held-out rows with the
same graders and greedy decoding:

* **base**: the model as shipped (the base evaluation of the SFT → RFT run);
* **sft_then_rft**: the config as it is, through ``rft train``'s pipeline
  (:func:`rft.train.pipeline.run_training`), its SFT and RFT training time measured;
* **sft**: the same labeled rows, the same SFT settings (learning rate, batch, LoRA, schedule
  family), trained for the **same training time** as the SFT → RFT arm, counted in this
  process's CPU seconds: ``max_steps`` is the SFT → RFT arm's SFT + RFT training CPU seconds
  divided by the CPU seconds per SFT step measured in that same run, so the learning-rate
  schedule runs to its end. On a machine shared with other jobs, wall-clock step times drift
  by 2× and more within minutes; CPU time does not (with ``OMP_NUM_THREADS=1`` it equals wall
  time on an idle machine). ``--time-cap`` also stops the arm when its CPU seconds reach the
  SFT → RFT arm's.

Training time excludes model loading and evaluation (the same for every arm), as in
``rft advise --pilot``. Prints progress and the table (training time as wall minutes and CPU
minutes), and writes ``flagship.json`` and ``flagship.png`` into ``--out``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/flagship.py        # 3 seeds, ≈ 40 min on 2 CPU cores
    .venv/bin/python benchmarks/flagship.py --seeds 0 --out /tmp/fl  # one seed
    .venv/bin/python benchmarks/flagship.py --sft-lr 3e-4            # the SFT-only arm at another learning rate

A seed already in ``--out``'s ``flagship.json`` is kept, not rerun: ``--seeds 0`` first, then
``--seeds 0 1 2`` with the same ``--out`` adds two seeds.

Run one benchmark at a time on a shared machine: the arms are compared by wall-clock time.
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path, and benchmarks/signal.py
# would stand in for the standard library's `signal` module. Take the directory off the path.
if __name__ == "__main__" and sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    sys.path.pop(0)

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from rft.config import parse_config
from rft.train.pipeline import run_training

REPO = Path(__file__).resolve().parents[1]
ARMS = ("base", "sft", "sft_then_rft")
LABELS = {"base": "base model", "sft": "SFT only (equal time)", "sft_then_rft": "SFT → RFT"}


def _clock(cpu_cap: float | None = None) -> Any:
    """A TrainerCallback measuring a stage: steps, wall seconds and this process's CPU seconds.

    With ``cpu_cap``, it stops training once the stage has used that many CPU seconds.
    """
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.steps = 0
            self.wall = self.cpu = 0.0
            self.stopped = False
            self._t0 = self._c0 = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.steps = int(state.global_step)
            self.wall = time.perf_counter() - self._t0
            self.cpu = time.process_time() - self._c0
            if cpu_cap is not None and self.cpu >= cpu_cap and not control.should_training_stop:
                control.should_training_stop = self.stopped = True

    return Clock()


def _parse(raw: dict[str, Any], config: Path, out: Path) -> Any:
    return parse_config(raw, source=str(config), base_dir=config.parent, output_dir=out)


def _scores(summary: dict[str, Any] | None) -> dict[str, float | None]:
    summary = summary or {}
    return {"pass_rate": summary.get("pass_rate"), "mean_reward": summary.get("mean_reward")}


def run_seed(
    raw: dict[str, Any],
    config: Path,
    seed: int,
    out: Path,
    *,
    sft_lr: float | None,
    time_cap: bool,
    sft_arm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The three arms for one seed; returns their held-out scores and training times."""
    t_seed = time.perf_counter()

    def say(msg: str) -> None:
        print(f"  [seed {seed} {time.perf_counter() - t_seed:6.0f}s] {msg}", flush=True)

    # SFT → RFT: the config as shipped
    both = copy.deepcopy(raw)
    both["seed"] = seed
    watch = {"sft": _clock(), "rft": _clock()}
    say("sft_then_rft: training (the config as shipped)")
    t0 = time.perf_counter()
    res = run_training(
        _parse(both, config, out / "sft_then_rft"),
        progress=False,
        extra_callbacks={s: [cb] for s, cb in watch.items()},
        log=say,
    )
    both_wall = time.perf_counter() - t0
    train_s = watch["sft"].wall + watch["rft"].wall
    train_cpu = watch["sft"].cpu + watch["rft"].cpu
    sft_step_cpu = watch["sft"].cpu / max(1, watch["sft"].steps)
    arms: dict[str, dict[str, Any]] = {
        "base": {**_scores(res.get("base")), "train_s": 0.0, "train_cpu_s": 0.0, "steps": {}},
        "sft_then_rft": {
            **_scores(res.get("rft")),
            "after_sft": _scores(res.get("sft")),
            "train_s": round(train_s, 1),
            "train_cpu_s": round(train_cpu, 1),
            "wall_s": round(both_wall, 1),
            "steps": {"sft": watch["sft"].steps, "rft": watch["rft"].steps},
            "cpu_s": {s: round(w.cpu, 1) for s, w in watch.items()},
        },
    }

    if sft_arm is not None:  # --sft-from: measured before, with the same data, settings and in_range
        say(
            f"sft: kept from {sft_arm['reused_from']} ({sft_arm['steps']['sft']} steps, pass rate {sft_arm['pass_rate']})"
        )
        arms["sft"] = sft_arm
        return {"seed": seed, "arms": arms}

    # SFT only, for the same training time
    only = copy.deepcopy(raw)
    only["seed"] = seed
    only["stages"].pop("rft", None)
    sft = only["stages"]["sft"].setdefault("trl", {})
    steps = max(1, round(train_cpu / sft_step_cpu))
    sft["max_steps"] = steps
    if sft_lr is not None:
        sft["learning_rate"] = sft_lr
    stop = _clock(train_cpu if time_cap else None)
    say(
        f"sft: training {steps} steps (≈ {train_cpu:.0f} CPU s at the measured {sft_step_cpu:.2f} CPU s per SFT step"
        + (", stopped there at the latest)" if time_cap else ")")
    )
    t0 = time.perf_counter()
    res_sft = run_training(
        _parse(only, config, out / "sft"),
        progress=False,
        extra_callbacks={"sft": [stop]},
        log=lambda m: say(m) if not m.startswith("evaluating base") else None,
    )
    arms["sft"] = {
        **_scores(res_sft.get("sft")),
        "train_s": round(stop.wall, 1),
        "train_cpu_s": round(stop.cpu, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "steps": {"sft": stop.steps},
        "planned_steps": steps,
        "stopped_by_time": stop.stopped,
        "learning_rate": sft.get("learning_rate"),
    }
    return {"seed": seed, "arms": arms}


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarise(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation and range of each arm's held-out pass rate over the seeds."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        rates = [s["arms"][arm]["pass_rate"] for s in seeds if s["arms"][arm].get("pass_rate") is not None]
        times = [s["arms"][arm]["train_s"] for s in seeds]
        cpu = [s["arms"][arm]["train_cpu_s"] for s in seeds]
        out[arm] = {"pass_rate": _stats(rates), "train_s": _stats(times), "train_cpu_s": _stats(cpu)}
    # the SFT → RFT arm's own warm start: SFT alone, stopped early (its evaluation before RFT)
    warm = [s["arms"]["sft_then_rft"]["after_sft"]["pass_rate"] for s in seeds]
    out["sft_warm_start"] = {"pass_rate": _stats([x for x in warm if x is not None])}
    return out


def table(seeds: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The Markdown table: one column per seed, then mean ± sd (min–max), then training time."""
    head = (
        "| arm | "
        + " | ".join(f"seed {s['seed']}" for s in seeds)
        + " | mean ± sd (min–max) | training time (wall / CPU) |"
    )
    lines = [head, "|" + " --- |" * (len(seeds) + 3)]
    for arm in ARMS:
        cells = [_rate(s["arms"][arm].get("pass_rate")) for s in seeds]
        t, c = summary[arm]["train_s"], summary[arm]["train_cpu_s"]
        agg = _agg(summary[arm]["pass_rate"])
        train = "–" if arm == "base" else f"{t['mean'] / 60:.1f} / {c['mean'] / 60:.1f} min"
        lines.append(f"| {LABELS[arm]} | " + " | ".join(cells) + f" | {agg} | {train} |")
        if arm == "base":  # the warm start: what SFT alone reaches when stopped early
            cells = [_rate(s["arms"]["sft_then_rft"]["after_sft"]["pass_rate"]) for s in seeds]
            steps = seeds[0]["arms"]["sft_then_rft"]["steps"]["sft"]
            p = summary["sft_warm_start"]["pass_rate"]
            lines.append(
                f"| SFT only, stopped early ({steps} steps: the warm start of SFT → RFT) | "
                + " | ".join(cells)
                + f" | {_agg(p)} | – |"
            )
    return "\n".join(lines)


def _rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _agg(p: dict[str, float | None]) -> str:
    if p["mean"] is None:
        return "n/a"
    return f"{p['mean']:.2f} ± {p['sd']:.2f} ({p['min']:.2f}–{p['max']:.2f})"


def plot(seeds: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """Bars: mean held-out pass rate per arm; dots: each seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, arm in enumerate(ARMS):
        mean = summary[arm]["pass_rate"]["mean"] or 0.0
        ax.bar(i, mean, color=("#999999", "#4c72b0", "#dd8452")[i], alpha=0.8)
        rates = [s["arms"][arm]["pass_rate"] for s in seeds if s["arms"][arm].get("pass_rate") is not None]
        ax.scatter([i] * len(rates), rates, color="black", zorder=3, s=18)
        ax.text(i, mean + 0.02, f"{mean:.2f}", ha="center")
    ax.set_xticks(range(len(ARMS)), [LABELS[a] for a in ARMS])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out pass rate")
    ax.set_title(f"flagship, {len(seeds)} seeds, equal training time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write(out: Path, config: Path, seeds: list[dict[str, Any]]) -> None:
    """``flagship.json``: every seed measured in ``out`` (also ones not asked for this time) and the summary."""
    seeds = sorted(seeds, key=lambda s: s["seed"])
    result = {"config": str(config), "seeds": seeds, "summary": summarise(seeds)}
    (out / "flagship.json").write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "quickstart.yaml", help="the SFT → RFT config")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=None, help="directory for runs and results (default: a new runs/ dir)")
    ap.add_argument(
        "--sft-lr", type=float, default=None, help="learning rate of the SFT-only arm (default: the config's)"
    )
    ap.add_argument("--time-cap", action="store_true", help="also stop the SFT-only arm at the SFT → RFT CPU seconds")
    ap.add_argument(
        "--sft-from",
        type=Path,
        default=None,
        help="reuse the SFT-only arms of this flagship.json (valid after a change to the dense grader only: SFT "
        "trains without graders, and the pass rate is in_range's)",
    )
    args = ap.parse_args(argv)
    out = args.out or REPO / "runs" / f"flagship-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    if "sft" not in raw.get("stages", {}) or "rft" not in raw.get("stages", {}):
        raise SystemExit(f"{args.config}: the flagship benchmark needs a config with stages.sft and stages.rft")
    t0 = time.perf_counter()
    done: dict[int, dict[str, Any]] = {}
    if (out / "flagship.json").exists():  # a seed already measured in --out is kept, not rerun
        done = {s["seed"]: s for s in json.loads((out / "flagship.json").read_text())["seeds"]}
    previous_sft: dict[int, dict[str, Any]] = {}
    if args.sft_from is not None:
        for s in json.loads(args.sft_from.read_text())["seeds"]:
            previous_sft[s["seed"]] = {**s["arms"]["sft"], "reused_from": str(args.sft_from)}
    seeds: list[dict[str, Any]] = []
    for seed in args.seeds:
        if seed in done:
            print(f"seed {seed}: kept from {out / 'flagship.json'}", flush=True)
            seeds.append(done[seed])
            continue
        print(f"seed {seed}: {out / f'seed{seed}'}", flush=True)
        reuse = previous_sft.get(seed)
        seeds.append(
            run_seed(
                raw,
                args.config,
                seed,
                out / f"seed{seed}",
                sft_lr=args.sft_lr,
                time_cap=args.time_cap,
                sft_arm=reuse,
            )
        )
        _write(out, args.config, seeds + [s for k, s in done.items() if k not in args.seeds])
        print(table(seeds, summarise(seeds)), flush=True)
    _write(out, args.config, seeds + [s for k, s in done.items() if k not in args.seeds])
    print(table(seeds, summarise(seeds)), flush=True)
    plot(seeds, summarise(seeds), out / "flagship.png")
    print(f"\nwrote {out / 'flagship.json'} and {out / 'flagship.png'} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
