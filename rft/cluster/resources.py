"""What a run asks of a Ray cluster, checked before any work is scheduled.

:func:`check_resources` makes a cluster that cannot host the learners and the grader pool
fail within seconds with a message naming the missing resource, never a silent hang.
The settings it reads (:class:`rft.config.ScalingSettings`) live in :mod:`rft.config`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rft.config import ScalingSettings
from rft.scoring.ray import ClusterError

logger = logging.getLogger(__name__)

__all__ = [
    "ResourceRequest",
    "ResourceUnavailableError",
    "bundle_for",
    "check_resources",
    "describe_resources",
    "scaling_requests",
]


class ResourceUnavailableError(ClusterError):
    """The cluster lacks resources for the learners or the grader pool.

    Attributes:
        missing: resource name → how much more is needed than the cluster has (or frees in time).
    """

    def __init__(self, message: str, *, missing: Mapping[str, float] | None = None):
        self.missing = dict(missing or {})
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, tuple[str, dict[str, float]]]:  # keep ``missing`` across Ray
        return (_rebuild_resource_error, (self.args[0], self.missing))


def _rebuild_resource_error(message: str, missing: dict[str, float]) -> ResourceUnavailableError:
    return ResourceUnavailableError(message, missing=missing)


@dataclass
class ResourceRequest:
    """A group of identical Ray workers a run needs (the learners, the grader pool).

    Attributes:
        name: what they are, for messages (``"learner"``, ``"grader actor"``).
        count: how many.
        resources: Ray resources of one, in ``ray.cluster_resources()`` spelling
            (``{"CPU": 1, "GPU": 1, "grader": 1}``).
    """

    name: str
    count: int
    resources: dict[str, float] = field(default_factory=dict)

    def total(self) -> dict[str, float]:
        """Resources of all ``count`` workers together.

        >>> ResourceRequest("learner", 2, {"CPU": 1, "GPU": 0.5}).total()
        {'CPU': 2.0, 'GPU': 1.0}
        """
        return {k: float(v) * self.count for k, v in self.resources.items() if v}


def scaling_requests(scaling: ScalingSettings) -> list[ResourceRequest]:
    """What the pre-check asks of the cluster for a ``scaling:`` section: the learners and the grader pool.

    >>> [r.name for r in scaling_requests(ScalingSettings())]
    ['learner', 'grader actor']
    """
    g = scaling.graders
    return [
        ResourceRequest("learner", scaling.num_learners, scaling.learner_resources()),
        ResourceRequest("grader actor", g.num_actors, bundle_for(num_cpus=g.num_cpus, resources=g.resources)),
    ]


def bundle_for(
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    memory: float | None = None,
    resources: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Ray's ``num_cpus``/``num_gpus``/``resources`` options as one resource bundle.

    >>> bundle_for(num_cpus=1, resources={"grader": 1})
    {'CPU': 1.0, 'grader': 1.0}
    """
    bundle: dict[str, float] = {}
    if num_cpus:
        bundle["CPU"] = float(num_cpus)
    if num_gpus:
        bundle["GPU"] = float(num_gpus)
    if memory:
        bundle["memory"] = float(memory)
    for key, value in (resources or {}).items():
        if value:
            bundle[key] = float(value)
    return bundle


def _shortfall(requests: Sequence[ResourceRequest], have: Mapping[str, float]) -> dict[str, float]:
    need: dict[str, float] = {}
    for req in requests:
        for key, value in req.total().items():
            need[key] = need.get(key, 0.0) + value
    return {k: v - float(have.get(k, 0.0)) for k, v in need.items() if v > float(have.get(k, 0.0)) + 1e-9}


def _describe(requests: Sequence[ResourceRequest]) -> str:
    return "; ".join(f"{r.count} {r.name}(s) × {r.resources or '{}'}" for r in requests)


def describe_resources(res: Mapping[str, float]) -> str:
    """Resources as ``CPU=2, GPU=1`` for messages.

    >>> describe_resources({"GPU": 1, "CPU": 2.0})
    'CPU=2, GPU=1'
    """
    return ", ".join(f"{k}={v:g}" for k, v in sorted(res.items())) or "nothing"


def _relevant(res: Mapping[str, float], requests: Sequence[ResourceRequest]) -> dict[str, float]:
    """The resources worth showing: CPU, GPU and whatever the requests name (not node:…/memory)."""
    keys = {"CPU", "GPU"} | {k for r in requests for k in r.resources}
    return {k: v for k, v in res.items() if k in keys}


def check_resources(
    requests: Sequence[ResourceRequest],
    *,
    timeout_s: float = 30.0,
    autoscaling: bool = False,
    strategy: str = "SPREAD",
) -> None:
    """Fail fast, naming what is missing, when the cluster cannot host ``requests``.

    Two checks, both bounded:

    1. the cluster's total resources (``ray.cluster_resources()``) against the sum of
       the requests: a shortfall fails at once, unless ``autoscaling`` (the cluster adds
       nodes on demand), in which case it only logs and the second check decides;
    2. a placement group holding one bundle per worker must become ready within
       ``timeout_s`` (resources can exist yet be busy, or be split across nodes so one
       worker does not fit anywhere); it is removed again right after.

    Connect first (:func:`rft.scoring.ray.connect`).

    Raises:
        ResourceUnavailableError: naming each missing resource, how much was asked,
            what the cluster has and what is free now.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    requests = [r for r in requests if r.count > 0]
    if not requests:
        return
    total = ray.cluster_resources()
    missing = _shortfall(requests, total)
    if missing:
        msg = (
            f"the Ray cluster lacks {describe_resources(missing)} for {_describe(requests)} "
            f"(cluster total: {describe_resources(_relevant(total, requests))}). Add nodes that provide "
            f"{', '.join(sorted(missing))} (e.g. `ray start --resources='{{\"{sorted(missing)[0]}\": 4}}'`), "
            "or lower `scaling:` (learners, resources per learner, grader pool size or placement)"
        )
        if not autoscaling:
            raise ResourceUnavailableError(msg, missing=missing)
        logger.warning("%s; waiting up to %.0f s for the autoscaler", msg, timeout_s)
    bundles = [dict(r.resources) for r in requests for _ in range(r.count) if any(r.resources.values())]
    bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    if not bundles:
        return
    pg = placement_group(bundles, strategy=strategy, name=f"rft-precheck-{os.getpid()}-{time.time_ns()}")
    t0 = time.perf_counter()
    try:
        ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    finally:
        remove_placement_group(pg)
    if ready:
        logger.info(
            "ray: resources for %s are available (checked in %.1f s)", _describe(requests), time.perf_counter() - t0
        )
        return
    available = ray.available_resources()
    busy = _shortfall(requests, available)
    largest = {k: max((b.get(k, 0.0) for b in bundles), default=0.0) for k in {k for b in bundles for k in b}}
    raise ResourceUnavailableError(
        f"the Ray cluster could not place {_describe(requests)} within {timeout_s:g} s "
        f"(free now: {describe_resources(_relevant(available, requests))}; total: {describe_resources(_relevant(total, requests))}; short of: {describe_resources(busy) if busy else 'nothing in total'}). "
        f"Either other work holds them, or no single node fits one worker's largest ask ({describe_resources(largest)}); "
        "free the cluster, add nodes, or lower `scaling:`",
        missing=busy or missing,
    )
