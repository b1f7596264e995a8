"""The error tree of rftkit.

Every error a user can cause derives from :class:`RFTError`, and every message
names what is wrong (the file, line, key, grader or plugin) and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "RFTError",
    "ConfigError",
    "DataError",
    "PluginError",
    "UnknownGraderError",
    "GraderError",
    "GraderFailure",
    "GraderInfrastructureError",
    "JudgeParseError",
    "JudgeBudgetError",
    "did_you_mean",
]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A hint naming the closest valid choice, and listing the valid ones.

    >>> did_you_mean("exact_mach", ["exact_match", "regex"])
    "did you mean 'exact_match'? (valid: exact_match, regex)"
    """
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1)
    listed = ", ".join(choices) if len(choices) <= 30 else ", ".join(choices[:30]) + ", …"
    if close:
        return f"did you mean {close[0]!r}? (valid: {listed})"
    return f"valid: {listed}" if choices else "nothing is registered"


class RFTError(Exception):
    """Base class of every error rftkit raises on purpose."""


class ConfigError(RFTError):
    """A config or grader-set file is invalid.

    Attributes:
        file: the file the value came from, when known.
        key: the dotted key path of the bad value, when known.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ": ".join(p for p in (str(file) if file else None, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class DataError(RFTError):
    """A dataset row is malformed; names the file and line."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        where = f"{file}:{line}" if file and line else (str(file) if file else "")
        super().__init__(f"{where}: {message}" if where else message)


class PluginError(RFTError):
    """A plugin failed to load, clashes with another or implements an unknown hook."""


class UnknownGraderError(RFTError, KeyError):
    """A grader name that no plugin registered."""

    def __init__(self, name: str, known: Iterable[str] = ()):
        self.name = name
        super().__init__(f"unknown grader {name!r}: {did_you_mean(name, known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class GraderError(RFTError):
    """A grader failed in a way that must stop the run.

    Attributes:
        grader: the grader's id in the grader set.
        plugin: the plugin that registered it.
        kind: the outcome kind (see :class:`rft.OutcomeKind`).
        sample_index: index of a failing sample in its batch, when known.
        sample: a failing sample (its inputs), when known.
        traceback: the grader's traceback text, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        grader: str | None = None,
        plugin: str | None = None,
        kind: str | None = None,
        sample_index: int | None = None,
        sample: object = None,
        traceback: str | None = None,
    ):
        self.grader = grader
        self.plugin = plugin
        self.kind = kind
        self.sample_index = sample_index
        self.sample = sample
        self.traceback = traceback
        super().__init__(message)

    def __reduce__(self):  # keep the attributes across Ray / multiprocessing
        return (
            _rebuild_grader_error,
            (self.args[0], self.grader, self.plugin, self.kind, self.sample_index, self.sample, self.traceback),
        )


def _rebuild_grader_error(message, grader, plugin, kind, sample_index, sample, traceback):
    return GraderError(
        message,
        grader=grader,
        plugin=plugin,
        kind=kind,
        sample_index=sample_index,
        sample=sample,
        traceback=traceback,
    )


# ---------------------------------------------------------------------------
# raised inside a grader to choose the kind of its error outcome
# ---------------------------------------------------------------------------


class GraderFailure(RFTError):
    """Raised by a grader to record an error outcome of a specific kind.

    :meth:`rft.Grader.grade` turns any other exception into a ``grader_error``
    outcome; a subclass of this one becomes an outcome of kind :attr:`outcome_kind`
    instead. The message is the outcome's ``error`` text.
    """

    #: the :class:`rft.OutcomeKind` value recorded for this error
    outcome_kind: str = "grader_error"


class GraderInfrastructureError(GraderFailure):
    """Something the grader depends on failed (an endpoint down, retries exhausted,
    an open circuit breaker); recorded as kind ``infrastructure``, never as a score."""

    outcome_kind = "infrastructure"


class JudgeBudgetError(GraderInfrastructureError):
    """A model judge's token or cost budget is spent; every further judgment fails fast."""


class JudgeParseError(GraderFailure):
    """A model judge answered, but its reply holds no score or label that can be read;
    recorded as kind ``judge_unparseable``."""

    outcome_kind = "judge_unparseable"
