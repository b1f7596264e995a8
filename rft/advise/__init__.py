"""The SFT-vs-RFT advisor behind ``rft advise``: stages with typed results, run by :mod:`rft.advise.advisor`.

:mod:`~rft.advise.stats` (dataset statistics) → :mod:`~rft.advise.checks` (grader
verifiability and gameability) → :mod:`~rft.advise.probe` (base-model probe) →
:mod:`~rft.advise.rules` (signals and the decision) → :mod:`~rft.advise.pilots` (``--pilot``:
short trainings at an equal budget; the measured winner decides) → :mod:`~rft.advise.cost`
(the full run's estimated time) → :mod:`~rft.advise.writer` (the config).
"""

from __future__ import annotations

from rft.advise.advisor import Advice, advice_schema, advise
from rft.advise.checks import Verifiability, check_verifiability
from rft.advise.cost import CostEstimate, estimate_cost
from rft.advise.pilots import PilotArm, PilotBudget, PilotResult, apply_pilots, parse_budget, run_pilots
from rft.advise.probe import LearnableBand, ProbeOptions, ProbeResult, learnable_band, pass_at_k, run_probe
from rft.advise.rules import Signal, Step, collect_signals, decide
from rft.advise.stats import DatasetStats, dataset_stats
from rft.advise.thresholds import RECOMMENDATIONS, THRESHOLDS
from rft.advise.writer import build_config, write_config

__all__ = [
    "RECOMMENDATIONS",
    "THRESHOLDS",
    "Advice",
    "CostEstimate",
    "DatasetStats",
    "LearnableBand",
    "PilotArm",
    "PilotBudget",
    "PilotResult",
    "ProbeOptions",
    "ProbeResult",
    "Signal",
    "Step",
    "Verifiability",
    "advice_schema",
    "advise",
    "apply_pilots",
    "build_config",
    "check_verifiability",
    "collect_signals",
    "dataset_stats",
    "decide",
    "estimate_cost",
    "learnable_band",
    "parse_budget",
    "pass_at_k",
    "run_pilots",
    "run_probe",
    "write_config",
]
