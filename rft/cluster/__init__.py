"""Ray clusters: training on Ray Train learners, resource pre-checks and Ray Jobs.

- :mod:`rft.cluster.learners`: ``rft train`` with ``scaling:`` — the RFT stage on Ray Train
  learners sharing one grader pool (:func:`~rft.cluster.learners.run_distributed`);
- :mod:`rft.cluster.resources`: what a run asks of the cluster, checked before any work;
- :mod:`rft.cluster.staging`: the config and every local file it names, in one directory;
- :mod:`rft.cluster.jobs`: ``rft submit`` / ``rft jobs`` through the Ray Jobs API.

Connecting to Ray is :func:`rft.scoring.ray.connect` (explicit address, then ``RAY_ADDRESS``,
then a local Ray), the one function the scoring executor uses too; its error,
:class:`~rft.scoring.ray.ClusterError`, is re-exported here. The ``scaling:`` settings are
:class:`rft.config.ScalingSettings`. Ray itself is imported inside functions only.
"""

from __future__ import annotations

from rft.scoring.ray import ClusterError

__all__ = ["ClusterError"]
