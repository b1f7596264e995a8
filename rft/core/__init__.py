"""The grader core: Sample, Outcome, Grade, Grader, GraderSet, errors and the helpers graders share.

Knows nothing of plugins, training, Ray or the CLI (a test enforces it). Import the public
names from here (``from rft.core import GraderSet``); the modules behind them may move.
"""

from __future__ import annotations

from rft.core.grading import (
    ERROR_KINDS,
    INJECTED_NAMES,
    Grade,
    Grader,
    GraderEntry,
    GraderSet,
    Outcome,
    OutcomeKind,
    Sample,
    as_grader,
    build_entry,
    coerce_result,
    grader,
    load_yaml_or_json,
    raise_for_errors,
)

__all__ = [
    "ERROR_KINDS",
    "INJECTED_NAMES",
    "Grade",
    "Grader",
    "GraderEntry",
    "GraderSet",
    "Outcome",
    "OutcomeKind",
    "Sample",
    "as_grader",
    "build_entry",
    "coerce_result",
    "grader",
    "load_yaml_or_json",
    "raise_for_errors",
]
