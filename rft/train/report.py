"""Run reports: read ``metrics.jsonl`` and ``eval.json`` of a run, write plots and ``report.md``.

``write_report(run_dir)`` is called at the end of ``rft train``; it can be re-run on any
run directory (also one that is still training) to refresh the summary.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["read_jsonl", "reward_curves", "rft_over_sft", "write_report"]

_PHASES = ("base", "sft", "rft")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (an absent file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reward_curves(metrics: list[dict[str, Any]], stage: str = "rft") -> dict[str, list[tuple[int, float]]]:
    """Per reward function, ``(step, mean)`` from TRL's ``rewards/<name>/mean`` logs.

    >>> reward_curves([{"stage": "rft", "step": 1, "rewards/exact/mean": 0.5}])
    {'exact': [(1, 0.5)]}
    """
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for rec in metrics:
        if rec.get("stage") != stage:
            continue
        for key, value in rec.items():
            if key.startswith("rewards/") and key.endswith("/mean") and value is not None:
                curves[key[len("rewards/") : -len("/mean")]].append((int(rec["step"]), float(value)))
    return dict(curves)


def _plot_rewards(
    curves: dict[str, list[tuple[int, float]]], out: Path, combined: Sequence[tuple[int, float]] = ()
) -> bool:
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, pts in sorted(curves.items()):
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", markersize=3, label=name)
    if combined:
        ax.plot([s for s, _ in combined], [v for _, v in combined], "k--", linewidth=1, label="reward (weighted)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("RFT step")
    ax.set_ylabel("mean reward")
    ax.set_title("Reward per grader")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def _plot_eval(results: dict[str, Any], out: Path) -> bool:
    phases = [p for p in _PHASES if p in results]
    if not phases:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graders = sorted({g for p in phases for g in results[p].get("graders", {})})
    series = ["pass_rate"] + graders
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(phases), 1)
    for k, phase in enumerate(phases):
        r = results[phase]
        values = [r.get("pass_rate") or 0.0] + [(r["graders"].get(g, {}).get("mean") or 0.0) for g in graders]
        ax.bar([i + k * width for i in range(len(series))], values, width=width, label=phase)
    ax.set_xticks([i + width * (len(phases) - 1) / 2 for i in range(len(series))])
    ax.set_xticklabels(["pass rate"] + [f"{g} (mean)" for g in graders], fontsize=8)
    ax.set_title("Held-out evaluation")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def _fmt(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def _delta(after: Any, before: Any) -> float | None:
    return None if after is None or before is None else float(after) - float(before)


def rft_over_sft(results: dict[str, Any]) -> list[str]:
    """Report lines: what the RFT stage added over the SFT checkpoint on held-out data.

    From ``eval.json``'s ``sft`` and ``rft`` phases; empty unless both were evaluated. Warns
    when RFT added nothing (neither the pass rate nor the mean reward went up).

    >>> rft_over_sft({"sft": {"pass_rate": 0.5, "mean_reward": 1.0}, "rft": {"pass_rate": 0.5, "mean_reward": 0.9}})[2]
    '**Warning: RFT added nothing over the SFT checkpoint** on held-out data (pass rate +0.000, mean reward -0.100): ...'
    """
    sft, rft = results.get("sft"), results.get("rft")
    if not sft or not rft:
        return []
    dp = _delta(rft.get("pass_rate"), sft.get("pass_rate"))
    dr = _delta(rft.get("mean_reward"), sft.get("mean_reward"))

    def signed(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.3f}"

    what = f"pass rate {signed(dp)}, mean reward {signed(dr)}"
    lines = ["## What RFT added over the SFT checkpoint", ""]
    measured = [d for d in (dp, dr) if d is not None]
    if measured and all(d <= 0 for d in measured):
        lines.append(
            f"**Warning: RFT added nothing over the SFT checkpoint** on held-out data ({what}): "
            "the RFT stage cost time without improving the result; compare against a longer SFT run "
            "(`rft advise DATA --pilot` measures both at an equal budget) before keeping it."
        )
    else:
        lines.append(
            f"On {rft.get('n', '?')} held-out rows, RFT changed the SFT checkpoint's results by: {what} "
            f"(pass rate {_fmt(sft.get('pass_rate'))} → {_fmt(rft.get('pass_rate'))}, "
            f"mean reward {_fmt(sft.get('mean_reward'))} → {_fmt(rft.get('mean_reward'))})."
        )
    lines.append("")
    return lines


def write_report(run_dir: str | Path) -> Path:
    """Write ``rewards.png``, ``eval.png`` and ``report.md`` into a run directory."""
    run_dir = Path(run_dir)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    results = json.loads((run_dir / "eval.json").read_text()) if (run_dir / "eval.json").exists() else {}
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    lines = [f"# rftkit run: {run_dir.name}", ""]
    if info.get("model"):
        lines += [f"- model: `{info['model'].get('name')}`", f"- stages: {', '.join(info.get('stages', []))}"]
    if info.get("started") and info.get("finished"):
        lines.append(f"- wall time: {(info['finished'] - info['started']) / 60:.1f} min")
    lines.append("")
    phases = [p for p in _PHASES if p in results]
    if phases:
        graders = sorted({g for p in phases for g in results[p].get("graders", {})})
        lines += ["## Held-out evaluation", "", "| | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
        lines.append("| mean reward | " + " | ".join(_fmt(results[p].get("mean_reward")) for p in phases) + " |")
        lines.append("| pass rate | " + " | ".join(_fmt(results[p].get("pass_rate")) for p in phases) + " |")
        for g in graders:
            lines.append(
                f"| {g} (mean) | "
                + " | ".join(_fmt(results[p]["graders"].get(g, {}).get("mean")) for p in phases)
                + " |"
            )
            errs = [results[p]["graders"].get(g, {}).get("errors", 0) for p in phases]
            if any(errs):
                lines.append(f"| {g} (errors) | " + " | ".join(str(e) for e in errs) + " |")
        n = results[phases[0]].get("n")
        lines += ["", f"{n} held-out rows per phase.", ""]
        if _plot_eval(results, run_dir / "eval.png"):
            lines += ["![eval](eval.png)", ""]
        lines += rft_over_sft(results)
    curves = reward_curves(metrics)
    if curves:
        lines += ["## RFT rewards per grader", ""]
        combined = [
            (int(r["step"]), float(r["reward"]))
            for r in metrics
            if r.get("stage") == "rft" and r.get("reward") is not None
        ]
        if _plot_rewards(curves, run_dir / "rewards.png", combined):
            lines += ["![rewards](rewards.png)", ""]
        lines += ["| grader | first step | last step |", "|---|---|---|"]
        for name, pts in sorted(curves.items()):
            lines.append(f"| {name} | {_fmt(pts[0][1])} | {_fmt(pts[-1][1])} |")
        lines.append("")
    step_times = [r["step_time_s"] for r in metrics if r.get("stage") == "rft" and r.get("step_time_s")]
    if step_times:
        lines += [
            f"RFT: {len(step_times)} steps, median step time {sorted(step_times)[len(step_times) // 2]:.2f} s.",
            "",
        ]
    for phase in phases:
        samples = results[phase].get("samples") or []
        if samples:
            lines += [f"### Sample completions ({phase})", ""]
            for s in samples[:3]:
                comp = str(s.get("completion", "")).replace("\n", " ")[:200]
                lines.append(f"- **{s.get('prompt', '')[:120]}** → `{comp}` (reward {_fmt(s.get('reward'))})")
            lines.append("")
    out = run_dir / "report.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out
