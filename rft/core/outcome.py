"""Typed results: what a grader returns (:class:`Grade`) and what every call becomes (:class:`Outcome`).

An outcome's :class:`OutcomeKind` says what happened: a score, not applicable, or an
error of a named kind. :func:`coerce_result` validates a grader's return value; a
failure never becomes a silent 0.
"""

from __future__ import annotations

import enum
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rft.core.text import shorten

__all__ = ["ERROR_KINDS", "Grade", "Outcome", "OutcomeKind", "coerce_result", "is_number"]


@dataclass(frozen=True)
class Grade:
    """A score with an explanation and named sub-metrics.

    Args:
        score: the score; ``None`` means the grader does not apply to this sample.
        reason: a short human-readable explanation (shown in ``rft grade`` and rollouts).
        metrics: named numbers logged beside the score (e.g. ``{"precision": 0.5}``).

    >>> Grade(1.0, "exact match").score
    1.0
    """

    score: float | None
    reason: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


class OutcomeKind(str, enum.Enum):
    """What happened when a grader was called on one sample."""

    SCORE = "score"
    NOT_APPLICABLE = "not_applicable"
    GRADER_ERROR = "grader_error"  #: the grader raised
    INVALID_OUTPUT = "invalid_output"  #: NaN, inf, wrong type, wrong length, out of range
    TIMEOUT = "timeout"  #: the grader ran past its timeout and was stopped
    INFRASTRUCTURE = "infrastructure"  #: the worker or actor running it died, node lost, endpoint down, …
    JUDGE_UNPARSEABLE = "judge_unparseable"  #: a model judge replied without a readable score or label

    @property
    def is_error(self) -> bool:
        return self not in (OutcomeKind.SCORE, OutcomeKind.NOT_APPLICABLE)

    def __str__(self) -> str:
        return self.value


ERROR_KINDS = tuple(k for k in OutcomeKind if k.is_error)


@dataclass
class Outcome:
    """The typed outcome of one grader on one sample.

    ``score`` is set for :attr:`OutcomeKind.SCORE`; for error kinds it is ``None`` unless
    the grader's ``on_error`` policy supplied a fixed score (``fallback`` is then True).
    ``attempts`` is how many times the sample was sent to a worker: more than 1 when a
    worker or actor it was on died, was killed after a timeout, or its node was lost.
    """

    kind: OutcomeKind
    score: float | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1
    fallback: bool = False

    @property
    def ok(self) -> bool:
        return not self.kind.is_error

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # a flat tuple pickles about twice as fast as a dataclass's state dict, and
        # outcomes cross a process boundary by the thousand
        return _outcome, (
            self.kind.value, self.score, self.reason, self.metrics, self.error,
            self.traceback, self.latency_s, self.cached, self.attempts, self.fallback,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "score": self.score}
        for key in ("reason", "error", "traceback"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.metrics:
            d["metrics"] = dict(self.metrics)
        d["latency_s"] = round(self.latency_s, 6)
        if self.cached:
            d["cached"] = True
        if self.attempts != 1:
            d["attempts"] = self.attempts
        if self.fallback:
            d["fallback"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Outcome:
        return cls(
            kind=OutcomeKind(d["kind"]),
            score=d.get("score"),
            reason=d.get("reason"),
            metrics=dict(d.get("metrics") or {}),
            error=d.get("error"),
            traceback=d.get("traceback"),
            latency_s=d.get("latency_s", 0.0),
            cached=d.get("cached", False),
            attempts=d.get("attempts", 1),
            fallback=d.get("fallback", False),
        )

    @classmethod
    def failure(cls, kind: OutcomeKind, error: str, traceback: str | None = None, latency_s: float = 0.0) -> Outcome:
        return cls(kind=kind, error=error, traceback=traceback, latency_s=latency_s)


def _outcome(kind: str, *fields: Any) -> Outcome:
    return Outcome(_KINDS[kind], *fields)


_KINDS = {k.value: k for k in OutcomeKind}


def is_number(x: Any) -> bool:
    """True for a real number that is not a bool (``True`` is an int in Python).

    >>> is_number(0.5), is_number(True), is_number("1")
    (True, False, False)
    """
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def coerce_result(value: Any, *, grader: str, range: tuple[float, float] | None = None) -> Outcome:
    """Turn what a grader returned into an :class:`Outcome`, validating it.

    >>> coerce_result(True, grader="g").score
    1.0
    >>> coerce_result(float("nan"), grader="g").kind.value
    'invalid_output'
    >>> coerce_result(None, grader="g").kind.value
    'not_applicable'
    """
    reason: str | None = None
    metrics: dict[str, float] = {}
    if isinstance(value, Outcome):  # a batched grader reporting one sample's typed outcome as is
        return value
    if isinstance(value, Grade):
        reason, metrics, value = value.reason, dict(value.metrics or {}), value.score
        bad = [k for k, v in metrics.items() if not is_number(v) and not isinstance(v, bool)]
        if bad:
            return Outcome.failure(
                OutcomeKind.INVALID_OUTPUT,
                f"grader {grader!r} returned Grade.metrics with non-numeric values for {bad}",
            )
        metrics = {k: float(v) for k, v in metrics.items()}
    if value is None:
        return Outcome(OutcomeKind.NOT_APPLICABLE, reason=reason, metrics=metrics)
    if isinstance(value, bool):
        value = float(value)
    if not is_number(value) and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        try:  # numpy / torch scalars
            value = value.item()
        except Exception as err:  # pragma: no cover - exotic scalar types
            return Outcome.failure(OutcomeKind.INVALID_OUTPUT, f"grader {grader!r} returned {value!r}: {err}")
    if not is_number(value):
        return Outcome.failure(
            OutcomeKind.INVALID_OUTPUT,
            f"grader {grader!r} returned {type(value).__name__} {shorten(value)}; "
            "expected a number, a bool, None or rft.Grade",
        )
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return Outcome.failure(OutcomeKind.INVALID_OUTPUT, f"grader {grader!r} returned {value}")
    if range is not None and not (range[0] <= value <= range[1]):
        return Outcome.failure(
            OutcomeKind.INVALID_OUTPUT,
            f"grader {grader!r} returned {value}, outside its declared range [{range[0]}, {range[1]}]",
        )
    return Outcome(OutcomeKind.SCORE, score=value, reason=reason, metrics=metrics)
