"""How ``rft serve-graders`` scores: through the scoring engine, several requests at once.

The server keeps the contract that training has (:mod:`rft.scoring`): a grader call past
its ``timeout`` is stopped (its worker process killed), a lost worker is retried per the
entry's ``retries``, identical inputs are scored once (one result cache for the server),
and every failure comes back as an outcome with its kind.

An executor scores one batch at a time, so one executor would make every request wait
for the slowest one before it. :class:`ScoringPool` therefore keeps executors per grader
id: a request takes an idle executor of each grader it names (or starts one) and scores
them in a thread of its own, at most ``max_concurrency`` at a time; the event loop only
parses and answers. Idle executors are kept for the next request (their workers are
warm), up to ``max_concurrency`` of them; the least recently used beyond that is closed.
So at most ``2 × max_concurrency`` executors (each with ``num_workers`` worker processes)
are alive; with ``inline`` options graders run in this process instead, in threads.

What stays with the caller, as before: ``on_error`` policies (the server answers with the
error outcome as recorded, so the caller's entry decides what it scores) and the error
budget (the server never refuses a batch for it).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from rft.core import GraderSet, Outcome, Sample
from rft.scoring import Executor, ScoringOptions, make_executor
from rft.scoring.cache import ResultCache

logger = logging.getLogger(__name__)

__all__ = ["ScoringPool"]


class ScoringPool:
    """Engine executors for a grader set, scored from several threads at once.

    Args:
        grader_set: the served graders.
        options: how graders run (``executor``, ``num_workers``, ``default_timeout``,
            ``cache``, ``inline`` …); ``error_budget`` is ignored (the caller applies its own).
        max_concurrency: grader runs (one grader over one request's samples) at once;
            further runs wait their turn.

    >>> import rft
    >>> gs = rft.GraderSet([rft.grader(lambda completion: len(completion) / 10, name="length")])
    >>> pool = ScoringPool(gs, ScoringOptions(inline=True), max_concurrency=2)
    >>> [o.score for o in pool.score_one("length", [rft.Sample("hello")])]
    [0.5]
    >>> pool.close()
    """

    def __init__(self, grader_set: GraderSet, options: ScoringOptions, *, max_concurrency: int = 4):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.grader_set = grader_set
        self.options = replace(options, error_budget=1.0)
        self.max_concurrency = max_concurrency
        self.cache = ResultCache(options.cache_size) if options.cache else None
        self._threads = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="rft-grade")
        self._lock = threading.Lock()
        self._idle: deque[tuple[str, Executor]] = deque()  # least recently used first
        self._closed = False

    def _subset(self, grader_id: str) -> GraderSet:
        """A set of the one grader, with ``on_error: fail`` (the caller applies its policy).

        It keeps the whole set's spec, so worker processes rebuild the served set as it was
        loaded (plugins included) and look the grader up by id.
        """
        entry = replace(self.grader_set[grader_id], on_error="fail")
        return GraderSet([entry], spec=self.grader_set.spec)

    def _take(self, grader_id: str) -> Executor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the scoring pool is closed")
            for k, (gid, ex) in enumerate(self._idle):
                if gid == grader_id:
                    del self._idle[k]
                    return ex
        ex = make_executor(self._subset(grader_id), options=self.options)
        ex.cache = self.cache  # one cache for the server: a duplicate request is scored once
        logger.info("started an executor for grader %r", grader_id)
        return ex

    def _give_back(self, grader_id: str, ex: Executor) -> None:
        surplus: list[Executor] = []
        with self._lock:
            if self._closed:
                surplus.append(ex)
            else:
                self._idle.append((grader_id, ex))
                while len(self._idle) > self.max_concurrency:
                    surplus.append(self._idle.popleft()[1])
        for old in surplus:
            old.close()

    def score_one(self, grader_id: str, samples: Sequence[Sample]) -> list[Outcome]:
        """Outcomes of one grader over ``samples``, in order (blocking; any thread).

        Raises:
            KeyError: no grader ``grader_id`` in the set.
            PluginError: worker processes could not load the grader set.
        """
        ex = self._take(grader_id)
        try:
            result = ex.score(samples)
        except BaseException:
            ex.close()  # its workers may be in any state: start fresh next time
            raise
        self._give_back(grader_id, ex)
        return [per[grader_id] for per in result.outcomes]

    async def score(self, grader_ids: Sequence[str], samples: Sequence[Sample]) -> list[dict[str, Outcome]]:
        """Per sample, grader id → outcome; each grader runs in a pool thread, off the event loop."""
        loop = asyncio.get_running_loop()
        batch = list(samples)
        columns = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self.score_one, gid, batch) for gid in grader_ids)
        )
        return [{gid: columns[j][i] for j, gid in enumerate(grader_ids)} for i in range(len(batch))]

    def close(self) -> None:
        """Stop every idle executor; busy ones stop when their run ends (idempotent)."""
        with self._lock:
            self._closed = True
            idle = [ex for _, ex in self._idle]
            self._idle.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)
        for ex in idle:
            ex.close()
