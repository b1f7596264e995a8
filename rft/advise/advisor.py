"""The SFT-vs-RFT advisor: runs the stages in order and assembles the advice.

``rft advise DATA`` answers "SFT, RFT, or SFT then RFT?" from measurements rather than
prose. The stages pass typed results, each with ``to_dict()`` for ``--json``:

1. :func:`rft.advise.stats.dataset_stats` → :class:`~rft.advise.stats.DatasetStats`
2. :func:`rft.advise.checks.check_verifiability` → :class:`~rft.advise.checks.Verifiability`
3. :func:`rft.advise.probe.run_probe` (optional) → :class:`~rft.advise.probe.ProbeResult`
4. :func:`rft.advise.rules.collect_signals` and :func:`rft.advise.rules.decide` → steps
5. :func:`rft.advise.pilots.run_pilots` (``--pilot``, optional) → :class:`~rft.advise.pilots.PilotResult`;
   :func:`rft.advise.pilots.apply_pilots` makes the measured winner the recommendation
6. :func:`rft.advise.cost.estimate_cost` → :class:`~rft.advise.cost.CostEstimate`
7. :func:`rft.advise.writer.write_config` (``--write-config``)

Rows are read by the one row model (:mod:`rft.data.rows`), as ``rft train`` reads them.

>>> rows = [{"prompt": f"Is {i} even?", "label": "yes" if i % 2 == 0 else "no"} for i in range(2000)]
>>> advice = advise(rows)
>>> advice.recommendation, advice.branch, advice.stats.references.rows
('sft', 'labeled/large', 2000)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rft.advise.checks import Verifiability, check_verifiability, make_scorer
from rft.advise.cost import CostEstimate, estimate_cost
from rft.advise.probe import ProbeOptions, ProbeResult, run_probe
from rft.advise.rules import Signal, Step, collect_signals, decide, warnings
from rft.advise.stats import DatasetStats, as_examples, dataset_stats
from rft.advise.thresholds import THRESHOLDS
from rft.core import GraderSet
from rft.core.errors import ConfigError, DataError
from rft.data import Example

if TYPE_CHECKING:
    from rft.advise.pilots import PilotResult

__all__ = ["Advice", "advice_schema", "advise"]


def advice_schema() -> dict[str, Any]:
    """The JSON Schema of ``rft advise --json`` (shipped as ``rft/advise/advice.schema.json``)."""
    schema: dict[str, Any] = json.loads((Path(__file__).parent / "advice.schema.json").read_text())
    return schema


@dataclass
class Advice:
    """The advisor's answer: a recommendation, the rules that led to it, and every number."""

    recommendation: str
    branch: str
    reasons: list[str]
    steps: list[Step]
    stats: DatasetStats
    verifiability: Verifiability
    probe: ProbeResult | None
    signals: list[Signal]
    warnings: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)
    pilot: PilotResult | None = None
    cost: CostEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``rft advise --json`` (schema: ``rft/advise/advice.schema.json``)."""
        return {
            "schema_version": 1,
            "recommendation": self.recommendation,
            "branch": self.branch,
            "reasons": list(self.reasons),
            "steps": [s.to_dict() for s in self.steps],
            "warnings": list(self.warnings),
            "stats": self.stats.to_dict(),
            "verifiability": self.verifiability.to_dict(),
            "probe": self.probe.to_dict() if self.probe is not None else None,
            "signals": [s.to_dict() for s in self.signals],
            "pilot": self.pilot.to_dict() if self.pilot is not None else None,
            "cost": self.cost.to_dict() if self.cost is not None else None,
            "thresholds": dict(THRESHOLDS),
            "inputs": dict(self.inputs),
        }


def advise(
    rows: Sequence[Example | Mapping[str, Any]],
    *,
    grader_set: GraderSet | None = None,
    eval_rows: Sequence[Example | Mapping[str, Any]] | None = None,
    probe: ProbeOptions | None = None,
    pm: Any = None,
    progress: Callable[[int, int], None] | None = None,
    inputs: Mapping[str, Any] | None = None,
    probe_model: Any = None,
    probe_tokenizer: Any = None,
) -> Advice:
    """Measure the data (and optionally the base model) and recommend SFT, RFT or both.

    Args:
        rows: the training rows (:class:`rft.data.Example`, e.g. from :func:`rft.data.load_examples`,
            or raw rows, read by the row model).
        grader_set: the graders that would be the reward (None: unverifiable unless labeled).
        eval_rows: the eval split, if any.
        probe: probe options; None skips the probe. The probe needs a grader set.
        pm: plugin manager whose ``rft_advisor_signals`` implementations are called
            (default: built-ins and installed plugins).
        progress: probe progress callback ``(done, total)``.
        inputs: what the advice was computed from (paths), recorded in the output.
        probe_model: an already loaded model for the probe.
        probe_tokenizer: its tokenizer.

    Raises:
        DataError: no rows, or a row the row model rejects.
        ConfigError: a probe without graders.
    """
    if not rows:
        raise DataError("the dataset has no rows")
    if probe is not None and grader_set is None:
        raise ConfigError("the probe grades samples: pass --graders with --probe-model", key="probe")
    examples = as_examples(rows)
    evals = as_examples(eval_rows, source="eval row") if eval_rows is not None else None
    stats = dataset_stats(examples, evals)
    scorer = make_scorer(grader_set) if grader_set is not None else None
    try:
        verif = check_verifiability(examples, grader_set, executor=scorer)
        probe_result = None
        if probe is not None and grader_set is not None:
            probe_result = run_probe(
                examples,
                grader_set,
                probe,
                reference_reward=verif.reference.mean_reward if verif.reference is not None else None,
                progress=progress,
                model=probe_model,
                tokenizer=probe_tokenizer,
                executor=scorer,
            )
    finally:
        if scorer is not None:
            scorer.close()
    if pm is None:
        from rft.plugins import get_plugin_manager

        pm = get_plugin_manager()
    signals = collect_signals(pm, examples, stats, verifiability=verif, probe=probe_result)
    steps = decide(stats, verif, probe_result, signals)
    advice = Advice(
        recommendation=steps[-1].recommendation,
        branch=" > ".join(s.rule for s in steps),
        reasons=[f"{s.rule}: {s.because}" for s in steps]
        + [f"signal {s.plugin}:{s.name}: {s.reason}" for s in signals],
        steps=steps,
        stats=stats,
        verifiability=verif,
        probe=probe_result,
        signals=signals,
        warnings=warnings(stats, verif, probe_result),
        inputs=dict(inputs or {}),
    )
    advice.cost = estimate_cost(advice, grader_set=grader_set)
    return advice
