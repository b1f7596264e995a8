"""The worker side of the scoring engine: run one grader over one shard of samples.

The same code runs inside local worker processes (:mod:`rft.scoring.local`), inside
Ray grader actors (:mod:`rft.scoring.ray`) and in-process (``inline`` mode). It never
imports Ray, and it never raises for grader faults: every sample gets an
:class:`~rft.grading.Outcome`.

Two ways of enforcing a timeout live here:

* :func:`iter_shard` yields each outcome as soon as it is known, so a *supervisor
  process* can kill the worker when one sample runs past its timeout (local executor;
  this also stops C code that never releases the GIL).
* :func:`run_shard_watched` watches the work from another thread of the same process
  and returns early with a ``timeout`` outcome, reporting that the process is now
  *tainted* (a thread is stuck in it) so the caller replaces it (Ray actors).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rft.grading import GraderEntry, GraderSet, Outcome, OutcomeKind, Sample

logger = logging.getLogger(__name__)

__all__ = [
    "GraderSetPayload",
    "ShardReply",
    "EventLoopThread",
    "make_payload",
    "load_grader_set",
    "iter_shard",
    "run_shard_watched",
    "timeout_outcome",
]

#: Extra seconds an async shard may take beyond its per-sample timeout before the
#: supervisor concludes that the event loop itself is blocked.
ASYNC_GRACE_S = 1.0


@dataclass(frozen=True)
class GraderSetPayload:
    """How a worker rebuilds the grader set: from its spec (plugins are loaded there) or
    from a pickle of the set (for sets built in code, without a spec)."""

    spec: Mapping[str, Any] | None = None
    pickled: bytes | None = None


def make_payload(grader_set: GraderSet) -> GraderSetPayload:
    """The payload that lets another process rebuild ``grader_set`` once.

    Raises:
        ConfigError: the set has no spec and cannot be pickled (e.g. a grader holds a lock).
    """
    if grader_set.spec is not None:
        return GraderSetPayload(spec=dict(grader_set.spec))
    try:
        import cloudpickle as pickler  # by-value pickling of lambdas and __main__ functions
    except ImportError:  # pragma: no cover - cloudpickle ships with ray
        import pickle as pickler  # type: ignore[no-redef]
    try:
        return GraderSetPayload(pickled=pickler.dumps(grader_set))
    except Exception as err:
        from rft.errors import ConfigError

        raise ConfigError(
            f"the grader set {grader_set!r} cannot be sent to worker processes: {type(err).__name__}: {err}. "
            "Load it from a grader-set file (so workers rebuild it from its spec), make parameterised "
            "graders picklable classes, or use ScoringOptions(inline=True) to score in this process"
        ) from err


def load_grader_set(payload: GraderSetPayload) -> GraderSet:
    """Rebuild the grader set in this process (once per worker or actor)."""
    if payload.spec is not None:
        return GraderSet.from_spec(payload.spec)
    import pickle

    return pickle.loads(payload.pickled)  # type: ignore[arg-type]


def timeout_outcome(grader: str, timeout: float) -> Outcome:
    return Outcome.failure(
        OutcomeKind.TIMEOUT,
        f"grader {grader!r} ran past its timeout of {timeout:g} s and was stopped",
        latency_s=timeout,
    )


class EventLoopThread:
    """A persistent event loop in a daemon thread, shared by every async grader call of a
    worker, so clients a grader keeps (e.g. an ``httpx.AsyncClient``) stay on one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rft-grader-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _one_async(entry: GraderEntry, sample: Sample, timeout: float | None) -> Outcome:
    t0 = time.perf_counter()
    try:
        if timeout is None:
            return (await entry.grader.agrade([sample]))[0]
        return (await asyncio.wait_for(entry.grader.agrade([sample]), timeout))[0]
    except asyncio.TimeoutError:
        return timeout_outcome(entry.id, timeout or 0.0)
    except Exception as err:  # agrade never raises for grader faults; this is a bug of ours
        out = Outcome.failure(OutcomeKind.INFRASTRUCTURE, f"scoring {entry.id!r} failed: {type(err).__name__}: {err}")
        out.latency_s = time.perf_counter() - t0
        return out


async def _batched_async(entry: GraderEntry, samples: Sequence[Sample], timeout: float | None) -> list[Outcome]:
    try:
        return await asyncio.wait_for(entry.grader.agrade(samples), timeout)
    except asyncio.TimeoutError:
        return [timeout_outcome(entry.id, timeout or 0.0) for _ in samples]


def iter_shard(
    entry: GraderEntry, samples: Sequence[Sample], timeout: float | None, loop: EventLoopThread
) -> Iterator[tuple[int, Outcome]]:
    """Score a shard, yielding ``(index, outcome)`` as each outcome is known.

    Sync per-sample graders yield after every sample, so a supervisor that sees no
    progress for ``timeout`` seconds knows exactly which sample hangs. Async graders
    run concurrently on ``loop`` (each sample with its own timeout); batched graders
    make one call for the whole shard.
    """
    g = entry.grader
    if g.is_async and not g.batched:
        futs = [loop.submit(_one_async(entry, s, timeout)) for s in samples]
        for i, fut in enumerate(futs):
            yield i, fut.result()
        return
    if g.is_async:
        yield from enumerate(loop.submit(_batched_async(entry, samples, timeout)).result())
        return
    if g.batched:
        yield from enumerate(g.grade(samples))
        return
    for i, s in enumerate(samples):
        yield i, g.grade([s])[0]


@dataclass
class ShardReply:
    """What a watched shard run returns.

    Attributes:
        outcomes: one per sample; None for samples that were not run (send them again).
        tainted: a thread of this process is stuck in a grader; replace the process.
    """

    outcomes: list[Outcome | None]
    tainted: bool = False


def run_shard_watched(
    entry: GraderEntry,
    samples: Sequence[Sample],
    timeout: float | None,
    loop: EventLoopThread,
    threads: concurrent.futures.ThreadPoolExecutor,
) -> ShardReply:
    """Score a shard in this process, stopping at the first sample past its timeout.

    Sync graders run in a helper thread watched from the calling thread (no per-sample
    cost: the watcher only wakes at deadlines). A sample past its timeout gets a
    ``timeout`` outcome, the samples after it are returned unrun (None), and the reply
    is marked tainted because the stuck thread cannot be stopped from inside the
    process. Async graders time out by cancellation; if the event loop itself is
    blocked, the unfinished samples time out and the reply is tainted.
    """
    n = len(samples)
    g = entry.grader
    if g.is_async:
        if g.batched:
            fut = loop.submit(_batched_async(entry, samples, timeout))
            try:
                return ShardReply(list(fut.result(None if timeout is None else timeout + ASYNC_GRACE_S)))
            except concurrent.futures.TimeoutError:
                return ShardReply([timeout_outcome(entry.id, timeout or 0.0) for _ in samples], tainted=True)
        futs = [loop.submit(_one_async(entry, s, timeout)) for s in samples]
        done, _ = concurrent.futures.wait(futs, None if timeout is None else timeout + ASYNC_GRACE_S)
        outs: list[Outcome | None] = [
            f.result() if f in done else timeout_outcome(entry.id, timeout or 0.0) for f in futs
        ]
        return ShardReply(outs, tainted=len(done) < n)
    if timeout is None:
        if g.batched:
            return ShardReply(list(g.grade(samples)))
        return ShardReply([g.grade([s])[0] for s in samples])
    if g.batched:
        fut = threads.submit(g.grade, samples)
        try:
            return ShardReply(list(fut.result(timeout)))
        except concurrent.futures.TimeoutError:
            return ShardReply([timeout_outcome(entry.id, timeout) for _ in samples], tainted=True)

    results: list[Outcome | None] = [None] * n
    progress = {"index": 0, "started": time.monotonic()}

    def work() -> None:
        for i, s in enumerate(samples):
            progress["started"] = time.monotonic()
            progress["index"] = i
            results[i] = g.grade([s])[0]
            if progress.get("abandoned"):
                return
        progress["index"] = n

    fut = threads.submit(work)
    while True:
        index, started = progress["index"], progress["started"]
        try:
            fut.result(max(0.0, started + timeout - time.monotonic()))
            return ShardReply(results)
        except concurrent.futures.TimeoutError:
            pass
        if progress["index"] == index and progress["started"] == started and time.monotonic() >= started + timeout:
            progress["abandoned"] = True
            out: list[Outcome | None] = list(results[:index]) + [timeout_outcome(entry.id, timeout)] + [None] * (n - index - 1)
            return ShardReply(out, tainted=True)
