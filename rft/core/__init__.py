"""The grader core: Sample, Outcome, Grade, Grader, GraderSet, errors and the helpers graders share.

Knows nothing of plugins, training, Ray or the CLI (tests/test_layering.py enforces it).
Import the public names from here (``from rft.core import GraderSet``); the modules
behind them may move:

- :mod:`rft.core.outcome`: Grade, OutcomeKind, Outcome, ERROR_KINDS, coerce_result
- :mod:`rft.core.sample`: Sample, INJECTED_NAMES, TRL_NAMES
- :mod:`rft.core.grader`: Grader, the ``@grader`` decorator, as_grader
- :mod:`rft.core.environment`: Environment, Tool, the ``@environment`` and ``@tool`` decorators
- :mod:`rft.core.graderset`: GraderEntry, GraderSet, RewardError, REWARD_ERROR_KINDS, build_entry,
  load_yaml_or_json, raise_for_errors

Building a GraderSet from a config or file (which looks graders up in the plugin
registry) is the plugins layer's job: :func:`rft.plugins.grader_set_from_config`.
"""

from __future__ import annotations

from rft.core.environment import Environment, Tool, environment, tool
from rft.core.grader import Grader, as_grader, grader
from rft.core.graderset import (
    REWARD_ERROR_KINDS,
    GraderEntry,
    GraderSet,
    RewardError,
    build_entry,
    load_yaml_or_json,
    raise_for_errors,
)
from rft.core.outcome import ERROR_KINDS, Grade, Outcome, OutcomeKind, coerce_result
from rft.core.sample import INJECTED_NAMES, TRL_NAMES, Sample

__all__ = [
    "ERROR_KINDS",
    "Environment",
    "Tool",
    "environment",
    "tool",
    "INJECTED_NAMES",
    "REWARD_ERROR_KINDS",
    "TRL_NAMES",
    "Grade",
    "Grader",
    "GraderEntry",
    "GraderSet",
    "Outcome",
    "OutcomeKind",
    "RewardError",
    "Sample",
    "as_grader",
    "build_entry",
    "coerce_result",
    "grader",
    "load_yaml_or_json",
    "raise_for_errors",
]
