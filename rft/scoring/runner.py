"""The worker side of the scoring engine: run one grader over one shard of samples.

The same code runs inside local worker processes (:mod:`rft.scoring.local`), inside
Ray grader actors (:mod:`rft.scoring.ray`) and in-process (``inline`` mode). It never
imports Ray, and it never raises for grader faults: every sample gets an
:class:`~rft.core.Outcome`.

Two ways of enforcing a timeout live here:

* :func:`iter_shard` marks the running sample in a shared :class:`ProgressSlot`, so a
  *supervisor process* can kill the worker when one sample runs past its timeout and
  knows exactly which one (local executor; this also stops C code that never
  releases the GIL). Outcomes of fast samples travel in batches; slow ones at once.
* :func:`run_shard_watched` watches the work from another thread of the same process
  and returns early with a ``timeout`` outcome, reporting that the process is now
  *tainted* (a thread is stuck in it) so the caller replaces it (Ray actors).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import mmap
import os
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rft.core import GraderEntry, GraderSet, Outcome, OutcomeKind, Sample
from rft.plugins import grader_set_from_spec

logger = logging.getLogger(__name__)

__all__ = [
    "EventLoopThread",
    "GraderSetPayload",
    "ProgressSlot",
    "ShardReply",
    "iter_shard",
    "load_grader_set",
    "make_payload",
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
        import pickle as pickler
    try:
        return GraderSetPayload(pickled=pickler.dumps(grader_set))
    except Exception as err:
        from rft.core.errors import ConfigError

        raise ConfigError(
            f"the grader set {grader_set!r} cannot be sent to worker processes: {type(err).__name__}: {err}. "
            "Load it from a grader-set file (so workers rebuild it from its spec), make parameterised "
            "graders picklable classes, or use ScoringOptions(inline=True) to score in this process"
        ) from err


def load_grader_set(payload: GraderSetPayload) -> GraderSet:
    """Rebuild the grader set in this process (once per worker or actor)."""
    if payload.spec is not None:
        return grader_set_from_spec(payload.spec)
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
    except Exception as err:  # noqa: BLE001 - agrade never raises for grader faults: a bug of ours, kept per sample
        out = Outcome.failure(OutcomeKind.INFRASTRUCTURE, f"scoring {entry.id!r} failed: {type(err).__name__}: {err}")
        out.latency_s = time.perf_counter() - t0
        return out


async def _batched_async(entry: GraderEntry, samples: Sequence[Sample], timeout: float | None) -> list[Outcome]:
    try:
        return await asyncio.wait_for(entry.grader.agrade(samples), timeout)
    except asyncio.TimeoutError:
        return [timeout_outcome(entry.id, timeout or 0.0) for _ in samples]


def iter_shard(
    entry: GraderEntry,
    samples: Sequence[Sample],
    timeout: float | None,
    loop: EventLoopThread,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, Outcome]]:
    """Score a shard, yielding ``(index, outcome)`` as each outcome is known.

    Sync per-sample graders run one sample after another and call ``on_start(index)``
    before each, so a supervisor knows which sample is running and since when. Async
    graders run concurrently on ``loop`` (each sample with its own timeout); batched
    graders make one call for the whole shard.
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
        if on_start is not None:
            on_start(i)
        yield i, g.grade([s])[0]


class ProgressSlot:
    """Which sample a worker process is running and since when, in shared memory.

    The worker writes ``(task, position, start)`` before each sample (no system call);
    the supervisor reads it at its deadlines. ``start`` is ``time.monotonic()``, which
    is one clock for every process on the machine.
    """

    _FMT = "<qqd"
    SIZE = struct.calcsize(_FMT)

    def __init__(self, path: str):
        self.path = path
        with open(path, "r+b") as f:
            self._mm = mmap.mmap(f.fileno(), self.SIZE)

    @classmethod
    def create(cls) -> ProgressSlot:
        import tempfile

        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="rft-progress-", dir=folder)
        os.write(fd, bytes(cls.SIZE))
        os.close(fd)
        return cls(path)

    def write(self, task: int, position: int) -> None:
        struct.pack_into(self._FMT, self._mm, 0, task, position, time.monotonic())

    def read(self) -> tuple[int, int, float]:
        task, position, started = struct.unpack_from(self._FMT, self._mm, 0)
        return int(task), int(position), float(started)

    def unlink(self) -> None:
        """Remove the file (both mappings stay valid)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass  # already removed: nothing to do

    def close(self) -> None:
        self._mm.close()


class _DaemonThreads:
    """Reusable daemon threads: a grader stuck in one must not keep the process alive at
    exit (a ``ThreadPoolExecutor``'s threads are joined at exit), and starting a thread
    per shard would cost more than scoring a shard of a cheap grader. A stuck thread
    simply never comes back to the idle list."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[queue.SimpleQueue[Any]] = queue.SimpleQueue()

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            inbox = self._idle.get_nowait()
        except queue.Empty:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="rft-grader", daemon=True).start()
        inbox.put((fn, args, fut))
        return fut

    def _serve(self, inbox: queue.SimpleQueue[Any]) -> None:
        while True:
            fn, args, fut = inbox.get()
            try:
                fut.set_result(fn(*args))
            except BaseException as err:  # noqa: BLE001 - handed to the waiting thread, which re-raises it
                fut.set_exception(err)
            self._idle.put(inbox)


_THREADS = _DaemonThreads()


def _in_daemon_thread(fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
    return _THREADS.submit(fn, *args)


@dataclass
class ShardReply:
    """What a watched shard run returns.

    Attributes:
        outcomes: one per sample; None for samples that were not run (send them again).
        tainted: a thread of this process is stuck in a grader; replace the process.
        split: the samples without an outcome could not be told apart from the one that
            got the process stuck: send them again one by one, each alone.
    """

    outcomes: list[Outcome | None]
    tainted: bool = False
    split: bool = False


def run_shard_watched(
    entry: GraderEntry,
    samples: Sequence[Sample],
    timeout: float | None,
    loop: EventLoopThread,
) -> ShardReply:
    """Score a shard in this process, stopping at the first sample past its timeout.

    Sync graders run in a helper thread watched from the calling thread (no per-sample
    cost: the watcher only wakes at deadlines). A sample past its timeout gets a
    ``timeout`` outcome, the samples after it are returned unrun (None), and the reply
    is marked tainted because the stuck thread cannot be stopped from inside the
    process. Async graders time out by cancellation; if the event loop itself is
    blocked (sync code in a coroutine), the reply is tainted and the unfinished
    samples come back unrun with ``split`` set (or as a timeout when only one is left),
    so each runs again alone and only the one that blocks times out.
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
        done, pending = concurrent.futures.wait(futs, None if timeout is None else timeout + ASYNC_GRACE_S)
        if not pending:
            return ShardReply([f.result() for f in futs])
        # a grader blocked the event loop (sync code in a coroutine): cancellation cannot
        # reach it, and the samples it starved cannot be told from it
        if len(pending) == 1:
            return ShardReply(
                [f.result() if f in done else timeout_outcome(entry.id, timeout or 0.0) for f in futs], tainted=True
            )
        return ShardReply([f.result() if f in done else None for f in futs], tainted=True, split=True)
    if timeout is None:
        if g.batched:
            return ShardReply(list(g.grade(samples)))
        return ShardReply([g.grade([s])[0] for s in samples])
    if g.batched:
        fut = _in_daemon_thread(g.grade, samples)
        try:
            return ShardReply(list(fut.result(timeout)))
        except concurrent.futures.TimeoutError:
            return ShardReply([timeout_outcome(entry.id, timeout) for _ in samples], tainted=True)

    results: list[Outcome | None] = [None] * n
    progress: dict[str, Any] = {"index": 0, "started": time.monotonic(), "abandoned": False}

    def work() -> None:
        for i, s in enumerate(samples):
            progress["started"] = time.monotonic()
            progress["index"] = i
            results[i] = g.grade([s])[0]
            if progress.get("abandoned"):
                return
        progress["index"] = n

    fut = _in_daemon_thread(work)
    while True:
        index, started = progress["index"], progress["started"]
        try:
            fut.result(max(0.0, started + timeout - time.monotonic()))
            return ShardReply(results)
        except concurrent.futures.TimeoutError:
            pass
        if progress["index"] == index and progress["started"] == started and time.monotonic() >= started + timeout:
            progress["abandoned"] = True
            out: list[Outcome | None] = (
                list(results[:index]) + [timeout_outcome(entry.id, timeout)] + [None] * (n - index - 1)
            )
            return ShardReply(out, tainted=True)


# ---------------------------------------------------------------------------
# a worker process of the local executor: ``python -m rft.scoring.runner IN OUT``
# ---------------------------------------------------------------------------


#: A worker sends outcomes of fast samples in batches: at the end of a shard, or once
#: the oldest unsent one is this old. Slow samples are sent at once.
FLUSH_AFTER_S = 0.02


def worker_main(conn_in: Any, conn_out: Any) -> None:
    """Serve one local worker: load the graders once, then score shards until told to stop.

    The parent sends ``(sys_path, payload, progress_path)`` first, then
    ``(task, grader_id, samples, timeout)`` per shard, and None to stop. The worker
    answers ``("ready", pid)`` (or ``("init_error", traceback)``), then
    ``("out", task, [(position, outcome), ...])`` as outcomes are known and
    ``("done", task, [...])`` at the end of each shard, and marks the running sample
    in the shared :class:`ProgressSlot`.
    """
    import sys
    import traceback

    try:
        sys_path, payload, progress_path = conn_in.recv()
        sys.path[:] = [p for p in sys_path if p not in sys.path] + sys.path
        slot = ProgressSlot(progress_path)
        grader_set = load_grader_set(payload)
    except BaseException:  # noqa: BLE001 - any failure to load the plugins is reported to the parent
        conn_out.send(("init_error", traceback.format_exc()))
        return
    loop = EventLoopThread()
    conn_out.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn_in.recv()
        except EOFError:
            return
        if msg is None:
            return
        task, grader_id, samples, timeout = msg
        entry = grader_set[grader_id]
        # only a sequential shard can be cut short with outcomes worth keeping; async and
        # batched shards finish (or time out) as a whole, so they answer once
        sequential = not entry.grader.is_async and not entry.grader.batched
        buf: list[tuple[int, Outcome]] = []
        since = time.monotonic()

        def on_start(i: int, t: int = task) -> None:
            slot.write(t, i)

        for pos, outcome in iter_shard(entry, samples, timeout, loop, on_start):
            if not buf:
                since = time.monotonic()
            buf.append((pos, outcome))
            if sequential and (outcome.latency_s >= FLUSH_AFTER_S / 10 or time.monotonic() - since >= FLUSH_AFTER_S):
                conn_out.send(("out", task, buf))
                buf = []
        conn_out.send(("done", task, buf))


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s rft-grader-worker %(name)s: %(message)s")
    worker_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
