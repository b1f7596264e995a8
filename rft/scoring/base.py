"""The executor interface shared by the local and the Ray executors."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rft.grading import GraderSet, Outcome, Sample

__all__ = ["BatchResult", "Executor", "ScoringOptions", "make_executor"]


@dataclass
class ScoringOptions:
    """How graders are run (the ``scoring:`` section of a run config).

    Attributes:
        executor: ``"local"`` (in-process + worker processes) or ``"ray"`` (actor pool).
        num_workers: local worker processes / Ray actors.
        default_timeout: seconds per grader call when a grader sets none (None: no limit).
        error_budget: share of a grader's calls in one batch that may fail before the run
            stops with a GraderError (1.0 disables the budget).
        cache: score identical (grader identity, inputs) once per run.
        address: Ray address (``"auto"``, ``ray://…``); None tries RAY_ADDRESS then local.
        actor_resources: Ray resources per grader actor, e.g. ``{"num_cpus": 1, "resources": {"grader": 1}}``.
        max_concurrency: concurrent calls inside one Ray actor (lets async graders overlap).
    """

    executor: str = "local"
    num_workers: int = 2
    default_timeout: float | None = 60.0
    error_budget: float = 0.5
    cache: bool = True
    address: str | None = None
    actor_resources: dict[str, Any] = field(default_factory=dict)
    max_concurrency: int = 16


@dataclass
class BatchResult:
    """Outcomes of one batch.

    Attributes:
        outcomes: per sample, grader id → :class:`Outcome`.
        rewards: per sample, the combined reward (``GraderSet.combine``), None when none applies.
        metrics: flat per-batch metrics, e.g. ``graders/<id>/mean``, ``graders/<id>/latency_p95``,
            ``graders/<id>/count/<kind>``, ``graders/<id>/cache_hit_rate`` — ready for TRL's ``log_metric``.
    """

    outcomes: list[dict[str, Outcome]]
    rewards: list[float | None]
    metrics: dict[str, float] = field(default_factory=dict)

    def scores(self, grader_id: str) -> list[float | None]:
        """Per-sample scores of one grader (error outcomes give their fallback score or None)."""
        return [per[grader_id].score for per in self.outcomes]

    def errors(self) -> list[tuple[int, str, Outcome]]:
        return [(i, gid, o) for i, per in enumerate(self.outcomes) for gid, o in per.items() if o.kind.is_error]


class Executor(abc.ABC):
    """Scores batches of samples with a GraderSet. Use as a context manager."""

    def __init__(self, grader_set: GraderSet, options: ScoringOptions | None = None):
        self.grader_set = grader_set
        self.options = options or ScoringOptions()

    @abc.abstractmethod
    def score(self, samples: Sequence[Sample], *, step: int | None = None) -> BatchResult:
        """Score every sample with every grader; applies timeouts, retries, error policy,
        the error budget (raising :class:`rft.GraderError`) and the cache."""

    async def ascore(self, samples: Sequence[Sample], *, step: int | None = None) -> BatchResult:
        import asyncio

        return await asyncio.to_thread(self.score, samples, step=step)

    def close(self) -> None:
        """Release workers / actors."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(grader_set: GraderSet, kind: str | None = None, options: ScoringOptions | None = None, **kwargs: Any) -> Executor:
    """Create the executor named by ``kind`` (``"local"`` or ``"ray"``)."""
    options = options or ScoringOptions(**kwargs)
    kind = kind or options.executor
    if kind == "local":
        from rft.scoring.local import LocalExecutor

        return LocalExecutor(grader_set, options)
    if kind == "ray":
        from rft.scoring.ray import RayExecutor

        return RayExecutor(grader_set, options)
    from rft.errors import ConfigError

    raise ConfigError(f"unknown executor {kind!r}; valid: local, ray", key="scoring.executor")
