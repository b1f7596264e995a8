"""Stage 5 of the advisor: a starting run config (the format of ``rft train``) for the advice.

The data section is the advised data file with the default row fields, so ``rft train``
reads the rows through the same row model the advisor measured them with.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rft.advise.probe import ProbeResult
from rft.advise.stats import DatasetStats
from rft.core import GraderSet
from rft.core.errors import ConfigError

if TYPE_CHECKING:
    from rft.advise.advisor import Advice

__all__ = ["DEFAULT_CONFIG_MODEL", "EVAL_SIZE", "build_config", "num_generations", "write_config"]

#: Recommendations that lead to a training config, and the stages each one runs.
_STAGES = {"sft": ("sft",), "rft": ("rft",), "sft_then_rft": ("sft", "rft")}
#: Default model of a written config when no probe model was given (the embedded default).
DEFAULT_CONFIG_MODEL = "smollm2-135m-instruct"
#: Written SFT stage: batch size, and a cap on steps (3 epochs under 500 rows, 2 under 5000, else 1).
SFT_BATCH = 8
SFT_MAX_STEPS = 2000
#: Written RFT stage: prompts per step (batch = this × num_generations), and bounds on steps (one pass).
RFT_PROMPTS_PER_STEP = 2
RFT_MIN_STEPS, RFT_MAX_STEPS = 20, 500
#: Why there is no config for a recommendation that trains nothing yet.
_NOTHING_TO_TRAIN = {
    "collect_labels": "collect reference outputs (or demonstrations) first",
    "rft_with_judge": "add a model-judge grader (score_model / label_model) to a grader-set file and pass it "
    "with --graders",
    "none": "the base model already does the task",
}


def _rel(path: str | Path, base: Path) -> str:
    p = Path(path).resolve()
    try:
        return os.path.relpath(p, base)
    except ValueError:  # another drive on Windows
        return str(p)


def num_generations(probe: ProbeResult | None) -> int:
    """Group size: the learnable band's (the one that gives most probed prompts mixed outcomes),
    else one where a prompt group holds a passing sample with probability ≥ 1/2."""
    if probe is not None and probe.band is not None and probe.band.num_generations is not None:
        return int(min(16, max(2, probe.band.num_generations)))
    if probe is None or not probe.pass_at_1:
        return 8
    p = min(max(probe.pass_at_1, 1e-6), 0.999)
    g = math.ceil(math.log(0.5) / math.log(1 - p))
    return int(min(16, max(4, g)))


def _max_tokens(stats: DatasetStats, probe: ProbeResult | None) -> int:
    if probe is not None and probe.max_new_tokens:
        return probe.max_new_tokens
    words = stats.references.words.p90 if stats.references.words else None
    return 256 if not words else max(16, min(512, 2 * int(words) + 16))


def _graders(advice: Advice, base: Path, grader_set: GraderSet | None, stages: tuple[str, ...]) -> Any:
    inputs = advice.inputs
    graders: Any = None
    if inputs.get("graders"):
        if inputs.get("plugins") and grader_set is not None and grader_set.spec is not None:
            spec = dict(grader_set.spec)
            spec["plugins"] = [_rel(p, base) if Path(p).suffix == ".py" else p for p in spec.get("plugins") or []]
            graders = spec
        else:
            graders = _rel(inputs["graders"], base)
    elif "answer" in advice.stats.columns:
        graders = [{"name": "exact_match", "weight": 1.0}]
    if graders is None and "rft" in stages:
        raise ConfigError(
            "the rft stage needs graders: pass --graders (rows have no `answer` column for exact_match)",
            key="--write-config",
        )
    return graders


#: Held-out share a written config carves out of the training rows when no eval file was given.
EVAL_SIZE = 0.1


def build_config(
    advice: Advice,
    path: str | Path,
    *,
    grader_set: GraderSet | None = None,
    model: str | None = None,
    recommendation: str | None = None,
) -> dict[str, Any]:
    """A starting run config (the format of ``rft train``) for the recommendation.

    Stages follow the recommendation (``sft``, ``rft`` or both); the model is ``model``,
    else the probe model, else :data:`DEFAULT_CONFIG_MODEL`; the graders are the advised
    ones (a path to the grader-set file, inlined when ``--plugin`` added plugins), else
    ``exact_match`` on an ``answer`` column; sizes come from the data and the probe
    (group size from the learnable band or pass@1, completion length from the references or
    the probe); step counts cover the full data. Without an eval file, ``data.eval_size``
    (:data:`EVAL_SIZE`) holds out rows so the run is measured.

    Args:
        recommendation: build for this recommendation instead of the advice's (a pilot arm).

    Raises:
        ConfigError: the recommendation has nothing to train yet (collect labels, add a
            model judge, or nothing to gain), or an RFT stage has no usable grader.
    """
    rec = recommendation or advice.recommendation
    if rec not in _STAGES:
        raise ConfigError(
            f"no training config for recommendation {rec!r}: {_NOTHING_TO_TRAIN[rec]}", key="--write-config"
        )
    out = Path(path)
    base = out.parent.resolve()
    inputs, stats = advice.inputs, advice.stats
    stages = _STAGES[rec]
    graders = _graders(advice, base, grader_set, stages)

    cfg: dict[str, Any] = {
        "seed": 0,
        "output_dir": f"runs/{out.stem}",
        "model": model or inputs.get("probe_model") or DEFAULT_CONFIG_MODEL,
        "data": {"train": _rel(inputs["data"], base) if inputs.get("data") else "train.jsonl"},
    }
    if inputs.get("eval"):
        cfg["data"]["eval"] = _rel(inputs["eval"], base)
    else:
        cfg["data"]["eval_size"] = EVAL_SIZE
    if graders is not None:
        cfg["graders"] = graders
    labeled = stats.references.rows
    cfg["stages"] = {}
    if "sft" in stages:
        epochs = 3 if labeled < 500 else 2 if labeled < 5000 else 1
        steps = min(SFT_MAX_STEPS, max(10, math.ceil(labeled / SFT_BATCH) * epochs))
        cfg["stages"]["sft"] = {"trl": {"max_steps": int(steps), "per_device_train_batch_size": SFT_BATCH}}
    if "rft" in stages:
        g = num_generations(advice.probe)
        cfg["stages"]["rft"] = {
            "num_generations": g,
            "temperature": 1.0,
            "max_completion_length": int(_max_tokens(stats, advice.probe)),
            "trl": {
                "max_steps": int(min(RFT_MAX_STEPS, max(RFT_MIN_STEPS, math.ceil(stats.rows / RFT_PROMPTS_PER_STEP)))),
                "per_device_train_batch_size": RFT_PROMPTS_PER_STEP * g,
            },
        }
    if graders is None:
        cfg["eval"] = {"enabled": False}
    return cfg


def _pilot_lines(advice: Advice) -> str:
    """Header lines: the pilots' measured winner and the cost estimate, when there are any."""
    lines = []
    pilots = advice.pilot
    if pilots is not None:
        arms = ", ".join(
            f"{name} {'n/a' if a.pass_rate is None else f'{a.pass_rate:.2f}'}" for name, a in pilots.arms.items()
        )
        lines.append(
            f"# pilots at {pilots.budget.describe()} each (held-out pass rate): {arms}; winner {pilots.winner}"
            + ("" if pilots.agrees else f" (the rules said {pilots.rule_recommendation})")
        )
    cost = advice.cost
    if cost is not None and cost.total_s is not None and cost.recommendation == advice.recommendation:
        lines.append(f"# estimated training time on the advising machine: {cost.total_s / 60:.1f} min (an estimate)")
    return "".join(line + "\n" for line in lines)


def write_config(
    advice: Advice, path: str | Path, *, grader_set: GraderSet | None = None, model: str | None = None
) -> Path:
    """Write :func:`build_config` as YAML, validated against the run-config schema first.

    Returns:
        the path written.

    Raises:
        ConfigError: nothing to train for this recommendation, or the config would be invalid.
    """
    import yaml

    from rft.config.run import parse_config

    out = Path(path)
    cfg = build_config(advice, out, grader_set=grader_set, model=model)
    parse_config(cfg, source=str(out), base_dir=out.parent, check_trl=False)
    header = (
        f"# Starting run config written by `rft advise` — recommendation: {advice.recommendation}\n"
        f"# branch: {advice.branch}\n"
        + "".join(f"#   {reason}\n" for reason in advice.reasons[:6])
        + _pilot_lines(advice)
        + "# Check sizes (stages.*.trl) against your hardware, then: rft train "
        + f"{out.name} --dry-run\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return out
