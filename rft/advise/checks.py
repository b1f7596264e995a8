"""Stage 2 of the advisor: can the graders be trusted as a reward on this data?

Grades the reference outputs (they should score high) and degenerate outputs (they should
score low): ``empty``, ``prompt_copy`` (the prompt repeated back), ``padding``
(:data:`PADDING_TEXT`, ≈4000 characters) and ``constant`` (the most common reference, for
every row). A grader set that pays a degenerate output is *gameable*; the output and its
score are reported. Scoring goes through the scoring engine (:func:`make_scorer`).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rft.advise.stats import as_examples
from rft.advise.thresholds import (
    CONSTANT_ANSWER_MARGIN,
    GAMEABLE_RELATIVE_SCORE,
    MAX_REFERENCE_ERROR_SHARE,
    REFERENCE_MIN_SCORE,
    VERIFY_MAX_ROWS,
    r,
)
from rft.core import GraderSet, Outcome, Sample
from rft.core.errors import ConfigError
from rft.core.text import shorten
from rft.data import Example

logger = logging.getLogger(__name__)

__all__ = [
    "PADDING_TEXT",
    "DegenerateCheck",
    "GameableOutput",
    "ReferenceCheck",
    "Verifiability",
    "check_verifiability",
    "make_scorer",
    "mean",
    "reward_bounds",
    "score_samples",
]

#: The long padding output used to probe length-rewarding graders (≈4000 characters).
PADDING_TEXT = "Let me think step by step. " * 150


@dataclass
class ReferenceCheck:
    """How the reference outputs score."""

    rows: int
    mean_reward: float | None
    relative: float | None
    per_grader: dict[str, float | None]
    errors: int
    first_error: str | None
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class DegenerateCheck:
    """How one kind of degenerate output scores, and whether that makes the graders gameable."""

    kind: str
    output: str
    mean_reward: float | None
    relative: float | None
    threshold: float | None
    per_grader: dict[str, float | None]
    errors: int
    first_error: str | None
    gameable: bool
    constant_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (``constant_share`` only for the constant answer)."""
        d = asdict(self)
        if self.kind != "constant":
            d.pop("constant_share")
        return d


@dataclass
class GameableOutput:
    """A degenerate output the graders pay."""

    kind: str
    output: str
    score: float | None
    relative: float | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class Verifiability:
    """The grader checks; ``verifiable`` when graders are configured, accept the columns,
    agree with the references and are not gameable."""

    graders: list[str] = field(default_factory=list)
    configured: bool = False
    columns_ok: bool | None = None
    columns_error: str | None = None
    checked_rows: int = 0
    reward_range: list[float] | None = None
    reference: ReferenceCheck | None = None
    degenerate: list[DegenerateCheck] = field(default_factory=list)
    gameable: bool = False
    gameable_outputs: list[GameableOutput] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    verifiable: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The ``verifiability`` object of ``rft advise --json``."""
        return {
            "graders": list(self.graders),
            "configured": self.configured,
            "columns_ok": self.columns_ok,
            "columns_error": self.columns_error,
            "checked_rows": self.checked_rows,
            "reward_range": list(self.reward_range) if self.reward_range is not None else None,
            "reference": self.reference.to_dict() if self.reference else None,
            "degenerate": [d.to_dict() for d in self.degenerate],
            "gameable": self.gameable,
            "gameable_outputs": [g.to_dict() for g in self.gameable_outputs],
            "problems": list(self.problems),
            "verifiable": self.verifiable,
        }


# ---------------------------------------------------------------------------
# scoring (one function, so the engine can be swapped in one place)
# ---------------------------------------------------------------------------


def make_scorer(grader_set: GraderSet) -> Any:
    """The scoring engine's local executor for the advisor (timeouts, retries, worker
    processes), with the error budget disabled: the advisor reports grader errors
    instead of stopping at them. None when the engine is not installed."""
    if importlib.util.find_spec("rft.scoring.local") is None:
        return None
    from rft.scoring import make_executor

    return make_executor(grader_set, "local", error_budget=1.0)


def score_samples(
    grader_set: GraderSet, samples: Sequence[Sample], *, executor: Any = None
) -> tuple[list[dict[str, Outcome]], list[float | None]]:
    """Score samples with every grader of the set: per-sample outcomes and combined rewards.

    Args:
        grader_set: the graders.
        samples: what to score.
        executor: an open executor (from :func:`make_scorer`) to reuse; None opens one
            for this call (or grades in this process when the engine is not installed).
    """
    if not samples:
        return [], []
    if executor is not None:
        result = executor.score(list(samples))
        return result.outcomes, result.rewards
    own = make_scorer(grader_set)
    if own is not None:
        with own as ex:
            result = ex.score(list(samples))
        return result.outcomes, result.rewards
    outcomes: list[dict[str, Outcome]] = [{} for _ in samples]
    for entry in grader_set:
        for i, out in enumerate(entry.grader.grade(samples)):
            outcomes[i][entry.id] = entry.apply_policy(out)
    rewards = [grader_set.combine({gid: o.score for gid, o in per.items()}) for per in outcomes]
    return outcomes, rewards


def reward_bounds(grader_set: GraderSet) -> tuple[float, float]:
    """The lowest and highest reward, from each grader's declared range (else [0, 1])."""
    lows: dict[str, float | None] = {e.id: (e.grader.range[0] if e.grader.range else 0.0) for e in grader_set}
    highs: dict[str, float | None] = {e.id: (e.grader.range[1] if e.grader.range else 1.0) for e in grader_set}
    try:
        lo, hi = grader_set.combine(lows), grader_set.combine(highs)
    except Exception as err:  # a formula that does not evaluate at the bounds
        logger.debug("reward bounds: formula failed at the range bounds: %s", err)
        lo, hi = 0.0, 1.0
    lo = 0.0 if lo is None else lo
    hi = 1.0 if hi is None else hi
    return (min(lo, hi), max(lo, hi)) if lo != hi else (lo, lo + 1.0)


def mean(xs: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def first_error(outcomes: Sequence[Mapping[str, Outcome]]) -> str | None:
    """``grader: error`` of the first errored outcome."""
    for per in outcomes:
        for gid, o in per.items():
            if o.kind.is_error:
                return f"{gid}: {o.error}"
    return None


def n_errors(outcomes: Sequence[Mapping[str, Outcome]]) -> int:
    """How many outcomes are errors."""
    return sum(o.kind.is_error for per in outcomes for o in per.values())


def _per_grader(grader_set: GraderSet, outcomes: Sequence[Mapping[str, Outcome]]) -> dict[str, float | None]:
    return {gid: r(mean([per[gid].score for per in outcomes])) for gid in grader_set.ids}


# ---------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------


def check_verifiability(
    rows: Sequence[Example | Mapping[str, Any]],
    grader_set: GraderSet | None,
    *,
    max_rows: int = VERIFY_MAX_ROWS,
    seed: int = 0,
    executor: Any = None,
) -> Verifiability:
    """Check that the graders can be trusted as a reward on this data.

    A degenerate output whose mean reward reaches :data:`GAMEABLE_RELATIVE_SCORE` of the
    references' (or of the reward range when there are no references) makes the grader
    set gameable; the constant answer only above its legitimate share plus
    :data:`CONSTANT_ANSWER_MARGIN`.

    Args:
        rows: the data (examples or raw rows).
        grader_set: the graders; None reports "no graders configured".
        max_rows: rows checked (a seeded sample beyond it).
        seed: seed of that sample.
        executor: an open scoring executor to reuse (see :func:`make_scorer`).
    """
    out = Verifiability(graders=grader_set.ids if grader_set is not None else [], configured=grader_set is not None)
    if grader_set is None:
        out.problems.append("no graders configured (pass --graders)")
        return out
    examples = as_examples(rows)
    columns = set().union(*(e.row.keys() for e in examples)) if examples else set()
    try:
        grader_set.check_inputs(columns)
        out.columns_ok = True
    except ConfigError as err:
        out.columns_ok = False
        out.columns_error = str(err)
        out.problems.append(str(err))
        return out

    picked = list(examples)
    if len(picked) > max_rows:
        picked = random.Random(seed).sample(picked, max_rows)
    out.checked_rows = len(picked)
    lo, hi = reward_bounds(grader_set)
    out.reward_range = [lo, hi]

    with_ref = [e for e in picked if e.reference is not None]
    label_counts = Counter(e.reference.strip() for e in with_ref if e.reference is not None)
    constant = label_counts.most_common(1)[0][0] if label_counts else None
    constant_share = label_counts[constant] / sum(label_counts.values()) if constant is not None else 0.0
    kinds: list[tuple[str, Callable[[Example], str]]] = [
        ("empty", lambda e: ""),
        ("prompt_copy", lambda e: e.prompt_text),
        ("padding", lambda e: PADDING_TEXT),
    ]
    if constant is not None:
        kinds.append(("constant", lambda e: constant))

    # one scoring call for the references and every degenerate output
    groups: list[tuple[str, list[str], list[Example]]] = []
    if with_ref:
        groups.append(("reference", [e.reference or "" for e in with_ref], with_ref))
    for kind, make in kinds:
        groups.append((kind, [make(e) for e in picked], picked))
    samples = [Sample(completion=t, item=e.row, prompt=e.prompt) for _, texts, es in groups for t, e in zip(texts, es)]
    all_outcomes, all_rewards = score_samples(grader_set, samples, executor=executor)
    scored: dict[str, tuple[list[str], list[dict[str, Outcome]], list[float | None]]] = {}
    pos = 0
    for kind, texts, _ in groups:
        scored[kind] = (texts, all_outcomes[pos : pos + len(texts)], all_rewards[pos : pos + len(texts)])
        pos += len(texts)

    ref_mean = _check_references(out, grader_set, scored.get("reference"), lo, hi)
    # degenerate outputs, relative to what the references score (else to the reward range)
    scale_hi = ref_mean if ref_mean is not None and ref_mean > lo else hi
    for kind, _ in kinds:
        _check_degenerate(out, grader_set, kind, scored[kind], lo, scale_hi, constant_share)
    ref_ok = out.reference is None or out.reference.ok
    out.verifiable = bool(out.columns_ok and ref_ok and not out.gameable)
    return out


def _check_references(
    out: Verifiability,
    grader_set: GraderSet,
    scored: tuple[list[str], list[dict[str, Outcome]], list[float | None]] | None,
    lo: float,
    hi: float,
) -> float | None:
    """Record how the references score; returns their mean reward."""
    if scored is None:
        return None
    _, outcomes, rewards = scored
    ref_mean = mean(rewards)
    errors = n_errors(outcomes)
    calls = len(outcomes) * len(grader_set)
    rel = None if ref_mean is None else (ref_mean - lo) / (hi - lo)
    out.reference = ReferenceCheck(
        rows=len(outcomes),
        mean_reward=r(ref_mean),
        relative=r(rel),
        per_grader=_per_grader(grader_set, outcomes),
        errors=errors,
        first_error=first_error(outcomes),
        ok=rel is not None and rel >= REFERENCE_MIN_SCORE and errors <= MAX_REFERENCE_ERROR_SHARE * calls,
    )
    if errors > MAX_REFERENCE_ERROR_SHARE * calls:
        out.problems.append(f"graders errored on {errors} of {calls} reference calls: {first_error(outcomes)}")
    elif rel is None or rel < REFERENCE_MIN_SCORE:
        out.problems.append(
            f"reference outputs score {r(ref_mean)} on average, below {REFERENCE_MIN_SCORE:.0%} of the reward "
            f"range [{lo:g}, {hi:g}]: the graders disagree with the data (wrong column or answer format?)"
        )
    return ref_mean


def _check_degenerate(
    out: Verifiability,
    grader_set: GraderSet,
    kind: str,
    scored: tuple[list[str], list[dict[str, Outcome]], list[float | None]],
    scale_lo: float,
    scale_hi: float,
    constant_share: float,
) -> None:
    """Record how one kind of degenerate output scores, and flag it when the graders pay it."""
    texts, outcomes, rewards = scored
    avg = mean(rewards)
    rel = None if avg is None else (avg - scale_lo) / (scale_hi - scale_lo)
    threshold = GAMEABLE_RELATIVE_SCORE
    if kind == "constant":
        threshold = max(GAMEABLE_RELATIVE_SCORE, constant_share + CONSTANT_ANSWER_MARGIN)
    gameable = rel is not None and rel >= threshold
    ranked = [-math.inf if x is None else x for x in rewards]
    best = max(range(len(ranked)), key=ranked.__getitem__)
    check = DegenerateCheck(
        kind=kind,
        output=shorten(texts[best]),
        mean_reward=r(avg),
        relative=r(rel),
        threshold=r(threshold),
        per_grader=_per_grader(grader_set, outcomes),
        errors=n_errors(outcomes),
        first_error=first_error(outcomes),
        gameable=gameable,
        constant_share=r(constant_share) if kind == "constant" else None,
    )
    out.degenerate.append(check)
    if gameable:
        out.gameable = True
        out.gameable_outputs.append(
            GameableOutput(kind=kind, output=check.output, score=check.mean_reward, relative=check.relative)
        )
        out.problems.append(
            f"gameable: the {kind} output {check.output!r} scores {check.mean_reward} "
            f"({rel:.0%} of the reference reward, threshold {threshold:.0%})"
        )
    elif check.errors:
        out.problems.append(f"graders raised on the {kind} output (not a score): {check.first_error}")
