"""rftkit: reinforcement fine-tuning for language models, centered on pluggable graders.

The public API is small::

    import rft

    @rft.grader
    def exact_answer(completion: str, answer: str) -> float:
        return float(completion.strip() == answer.strip())

Importing ``rft`` is light: torch, ray and trl load only when a command needs them.
"""

from __future__ import annotations

from rft.core import (
    Environment,
    Grade,
    Grader,
    GraderEntry,
    GraderSet,
    Outcome,
    OutcomeKind,
    Sample,
    Tool,
    environment,
    grader,
    tool,
)
from rft.core.errors import (
    ConfigError,
    DataError,
    GraderError,
    PluginError,
    RFTError,
    UnknownGraderError,
)
from rft.core.version import __version__
from rft.plugins import hookimpl

__all__ = [
    "__version__",
    "grader",
    "tool",
    "environment",
    "Environment",
    "Tool",
    "Grade",
    "Grader",
    "GraderEntry",
    "GraderSet",
    "Outcome",
    "OutcomeKind",
    "Sample",
    "hookimpl",
    "RFTError",
    "ConfigError",
    "DataError",
    "GraderError",
    "PluginError",
    "UnknownGraderError",
]
