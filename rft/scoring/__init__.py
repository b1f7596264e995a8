"""The scoring engine: run a GraderSet over a batch of samples with one execution contract.

Use :func:`make_executor`; the rest of rftkit never calls graders directly::

    with make_executor(grader_set, "local") as ex:
        result = ex.score(samples, step=3)
        result.scores("exact_match")   # per-sample floats / None, for TRL
        result.metrics                  # flat dict for TRL's log_metric
"""

from __future__ import annotations

from rft.scoring.base import BatchResult, Executor, ScoringOptions, make_executor

__all__ = ["BatchResult", "Executor", "ScoringOptions", "make_executor"]
