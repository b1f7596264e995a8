"""The SFT-vs-RFT advisor behind ``rft advise``: stages with typed results, run by :mod:`rft.advise.advisor`.

:mod:`~rft.advise.stats` (dataset statistics) → :mod:`~rft.advise.checks` (grader
verifiability and gameability) → :mod:`~rft.advise.probe` (base-model probe) →
:mod:`~rft.advise.rules` (signals and the decision) → :mod:`~rft.advise.writer` (the config).
"""

from __future__ import annotations

from rft.advise.advisor import Advice, advice_schema, advise
from rft.advise.checks import Verifiability, check_verifiability
from rft.advise.probe import ProbeOptions, ProbeResult, pass_at_k, run_probe
from rft.advise.rules import Signal, Step, collect_signals, decide
from rft.advise.stats import DatasetStats, dataset_stats
from rft.advise.thresholds import RECOMMENDATIONS, THRESHOLDS
from rft.advise.writer import build_config, write_config

__all__ = [
    "RECOMMENDATIONS",
    "THRESHOLDS",
    "Advice",
    "DatasetStats",
    "ProbeOptions",
    "ProbeResult",
    "Signal",
    "Step",
    "Verifiability",
    "advice_schema",
    "advise",
    "build_config",
    "check_verifiability",
    "collect_signals",
    "dataset_stats",
    "decide",
    "pass_at_k",
    "run_probe",
    "write_config",
]
