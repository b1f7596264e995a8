"""The local executor: graders in a pool of worker processes on this machine.

Each worker process rebuilds the grader set once (from its spec, or from a pickle for
sets built in code) and keeps one event loop for async graders. A batch is split into
one shard per worker and grader, so a cheap grader costs one round trip per shard, not
per sample. Within a shard, sync graders run sample by sample and report each outcome
as it is known; async graders run concurrently.

The parent supervises: a sample that runs past its grader's ``timeout`` gets its
worker killed (SIGKILL, which also stops C code that ignores signals and never
releases the GIL), the sample is recorded as ``timeout``, a fresh worker takes the
dead one's place and the rest of the shard is sent again. A worker that dies by
itself (``os._exit``, a segfault, the OOM killer) is replaced the same way and the
sample it was on is retried up to the grader's ``retries``, then dropped as
``infrastructure``.

Limits that hold for the whole run (a judge endpoint's ``max_concurrency``, rate limits
and budget) are served to the workers by one :class:`rft.scoring.limits.LimiterServer`
in this process, which the workers find through ``$RFT_LIMITS_SOCKET``.

``ScoringOptions(inline=True)`` runs graders in this process instead: the fastest
path for unit tests and debugging, with the same contract except that a crashing
grader takes the process with it and a hung sync grader is reported as a timeout but
keeps its thread.
"""

from __future__ import annotations

import logging
import multiprocessing.connection as mpc
import os
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence

from rft.core import GraderSet, Outcome
from rft.core.errors import PluginError
from rft.scoring.base import Executor, Job, Ledger, ScoringOptions, Task
from rft.scoring.limits import LimiterServer
from rft.scoring.runner import (
    ASYNC_GRACE_S,
    EventLoopThread,
    GraderSetPayload,
    ProgressSlot,
    make_payload,
    run_shard_watched,
    timeout_outcome,
)

logger = logging.getLogger(__name__)

__all__ = ["LocalExecutor"]


class _Worker:
    """One worker process (``python -m rft.scoring.runner``) and the task it is running.

    A plain subprocess rather than ``multiprocessing``'s spawn, so a user's script
    needs no ``if __name__ == "__main__":`` guard and is never re-imported.
    """

    def __init__(self, payload: GraderSetPayload, env: dict[str, str]):
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rft.scoring.runner", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.send_conn = mpc.Connection(to_child_w, readable=False)
        self.conn = mpc.Connection(from_child_r, writable=False)
        self.slot = ProgressSlot.create()
        self.send_conn.send((list(sys.path), payload, self.slot.path))
        self.ready = False
        self.task: Task | None = None
        self.seq = 0  # number of the task sent last, as the worker writes it in the slot
        self.timeout: float | None = None
        self.sequential = False
        self.is_async = False
        self.started = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> int | None:
        """Position in the current task of the sample the worker is running, if known."""
        seq, pos, _ = self.slot.read()
        return pos if self.task is not None and self.sequential and seq == self.seq else None

    def deadline(self) -> float | None:
        if self.task is None or self.timeout is None:
            return None
        if self.sequential:
            seq, _, start = self.slot.read()
            return (max(start, self.started) if seq == self.seq else self.started) + self.timeout
        return self.started + self.timeout + (ASYNC_GRACE_S if self.is_async else 0.0)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            logger.error("grader worker %d did not exit after SIGKILL", self.proc.pid)
        self.conn.close()
        self.send_conn.close()
        self.slot.unlink()
        self.slot.close()

    def stop(self) -> None:
        try:
            self.send_conn.send(None)
            self.proc.wait(1)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass  # already dead, closed or slow: kill() below settles it
        self.kill()


def _shutdown(workers: list[_Worker], limits: LimiterServer) -> None:
    for w in workers:
        w.stop()
    limits.close()


class LocalExecutor(Executor):
    """Scores batches in worker processes on this machine (or in-process with ``inline``).

    Args:
        grader_set: the graders; built from a grader-set file (workers rebuild it from
            its spec) or in code (sent to workers pickled with cloudpickle).
        options: ``num_workers``, ``default_timeout``, ``error_budget``, ``cache``, ``inline``.

    >>> import rft
    >>> from rft.core import GraderSet, Sample
    >>> gs = GraderSet([rft.grader(lambda completion: len(completion) / 10, name="length")])
    >>> with LocalExecutor(gs, ScoringOptions(inline=True)) as ex:
    ...     ex.score([Sample("hello"), Sample("hi")]).scores("length")
    [0.5, 0.2]
    """

    def __init__(self, grader_set: GraderSet, options: ScoringOptions | None = None):
        super().__init__(grader_set, options)
        self._workers: list[_Worker] = []
        self._loop: EventLoopThread | None = None
        if self.options.inline:
            self._loop = EventLoopThread()
            return
        self._payload = make_payload(grader_set)
        self._limits = LimiterServer()  # the run's judge limits, shared by every worker
        self._workers = [_Worker(self._payload, self._limits.env) for _ in range(self.options.num_workers)]
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._limits)
        logger.info("local executor: %d worker processes", len(self._workers))

    # -- running ------------------------------------------------------------
    def _run(self, jobs: Sequence[Job]) -> list[list[Outcome]]:
        if self.options.inline:
            return self._run_inline(jobs)
        if not self._workers:
            raise RuntimeError("this executor is closed")
        # a worker takes one shard at a time: smaller shards of a slow grader balance the load
        ledger = Ledger(jobs, len(self._workers), oversplit=4)
        while not ledger.done():
            self._assign(ledger)
            now = time.monotonic()
            deadlines = [d for w in self._workers if (d := w.deadline()) is not None]
            wait_s = max(0.0, min(deadlines) - now) if deadlines else None
            ready = set(mpc.wait([w.conn for w in self._workers], wait_s))
            for k, w in enumerate(list(self._workers)):
                if w.conn in ready and not self._drain(w, ledger):
                    self._replace(k, w, ledger, died=True)
            now = time.monotonic()
            for k, w in enumerate(list(self._workers)):
                d = w.deadline()
                if d is not None and now >= d:
                    self._on_timeout(k, w, ledger)
        self._settle(ledger)
        return ledger.outcomes()

    def _settle(self, ledger: Ledger) -> None:
        """Wait for the end-of-shard message of workers whose outcomes are all in, so no
        task outlives the batch it belongs to."""
        deadline = time.monotonic() + 5.0
        while any(w.task is not None for w in self._workers):
            busy = [w for w in self._workers if w.task is not None]
            ready = set(mpc.wait([w.conn for w in busy], max(0.0, deadline - time.monotonic())))
            for w in busy:
                if w.conn in ready:
                    alive = self._drain(w, ledger)
                elif time.monotonic() >= deadline:
                    alive = False
                else:
                    continue
                if not alive or w.task is not None and time.monotonic() >= deadline:
                    w.task = None  # its outcomes are all recorded; a fresh worker replaces it
                    self._replace(self._workers.index(w), w, ledger, died=False)

    def _assign(self, ledger: Ledger) -> None:
        for w in self._workers:
            if not ledger.pending:
                return
            if w.ready and w.task is None:
                task = ledger.pending.popleft()
                job = ledger.jobs[task.job]
                g = job.entry.grader
                w.task, w.timeout = task, job.timeout
                w.sequential = not g.batched and not g.is_async
                w.is_async = g.is_async
                w.started = time.monotonic()
                w.seq += 1
                try:
                    w.send_conn.send((w.seq, job.entry.id, ledger.samples(task), job.timeout))
                except (OSError, ValueError):
                    pass  # the worker died; the end of its pipe reports it on the next wait

    def _drain(self, w: _Worker, ledger: Ledger) -> bool:
        """Handle every message a worker has sent; False when it has died."""
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] in ("out", "done"):
                    if w.task is None or msg[1] != w.seq:
                        continue  # about a task given up on (cannot happen while the worker lives)
                    for pos, outcome in msg[2]:
                        ledger.record(w.task, pos, outcome)
                    if msg[0] == "done":
                        w.task = None
                elif msg[0] == "ready":
                    w.ready = True
                    w.slot.unlink()  # both processes have it mapped
                elif msg[0] == "init_error":
                    self.close()
                    raise PluginError(f"a grader worker process could not load the grader set:\n{msg[1]}")
        except (EOFError, OSError):
            return False
        return True

    def _replace(self, k: int, w: _Worker, ledger: Ledger, *, died: bool) -> None:
        was_ready = w.ready
        culprit_pos = w.running()
        w.kill()
        code = w.proc.returncode
        if died and w.task is not None:
            culprit = culprit_pos
            if culprit is not None and culprit not in ledger.unfinished(w.task):
                culprit = None
            ledger.crashed(w.task, f"its worker process died (exit code {code})", culprit=culprit)
            logger.warning("grader worker %d died (exit code %s); replacing it", w.pid, code)
        if died and not was_ready:
            self.close()
            raise PluginError(f"a grader worker process died while loading the grader set (exit code {code})")
        fresh = _Worker(self._payload, self._limits.env)
        self._workers[k] = fresh
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self._limits)

    def _on_timeout(self, k: int, w: _Worker, ledger: Ledger) -> None:
        task = w.task
        if task is None:
            return
        self._drain(w, ledger)  # outcomes that arrived at the deadline still count
        if w.task is None:
            return
        todo = ledger.unfinished(task)
        job = ledger.jobs[task.job]
        timeout = job.timeout or 0.0
        logger.warning("grader %r ran past its timeout of %g s; killing worker %d", job.entry.id, timeout, w.pid)
        if w.sequential:
            # the sample named in the progress slot; samples before it whose outcomes
            # were not sent yet are scored again
            running = w.running()
            culprit = running if running in todo else todo[0]
            ledger.record(task, culprit, timeout_outcome(job.entry.id, timeout))
            ledger.requeue(task, [p for p in todo if p != culprit])
        elif w.is_async and not job.entry.grader.batched and len(todo) > 1:
            # the event loop was blocked (sync code in a coroutine): the samples it starved
            # cannot be told from the one that blocked it, so each runs again alone
            ledger.suspect(task)
        else:  # one call for the whole shard (batched), or the one unfinished sample
            for p in todo:
                ledger.record(task, p, timeout_outcome(job.entry.id, timeout))
        w.task = None
        self._replace(k, w, ledger, died=False)

    def _run_inline(self, jobs: Sequence[Job]) -> list[list[Outcome]]:
        if self._loop is None:
            raise RuntimeError("this executor is closed")
        ledger = Ledger(jobs, 1)
        while ledger.pending:
            task = ledger.pending.popleft()
            job = ledger.jobs[task.job]
            reply = run_shard_watched(job.entry, ledger.samples(task), job.timeout, self._loop)
            if reply.tainted:
                logger.warning(
                    "grader %r ran past its timeout of %g s in inline mode; its thread cannot be stopped and keeps "
                    "running (use the default worker processes to kill hung graders)",
                    job.entry.id,
                    job.timeout,
                )
            ledger.settle(task, reply.outcomes, split=reply.split)
        return ledger.outcomes()

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        if self._workers:
            self._finalizer()
            self._workers = []
        if self._loop is not None:
            self._loop.close()
            self._loop = None
