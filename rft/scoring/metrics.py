"""Per-batch grader metrics, flat and ready for TRL's ``log_metric(name, value)``.

For every grader id ``<id>`` in the set:

=====================================  ==================================================
``graders/<id>/mean``, ``/std``        over the samples it scored (kind ``score``; NaN when none)
``graders/<id>/count/<kind>``          outcomes of each :class:`~rft.OutcomeKind`, zeros included
``graders/<id>/error_rate``            share of the batch with an error kind
``graders/<id>/latency_p50``, ``_p95`` seconds per call, over calls actually made (not cache hits)
``graders/<id>/cache_hit_rate``        share of the batch served from the cache
``graders/<id>/retries``               samples sent again after their worker/actor died or was replaced
``graders/<id>/metrics/<name>``        mean of a named sub-metric of :class:`~rft.Grade`
=====================================  ==================================================

plus ``reward/mean``, ``reward/std`` over the combined rewards and ``scoring/seconds``;
with a formula also ``reward/count/missing_score`` and ``reward/count/formula_error``:
samples left without a reward because a score the formula reads is None, or because
the formula failed on the scores (a division by zero, ``log(0)``, not a finite number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from rft.core import REWARD_ERROR_KINDS, GraderSet, Outcome, OutcomeKind, RewardError
from rft.core.text import percentile

__all__ = ["batch_metrics"]


def _mean_std(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (plain floats: ``statistics`` is slow here)."""
    if not xs:
        return math.nan, math.nan
    mean = math.fsum(xs) / len(xs)
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs))


_ERROR_KINDS = frozenset(k for k in OutcomeKind if k.is_error)


def batch_metrics(
    grader_set: GraderSet,
    outcomes: Sequence[Mapping[str, Outcome]],
    rewards: Sequence[float | None],
    *,
    seconds: float | None = None,
    reward_errors: Sequence[RewardError | None] | None = None,
) -> dict[str, float]:
    """The flat metrics of one scored batch (see the module docstring for the names).

    Args:
        grader_set: the set that scored the batch.
        outcomes: per sample, grader id → outcome (after the ``on_error`` policy).
        rewards: per sample, the combined reward.
        seconds: wall time of the batch.
        reward_errors: per sample, why its reward is None (:meth:`GraderSet.rewards`);
            worked out again from ``outcomes`` when not given.
    """
    n = len(outcomes)
    m: dict[str, float] = {}
    for entry in grader_set:
        gid = entry.id
        p = f"graders/{gid}/"
        counts = dict.fromkeys(OutcomeKind, 0)
        scores: list[float] = []
        lat: list[float] = []
        hits = 0
        retries = 0
        sub: dict[str, list[float]] = {}
        for per in outcomes:
            o = per.get(gid)
            if o is None:
                continue
            counts[o.kind] += 1
            if o.kind is OutcomeKind.SCORE and o.score is not None:
                scores.append(o.score)
            if o.cached:
                hits += 1
            else:
                lat.append(o.latency_s)
            if o.attempts > 1:
                retries += o.attempts - 1
            for k, v in o.metrics.items():
                sub.setdefault(k, []).append(v)
        m[p + "mean"], m[p + "std"] = _mean_std(scores)
        for kind, c in counts.items():
            m[f"{p}count/{kind.value}"] = float(c)
        errors = sum(c for kind, c in counts.items() if kind in _ERROR_KINDS)
        m[p + "error_rate"] = errors / n if n else 0.0
        m[p + "latency_p50"] = percentile(lat, 50)
        m[p + "latency_p95"] = percentile(lat, 95)
        m[p + "cache_hit_rate"] = hits / n if n else 0.0
        m[p + "retries"] = float(retries)
        for k, vs in sub.items():
            m[f"{p}metrics/{k}"] = math.fsum(vs) / len(vs)
    m["reward/mean"], m["reward/std"] = _mean_std([x for x in rewards if x is not None])
    if grader_set.formula:
        if reward_errors is None:
            reward_errors = [
                grader_set.reward({gid: o.score for gid, o in per.items()}, per)[1] if r is None else None
                for per, r in zip(outcomes, rewards)
            ]
        failed = [e.kind for e in reward_errors if e is not None]
        for reward_kind in REWARD_ERROR_KINDS:
            m[f"reward/count/{reward_kind}"] = float(failed.count(reward_kind))
    if seconds is not None:
        m["scoring/seconds"] = seconds
    return m
