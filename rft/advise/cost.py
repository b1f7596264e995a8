"""The advisor's cost estimate: how long the recommended full run would train on this machine.

Step counts come from the config ``--write-config`` writes for the recommendation
(:func:`rft.advise.writer.build_config`); seconds per step from what was measured here:
the pilots' median step times (``--pilot``), else, for RFT only, the probe's generation
time per completion times the group batch, times :data:`RFT_STEP_OVER_GENERATION` for the
backward pass and the rewards. It is an estimate: model loading, evaluation and
checkpointing are left out, and step times vary with completion lengths.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rft.advise.writer import build_config
from rft.core import GraderSet
from rft.core.errors import ConfigError

if TYPE_CHECKING:
    from rft.advise.advisor import Advice

__all__ = ["RFT_STEP_OVER_GENERATION", "CostEstimate", "StageCost", "estimate_cost"]

#: Without pilots, an RFT step is taken to cost this many times generating its completions
#: (measured by the probe): the backward pass and the rewards come on top.
RFT_STEP_OVER_GENERATION = 1.5


@dataclass
class StageCost:
    """One stage: its full-run steps, seconds per step and where that number comes from."""

    steps: int
    step_s: float | None
    total_s: float | None
    basis: str | None


@dataclass
class CostEstimate:
    """The full run's estimated training time (the ``cost`` object of ``rft advise --json``)."""

    recommendation: str
    stages: dict[str, StageCost]
    total_s: float | None
    estimate: bool = True
    note: str = ""
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


def _pilot_step(advice: Advice, stage: str) -> tuple[float | None, str | None]:
    pilots = getattr(advice, "pilot", None)
    if pilots is None:
        return None, None
    order = [pilots.winner] + [a for a in pilots.arms if a != pilots.winner]
    for name in order:
        arm = pilots.arms[name]
        t = arm.step_s.get(stage)
        if t:
            return float(t), f"pilot {name}: median of {arm.steps.get(stage, 0)} steps"
    return None, None


def estimate_cost(advice: Advice, *, grader_set: GraderSet | None = None) -> CostEstimate | None:
    """Estimate the recommended full run's training time; None when it trains nothing.

    Returns:
        the estimate, with ``total_s`` None when a stage's step time was not measured
        (``missing`` names it: run ``--pilot``).
    """
    try:
        cfg = build_config(advice, "rft-advise.yaml", grader_set=grader_set)
    except ConfigError:
        return None
    stages: dict[str, StageCost] = {}
    missing: list[str] = []
    for stage, section in cfg["stages"].items():
        steps = int(section["trl"]["max_steps"])
        step_s, basis = _pilot_step(advice, stage)
        probe = advice.probe
        if step_s is None and stage == "rft" and probe is not None and probe.seconds_per_completion:
            batch = int(section["trl"]["per_device_train_batch_size"])
            step_s = probe.seconds_per_completion * batch * RFT_STEP_OVER_GENERATION
            basis = (
                f"probe: {probe.seconds_per_completion:.3g} s per completion × {batch} completions × "
                f"{RFT_STEP_OVER_GENERATION} (backward pass and rewards)"
            )
        if step_s is None:
            missing.append(stage)
        stages[stage] = StageCost(
            steps=steps,
            step_s=round(step_s, 4) if step_s is not None else None,
            total_s=round(step_s * steps, 1) if step_s is not None else None,
            basis=basis,
        )
    totals = [s.total_s for s in stages.values()]
    total = round(sum(t for t in totals if t is not None), 1) if not missing else None
    note = (
        "an estimate of training time on this machine from measured step times; model loading, "
        "evaluation and checkpoints are not included"
    )
    if missing:
        note += f"; not measured: {', '.join(missing)} (run with --pilot to measure every stage)"
    return CostEstimate(recommendation=advice.recommendation, stages=stages, total_s=total, note=note, missing=missing)
