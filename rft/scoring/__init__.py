"""The scoring engine: run a GraderSet over a batch of samples with one execution contract.

Use :func:`make_executor`; the rest of rftkit never calls graders directly::

    with make_executor(grader_set, "local") as ex:
        result = ex.score(samples, step=3)
        result.scores("exact_match")   # per-sample floats / None, for TRL
        result.metrics                  # flat dict for TRL's log_metric

The contract, the same for ``"local"`` (worker processes, or ``inline=True``) and
``"ray"`` (an actor pool):

* every (sample, grader) gets a typed :class:`~rft.Outcome`; a grader that raises,
  returns junk, hangs or kills its process costs that sample, not the run;
* ``timeout`` per grader really stops the work (the worker process or actor is
  killed and replaced); infrastructure failures are retried ``retries`` times;
* ``on_error`` (``fail`` / ``skip`` / a number) decides what an error scores;
* more errors than ``error_budget`` of a batch raises :class:`rft.GraderError`;
* identical (grader identity, inputs) are scored once per executor (the cache);
* a group grader (``@rft.grader(group=True)``) gets whole groups — ``score(samples,
  groups=keys)``, by default samples with identical prompts — never split across shards,
  workers or actors, cached per group;
* :attr:`BatchResult.metrics` has mean, std, counts per outcome kind, latency
  p50/p95 and the cache hit rate per grader.
"""

from __future__ import annotations

from rft.scoring.base import BatchResult, Executor, ScoringOptions, default_group_keys, make_executor

__all__ = ["BatchResult", "Executor", "ScoringOptions", "default_group_keys", "make_executor"]
