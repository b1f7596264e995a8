"""Run reports: read ``metrics.jsonl`` and ``eval.json`` of a run, write plots and ``report.md``.

``write_report(run_dir)`` is called at the end of ``rft train``; it can be re-run on any
run directory (also one that is still training) to refresh the summary.

``signal.png`` puts the RFT training reward and the held-out quality of the in-run
evaluations (``eval.every_steps``; records with ``eval/quality``) on one plot over steps,
with the share of informative groups (groups whose completions' rewards differ: a
dynamic-sampling key ending in ``informative_share`` when the run logs one, else
``1 - frac_reward_zero_std`` from TRL) and the guard's alarms (records with ``guard/alarm``)
as marked steps; the alarms are marked on ``rewards.png`` too.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "advantage_shares",
    "alarms",
    "heldout_curve",
    "informative_share",
    "read_jsonl",
    "reward_curves",
    "rft_over_sft",
    "write_report",
]

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


def heldout_curve(metrics: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, quality)`` of the held-out evaluations during RFT (``eval/quality``, by ``eval.best_by``).

    >>> heldout_curve([{"stage": "rft", "step": 5, "eval/quality": 0.25}, {"stage": "rft", "step": 6, "loss": 0.1}])
    [(5, 0.25)]
    """
    return [
        (int(r["step"]), float(r["eval/quality"]))
        for r in metrics
        if r.get("stage") == "rft" and r.get("eval/quality") is not None
    ]


def informative_share(metrics: list[dict[str, Any]]) -> tuple[str, list[tuple[int, float]]] | None:
    """The share of informative groups per RFT step, and the key it was read from.

    A key ending in ``informative_share`` (dynamic sampling's metric) wins; otherwise
    ``1 - frac_reward_zero_std`` (TRL's share of groups whose rewards are all equal).

    >>> informative_share([{"stage": "rft", "step": 1, "frac_reward_zero_std": 0.75}])
    ('1 - frac_reward_zero_std', [(1, 0.25)])
    """
    rft = [r for r in metrics if r.get("stage") == "rft"]
    keys = sorted({k for r in rft for k in r if k.endswith("informative_share")})
    if keys:
        key = keys[0]
        return key, [(int(r["step"]), float(r[key])) for r in rft if r.get(key) is not None]
    pts = [
        (int(r["step"]), 1.0 - float(r["frac_reward_zero_std"]))
        for r in rft
        if r.get("frac_reward_zero_std") is not None
    ]
    return ("1 - frac_reward_zero_std", pts) if pts else None


def alarms(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The guard's alarm records (``guard/alarm``) of the RFT stage, in step order."""
    return sorted(
        (r for r in metrics if r.get("stage") == "rft" and r.get("guard/alarm")), key=lambda r: int(r["step"])
    )


def _mark_alarms(ax: Any, found: list[dict[str, Any]]) -> None:
    by_step: dict[int, list[str]] = defaultdict(list)
    for a in found:
        by_step[int(a["step"])].append(str(a["guard/alarm"]))
    for i, (step, kinds) in enumerate(sorted(by_step.items())):
        ax.axvline(step, color="red", linestyle=":", linewidth=1.2, label="guard alarm" if i == 0 else None)
        ax.annotate(
            ", ".join(kinds),
            (step, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="red",
        )


def _plot_signal(
    train: Sequence[tuple[int, float]],
    heldout: Sequence[tuple[int, float]],
    share: tuple[str, list[tuple[int, float]]] | None,
    found: list[dict[str, Any]],
    best_by: str,
    out: Path,
) -> bool:
    if not train and not heldout:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 3.8))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], color="tab:blue", label="train reward")
    ax.set_xlabel("RFT step")
    ax.set_ylabel("train reward")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right = ax.twinx()
    if heldout:
        right.plot(
            [s for s, _ in heldout], [v for _, v in heldout], "s-", color="tab:green", label=f"held-out {best_by}"
        )
    if share is not None and share[1]:
        right.plot(
            [s for s, _ in share[1]],
            [v for _, v in share[1]],
            color="tab:gray",
            alpha=0.6,
            label=f"informative ({share[0]})",
        )
    right.set_ylabel(f"held-out {best_by} / share")
    _mark_alarms(ax, found)
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="best")
    ax.set_title("Training reward vs held-out")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return True


def _plot_rewards(
    curves: dict[str, list[tuple[int, float]]],
    out: Path,
    combined: Sequence[tuple[int, float]] = (),
    found: Sequence[dict[str, Any]] = (),
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
    _mark_alarms(ax, list(found))
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
        lines += _episode_rows(results, phases)
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
        if _plot_rewards(curves, run_dir / "rewards.png", combined, alarms(metrics)):
            lines += ["![rewards](rewards.png)", ""]
        lines += ["| grader | first step | last step |", "|---|---|---|"]
        for name, pts in sorted(curves.items()):
            lines.append(f"| {name} | {_fmt(pts[0][1])} | {_fmt(pts[-1][1])} |")
        for key, label in (
            ("episodes/success_rate", "task success (training episodes)"),
            ("episodes/tool_calls", "tool calls per episode"),
            ("episodes/tool_errors_per_call", "tool errors per call"),
        ):
            pts = [r[key] for r in metrics if r.get("stage") == "rft" and r.get(key) is not None]
            if pts:  # agentic runs (rft.train.episodes.episode_metrics)
                lines.append(f"| {label} | {_fmt(pts[0])} | {_fmt(pts[-1])} |")
        lines.append("")
    lines += _signal_section(run_dir, metrics)
    lines += _advantage_section(metrics)
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
                comp = trajectory_line(s) if s.get("completion_messages") else f"`{_one_line(s.get('completion'))}`"
                lines.append(f"- **{s.get('prompt', '')[:120]}** → {comp} (reward {_fmt(s.get('reward'))})")
            lines.append("")
    out = run_dir / "report.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def _one_line(text: Any, limit: int = 200) -> str:
    return str(text or "").replace("\n", " ")[:limit]


def trajectory_line(sample: dict[str, Any]) -> str:
    """A multi-turn episode on one line: each tool call with its result, then the answer.

    >>> trajectory_line({"completion_messages": [
    ...     {"role": "assistant", "content": "", "tool_calls": [
    ...         {"type": "function", "function": {"name": "stock", "arguments": {"item": "pear"}}}]},
    ...     {"role": "tool", "name": "stock", "content": "47"},
    ...     {"role": "assistant", "content": "We have 47 pears."}]})
    "`stock(item='pear')` → `47` → `We have 47 pears.`"
    """
    parts: list[str] = []
    for m in sample.get("completion_messages") or []:
        if m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                fn = tc.get("function") or {}
                args = fn.get("arguments")
                shown = ", ".join(f"{k}={v!r}" for k, v in args.items()) if isinstance(args, dict) else str(args)
                parts.append(f"`{fn.get('name')}({shown})`")
            if m.get("content"):
                parts.append(f"`{_one_line(m['content'], 120)}`")
        elif m.get("role") == "tool":
            parts.append(f"`{_one_line(m.get('content'), 80)}`")
    return " → ".join(parts) or "`(empty)`"


def _episode_rows(results: dict[str, Any], phases: list[str]) -> list[str]:
    """Rows of the held-out table for agentic runs: task success and tool use per phase."""
    if not any(results[p].get("episodes") for p in phases):
        return []

    def cell(p: str, key: str) -> str:
        return _fmt((results[p].get("episodes") or {}).get(key))

    return [
        "| task success | " + " | ".join(cell(p, "success_rate") for p in phases) + " |",
        "| tool calls per episode | " + " | ".join(cell(p, "mean_tool_calls") for p in phases) + " |",
        "| tool errors | "
        + " | ".join(str((results[p].get("episodes") or {}).get("tool_errors", "-")) for p in phases)
        + " |",
    ]


def _signal_section(run_dir: Path, metrics: list[dict[str, Any]]) -> list[str]:
    """The report's "Training signal and guard" section (and ``signal.png``)."""
    train = [
        (int(r["step"]), float(r["reward"]))
        for r in metrics
        if r.get("stage") == "rft" and r.get("reward") is not None and "loss" in r
    ]
    heldout = heldout_curve(metrics)
    share = informative_share(metrics)
    found = alarms(metrics)
    if not heldout and not found and share is None:
        return []
    best_by = next((str(r["eval/best_by"]) for r in metrics if r.get("eval/best_by")), "pass_rate")
    lines = ["## Training signal and guard", ""]
    if _plot_signal(train, heldout, share, found, best_by, run_dir / "signal.png"):
        lines += ["![signal](signal.png)", ""]
    if heldout:
        lines += [
            f"Held-out {best_by} during RFT: " + ", ".join(f"step {s}: {_fmt(v)}" for s, v in heldout) + ".",
            "",
        ]
    best = run_dir / "adapter-best" / "rft-best.json"
    if best.exists():
        meta = json.loads(best.read_text())
        lines += [
            f"`adapter-best/`: step {meta.get('step')}, held-out {meta.get('best_by')} {_fmt(meta.get('quality'))}.",
            "",
        ]
    if share is not None and share[1]:
        vals = [v for _, v in share[1]]
        lines += [f"Informative groups (`{share[0]}`): mean {_fmt(sum(vals) / len(vals))} over {len(vals)} steps.", ""]
    if found:
        lines += ["| step | alarm | action | what was seen |", "|---|---|---|---|"]
        for a in found:
            msg = str(a.get("guard/message", "")).replace("|", "/")
            lines.append(f"| {a['step']} | {a['guard/alarm']} | {a.get('guard/action')} | {msg} |")
        lines.append("")
    done = run_dir / "rft" / "DONE"
    if done.exists():
        info = json.loads(done.read_text())
        if info.get("stopped_by"):
            how = (
                f"; `adapter/` is `adapter-best/` (step {info.get('best_step')})"
                if info.get("final_adapter") == "adapter-best"
                else "; `adapter/` is the adapter of that step"
            )
            lines += [
                f"The guard stopped RFT at step {info['stopped_by']['step']} ({info['stopped_by']['kind']}){how}.",
                "",
            ]
    return lines


def advantage_shares(metrics: list[dict[str, Any]]) -> dict[str, float]:
    """Per grader, the mean over RFT steps of ``graders/<id>/advantage_share`` (when the run logs it).

    >>> advantage_shares([{"stage": "rft", "step": 1, "graders/a/advantage_share": 0.75},
    ...                   {"stage": "rft", "step": 2, "graders/a/advantage_share": 0.25}])
    {'a': 0.5}
    """
    values: dict[str, list[float]] = defaultdict(list)
    for r in metrics:
        if r.get("stage") != "rft":
            continue
        for key, value in r.items():
            if key.startswith("graders/") and key.endswith("/advantage_share") and value is not None:
                values[key[len("graders/") : -len("/advantage_share")]].append(float(value))
    return {k: sum(v) / len(v) for k, v in sorted(values.items())}


def _advantage_section(metrics: list[dict[str, Any]]) -> list[str]:
    shares = advantage_shares(metrics)
    if not shares:
        return []
    lines = ["## Contribution to the advantage", "", "| grader | mean share |", "|---|---|"]
    lines += [f"| {g} | {_fmt(v)} |" for g, v in shares.items()]
    return lines + [""]
