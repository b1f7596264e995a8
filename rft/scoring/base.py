"""The executor interface shared by the local and the Ray executors.

:class:`ScoringOptions` (the ``scoring:`` settings) is declared in :mod:`rft.config.sections`
and re-exported here, so ``from rft.scoring import ScoringOptions`` keeps working.
"""

from __future__ import annotations

import abc
import copy
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rft.config import ScoringOptions
from rft.core import GraderEntry, GraderSet, Outcome, OutcomeKind, RewardError, Sample
from rft.core.errors import GraderError
from rft.core.text import shorten
from rft.scoring.cache import ResultCache, grader_inputs
from rft.scoring.metrics import batch_metrics

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger(__name__)

__all__ = [
    "BatchResult",
    "Executor",
    "Job",
    "Ledger",
    "ScoringOptions",
    "Task",
    "default_group_keys",
    "group_members",
    "make_executor",
]


def default_group_keys(samples: Sequence[Sample]) -> list[str]:
    """The default group of each sample for group graders: samples with identical prompts.

    >>> a, b, c = default_group_keys([Sample("x", prompt="2+2?"), Sample("y", prompt="3+3?"), Sample("z", prompt="2+2?")])
    >>> a == c, a == b
    (True, False)
    """
    return [
        json.dumps(
            s.prompt if s.prompt is not None else s.prompt_messages, sort_keys=True, default=str, ensure_ascii=False
        )
        for s in samples
    ]


def group_members(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices of each group, groups in order of first appearance, members in batch order.

    >>> group_members(["p1", "p2", "p1", "p2", "p3"])
    [[0, 2], [1, 3], [4]]
    """
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


@dataclass
class BatchResult:
    """Outcomes of one batch.

    Attributes:
        outcomes: per sample, grader id → :class:`Outcome`.
        rewards: per sample, the combined reward (``GraderSet.combine``), None when none applies.
        reward_errors: per sample, why a formula gave no reward (:class:`rft.core.RewardError`:
            ``missing_score`` or ``formula_error`` with a reason), None when it gave one.
        metrics: flat per-batch metrics, e.g. ``graders/<id>/mean``, ``graders/<id>/latency_p95``,
            ``graders/<id>/count/<kind>``, ``graders/<id>/cache_hit_rate`` — ready for TRL's ``log_metric``.
    """

    outcomes: list[dict[str, Outcome]]
    rewards: list[float | None]
    metrics: dict[str, float] = field(default_factory=dict)
    reward_errors: list[RewardError | None] = field(default_factory=list)

    def scores(self, grader_id: str) -> list[float | None]:
        """Per-sample scores of one grader (error outcomes give their fallback score or None)."""
        return [per[grader_id].score for per in self.outcomes]

    def errors(self) -> list[tuple[int, str, Outcome]]:
        return [(i, gid, o) for i, per in enumerate(self.outcomes) for gid, o in per.items() if o.kind.is_error]


@dataclass
class Job:
    """One grader over the samples of a batch that need a call (cache misses, deduplicated).

    Attributes:
        entry: the grader and its policy.
        samples: the samples to score.
        timeout: seconds per call (the entry's own, else the executor's default).
        shards: at most this many shards (None: one per worker); see
            :meth:`Executor.shards_for`.
        groups: for a group grader, the positions in ``samples`` of each group; every
            group is one task, never split, retried and timed out as a whole.
    """

    entry: GraderEntry
    samples: list[Sample]
    timeout: float | None
    shards: int | None = None
    groups: list[list[int]] | None = None


@dataclass
class Task:
    """A shard of a job: what one worker or actor scores in one call.

    ``exclusive`` tasks hold samples suspected of crashing their worker: they run on a
    worker with nothing else in flight, so that the next crash names its culprit.
    """

    job: int
    idx: list[int]
    exclusive: bool = False


class Ledger:
    """Bookkeeping shared by the executors: shards, results, crashes and retries.

    A task whose worker died is handled by who can be blamed. When the culprit is
    known (a one-sample task, or the first unfinished sample of a sequential shard),
    it is charged one crash and retried alone; after ``entry.retries`` retries it is
    dropped with an ``infrastructure`` outcome. The other unfinished samples are sent
    again without charge — as one shard when the culprit is known, else one by one,
    so that the next crash names its culprit. Every send is counted all the same: an
    outcome's ``attempts`` is how many times its sample went to a worker, so the
    ``retries`` metric shows the extra work a lost actor or node cost, charged or not.

    A group grader's task is one group: it is never split. A crash is charged to the
    whole group, which is sent again as one task (alone on a worker) or, after
    ``entry.retries`` retries, dropped as ``infrastructure`` for every completion of it.
    """

    def __init__(self, jobs: Sequence[Job], num_shards: int, *, oversplit: int = 1):
        """``num_shards`` workers; a measured slow sync grader may get up to ``oversplit``
        shards per worker, so that a worker that finishes early takes the next one (for
        executors that hand a worker one task at a time)."""
        self.jobs = list(jobs)
        self.results: list[list[Outcome | None]] = [[None] * len(j.samples) for j in self.jobs]
        self.crashes: list[list[int]] = [[0] * len(j.samples) for j in self.jobs]
        self.sends: list[list[int]] = [[1] * len(j.samples) for j in self.jobs]
        self.pending: deque[Task] = deque()

        # a batched grader gets the whole batch in one call (what its author expects, and
        # the same on every executor); other graders get one shard per worker
        def shards(job: Job) -> int:
            if job.entry.grader.batched:
                return 1
            if job.shards is None:
                return num_shards
            # an async shard overlaps its own samples: more shards than workers gain nothing
            per_worker = 1 if job.entry.grader.is_async else oversplit
            return max(1, min(job.shards, num_shards * per_worker))

        per_job = [
            [Task(j, list(g)) for g in job.groups if g]
            if job.groups is not None
            else self._split(j, list(range(len(job.samples))), shards(job))
            for j, job in enumerate(self.jobs)
        ]
        for k in range(max((len(t) for t in per_job), default=0)):  # interleave: every grader starts early
            for tasks in per_job:
                if k < len(tasks):
                    self.pending.append(tasks[k])
        self._open = sum(len(j.samples) for j in self.jobs)

    @staticmethod
    def _split(job: int, idx: list[int], k: int) -> list[Task]:
        if not idx:
            return []
        size = -(-len(idx) // max(1, k))
        return [Task(job, idx[i : i + size]) for i in range(0, len(idx), size)]

    def done(self) -> bool:
        return self._open == 0

    def is_group(self, task: Task) -> bool:
        """The task is one group of a group grader (it is never split)."""
        return self.jobs[task.job].groups is not None

    def samples(self, task: Task) -> list[Sample]:
        job = self.jobs[task.job]
        return [job.samples[i] for i in task.idx]

    def record(self, task: Task, pos: int, outcome: Outcome) -> None:
        """Store the outcome of ``task.idx[pos]``."""
        i = task.idx[pos]
        if self.results[task.job][i] is None:
            self._open -= 1
        outcome.attempts = self.sends[task.job][i]
        self.results[task.job][i] = outcome

    def unfinished(self, task: Task) -> list[int]:
        """Positions in ``task`` without an outcome yet."""
        res = self.results[task.job]
        return [p for p, i in enumerate(task.idx) if res[i] is None]

    def requeue(self, task: Task, positions: Sequence[int], *, exclusive: bool = False) -> None:
        """Send these positions of ``task`` again, without charge (each send is counted)."""
        for p in positions:
            self.sends[task.job][task.idx[p]] += 1
        if positions:
            self.pending.append(Task(task.job, [task.idx[p] for p in positions], exclusive))

    def settle(self, task: Task, outcomes: Sequence[Outcome | None], *, split: bool = False) -> None:
        """Record a shard's reply: store each outcome, send the samples without one again.

        Args:
            task: the task the reply answers.
            outcomes: one per position of ``task``; None where the sample was not run.
            split: send the unrun samples again one by one, each alone on a worker (they
                cannot be told apart from the one that got the worker stuck); else as
                one task.
        """
        unrun = []
        for pos, out in enumerate(outcomes):
            if out is None:
                unrun.append(pos)
            else:
                self.record(task, pos, out)
        if split and not self.is_group(task):
            for pos in unrun:
                self.requeue(task, [pos], exclusive=True)
        else:
            self.requeue(task, unrun)

    def suspect(self, task: Task) -> None:
        """The worker running ``task`` died with other work in flight: no one can be
        blamed, so the unfinished samples run again one by one, each alone on a worker
        (a group runs again whole, alone on a worker)."""
        if self.is_group(task):
            self.requeue(task, self.unfinished(task), exclusive=True)
            return
        for p in self.unfinished(task):
            self.requeue(task, [p], exclusive=True)

    def crashed(self, task: Task, error: str, *, culprit: int | None = None) -> None:
        """The worker running only ``task`` died; ``culprit`` is the position to blame, if known."""
        todo = self.unfinished(task)
        if self.is_group(task):
            self._group_crashed(task, todo, error)
            return
        if culprit is None and len(todo) == 1:
            culprit = todo[0]
        if culprit is None:
            self.suspect(task)
            return
        entry = self.jobs[task.job].entry
        i = task.idx[culprit]
        self.crashes[task.job][i] += 1
        if self.crashes[task.job][i] > entry.retries:
            self._give_up(task.job, i, f"grader {entry.id!r}: {error}")
            logger.warning("dropped a sample of grader %r: %s", entry.id, error)
        else:
            self.requeue(task, [culprit], exclusive=True)
        self.requeue(task, [p for p in todo if p != culprit])

    def _give_up(self, job: int, i: int, what: str) -> None:
        """Sample ``i`` of ``job`` used up its retries: it becomes an ``infrastructure`` outcome."""
        retries = self.jobs[job].entry.retries
        out = Outcome.failure(
            OutcomeKind.INFRASTRUCTURE,
            f"{what}; gave up after {retries} retr{'y' if retries == 1 else 'ies'} "
            "(set `retries:` on the grader to change)",
        )
        out.attempts = self.sends[job][i]
        self.results[job][i] = out
        self._open -= 1

    def _group_crashed(self, task: Task, todo: list[int], error: str) -> None:
        """A group's worker died: the group as a whole is the culprit."""
        entry = self.jobs[task.job].entry
        crashes = self.crashes[task.job]
        for p in todo:
            crashes[task.idx[p]] += 1
        if not todo or max(crashes[task.idx[p]] for p in todo) <= entry.retries:
            self.requeue(task, todo, exclusive=True)
            return
        for p in todo:
            self._give_up(
                task.job,
                task.idx[p],
                f"grader {entry.id!r} (a group grader, {len(todo)} completions of one group): {error}",
            )
        logger.warning("dropped a group of %d samples of grader %r: %s", len(todo), entry.id, error)

    def outcomes(self) -> list[list[Outcome]]:
        if not self.done():
            raise RuntimeError("ledger read before every sample has an outcome")
        return [[o for o in res if o is not None] for res in self.results]


class Executor(abc.ABC):
    """Scores batches of samples with a GraderSet. Use as a context manager.

    :meth:`score` is the one contract for every executor: the result cache, in-batch
    deduplication, the per-grader error policy (``on_error``), the error budget and
    the metrics live here; subclasses only run :class:`Job` s (:meth:`_run`), applying
    timeouts and retrying infrastructure failures.
    """

    #: Measured work (seconds) a shard must carry to be worth a call of its own; below
    #: it, the call's round trip costs more than running the samples in parallel saves.
    min_shard_s: float = 0.005

    def __init__(self, grader_set: GraderSet, options: ScoringOptions | None = None):
        self.grader_set = grader_set
        self.options = options or ScoringOptions()
        self.cache = ResultCache(self.options.cache_size) if self.options.cache else None
        self._lock = threading.Lock()  # one batch at a time through the pool
        self._cost: dict[str, float] = {}  # grader id → seconds per sample in its last batch

    def shards_for(self, entry: GraderEntry, n: int) -> int | None:
        """How many shards ``n`` samples of ``entry`` are worth: one per worker until the
        grader has been measured, then one per :attr:`min_shard_s` of its measured work
        (a cheap string check goes as one call instead of one per worker). The
        :class:`Ledger` caps it by the number of workers.
        """
        per = self._cost.get(entry.id)
        if per is None:
            return None
        return max(1, int(per * n / self.min_shard_s))

    def _measure(self, jobs: Sequence[Job], results: Sequence[Sequence[Outcome]]) -> None:
        for job, outs in zip(jobs, results):
            lat = [o.latency_s for o in outs if o.kind is not OutcomeKind.INFRASTRUCTURE]
            if lat:
                self._cost[job.entry.id] = sum(lat) / len(lat)

    def timeout_for(self, entry: GraderEntry) -> float | None:
        """Seconds per call of ``entry``: its own ``timeout``, else ``default_timeout``."""
        return entry.timeout if entry.timeout is not None else self.options.default_timeout

    @abc.abstractmethod
    def _run(self, jobs: Sequence[Job]) -> list[list[Outcome]]:
        """One outcome per sample of each job, in order; timeouts and retries applied."""

    def score(
        self, samples: Sequence[Sample], *, step: int | None = None, groups: Sequence[Hashable] | None = None
    ) -> BatchResult:
        """Score every sample with every grader; applies timeouts, retries, error policy,
        the error budget (raising :class:`rft.GraderError`) and the cache.

        Args:
            samples: the batch.
            step: the training step, injected into samples that have none.
            groups: for group graders, a group key per sample (e.g. the prompt id); samples
                with equal keys are one group. Default: samples with identical prompts
                (:func:`default_group_keys`). Unused when the set has no group grader.

        Raises:
            GraderError: a grader's errors in this batch exceed ``options.error_budget``.
                The scored batch is attached as ``err.result``.
        """
        t0 = time.perf_counter()
        batch = [s if step is None or s.step is not None else replace(s, step=step) for s in samples]
        n = len(batch)
        found: list[dict[str, Outcome]] = [{} for _ in range(n)]
        plans: list[tuple[GraderEntry, list[int], list[tuple[int, int]], list[str | None]]] = []
        jobs: list[Job] = []
        members: list[list[int]] = []
        if any(e.grader.group for e in self.grader_set):
            group_keys = list(groups) if groups is not None else default_group_keys(batch)
            if len(group_keys) != n:
                raise ValueError(f"score() got {len(group_keys)} group keys for {n} samples; give one per sample")
            members = group_members(group_keys)
        for entry in self.grader_set:
            if entry.grader.group:
                plan, job = self._plan_groups(entry, batch, members, found)
                plans.append(plan)
                jobs.append(job)
                continue
            keys: list[str | None] = self.cache.keys(entry.grader, batch) if self.cache is not None else [None] * n
            first: dict[str, int] = {}
            run: list[int] = []
            dups: list[tuple[int, int]] = []
            for i, key in enumerate(keys):
                if key is not None and self.cache is not None:
                    hit = self.cache.get(key)
                    if hit is not None:
                        found[i][entry.id] = hit
                        continue
                    if key in first:
                        dups.append((i, first[key]))
                        continue
                    first[key] = i
                run.append(i)
            plans.append((entry, run, dups, keys))
            jobs.append(Job(entry, [batch[i] for i in run], self.timeout_for(entry), self.shards_for(entry, len(run))))
        if any(j.samples for j in jobs):
            with self._lock:
                results = self._run(jobs)
            self._measure(jobs, results)
        else:
            results = [[] for _ in jobs]
        for (entry, run, dups, keys), outs in zip(plans, results):
            for i, out in zip(run, outs):
                found[i][entry.id] = out
                if self.cache is not None:
                    self.cache.put(keys[i], out)
            for i, j in dups:  # a duplicate in this batch shares the one call made
                dup = copy.copy(found[j][entry.id])
                dup.metrics = dict(dup.metrics)
                dup.cached = True
                found[i][entry.id] = dup
        outcomes = [{e.id: e.apply_policy(per[e.id]) for e in self.grader_set} for per in found]
        rewards, reward_errors = self.grader_set.rewards(outcomes)
        result = BatchResult(outcomes, rewards, reward_errors=reward_errors)
        result.metrics = batch_metrics(
            self.grader_set, outcomes, rewards, seconds=time.perf_counter() - t0, reward_errors=reward_errors
        )
        self._check_budget(batch, result, step)
        return result

    def _plan_groups(
        self, entry: GraderEntry, batch: list[Sample], members: list[list[int]], found: list[dict[str, Outcome]]
    ) -> tuple[tuple[GraderEntry, list[int], list[tuple[int, int]], list[str | None]], Job]:
        """The job of a group grader: whole groups only. A group is a cache hit only when
        every completion of it is (its keys cover the whole group); an identical group
        in the same batch shares the one call."""
        keys: list[str | None] = (
            self.cache.group_keys(entry.grader, batch, members) if self.cache is not None else [None] * len(batch)
        )
        run: list[int] = []
        job_groups: list[list[int]] = []
        dups: list[tuple[int, int]] = []
        first: dict[tuple[str, ...], list[int]] = {}
        for g in members:
            gkeys = [keys[i] for i in g]
            if self.cache is not None and all(k is not None for k in gkeys):
                hits = [self.cache.get(k) for k in gkeys]
                if all(h is not None for h in hits):
                    for i, hit in zip(g, hits):
                        found[i][entry.id] = hit  # type: ignore[assignment]
                    continue
                whole = tuple(k for k in gkeys if k is not None)
                if whole in first:
                    dups.extend(zip(g, first[whole]))
                    continue
                first[whole] = g
            job_groups.append(list(range(len(run), len(run) + len(g))))
            run.extend(g)
        job = Job(entry, [batch[i] for i in run], self.timeout_for(entry), None, groups=job_groups)
        return (entry, run, dups, keys), job

    def _check_budget(self, samples: Sequence[Sample], result: BatchResult, step: int | None) -> None:
        """Raise GraderError for the first grader whose error share exceeds the budget.

        Every error kind counts, whatever the grader's ``on_error`` policy: a fixed
        score or ``skip`` keeps a *flaky* grader from stopping the run, but a grader
        that fails on most of a batch is broken, and training on its fallback score
        would teach the model nothing true.
        """
        budget = self.options.error_budget
        n = len(samples)
        if budget >= 1.0 or n == 0:
            return
        for entry in self.grader_set:
            errs = [(i, per[entry.id]) for i, per in enumerate(result.outcomes) if per[entry.id].kind.is_error]
            if len(errs) <= budget * n:
                continue
            kinds = Counter(o.kind.value for _, o in errs)
            kind = kinds.most_common(1)[0][0]
            i, bad = next((i, o) for i, o in errs if o.kind.value == kind)
            inputs = _shorten_json(grader_inputs(entry.grader, samples[i]))
            counts = ", ".join(f"{k} {c}" for k, c in kinds.most_common())
            where = f" at step {step}" if step is not None else ""
            msg = (
                f"grader {entry.id!r} (plugin {entry.grader.plugin or '?'}) failed on {len(errs)} of {n} samples"
                f"{where} ({counts}), over the error budget of {budget:.0%}; a broken grader is not trained on.\n"
                f"First {kind} sample #{i}, inputs {inputs}:\n  {bad.error}"
                + (f"\n{bad.traceback.rstrip()}" if bad.traceback else "")
                + "\nFix the grader, or raise `scoring.error_budget` (1.0 disables the budget) if it is only flaky."
            )
            err = GraderError(
                msg,
                grader=entry.id,
                plugin=entry.grader.plugin,
                kind=kind,
                sample_index=i,
                sample=samples[i].to_dict(),
                traceback=bad.traceback,
            )
            err.result = result  # type: ignore[attr-defined]
            raise err

    async def ascore(
        self, samples: Sequence[Sample], *, step: int | None = None, groups: Sequence[Hashable] | None = None
    ) -> BatchResult:
        """:meth:`score` without blocking the caller's event loop."""
        import asyncio

        return await asyncio.to_thread(self.score, samples, step=step, groups=groups)

    def close(self) -> None:  # noqa: B027  (optional: an executor without resources keeps this)
        """Release workers / actors."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    grader_set: GraderSet, kind: str | None = None, options: ScoringOptions | None = None, **kwargs: Any
) -> Executor:
    """Create the executor named by ``kind`` (``"local"`` or ``"ray"``)."""
    options = options or ScoringOptions(**kwargs)
    kind = kind or options.executor
    if kind == "local":
        from rft.scoring.local import LocalExecutor

        return LocalExecutor(grader_set, options)
    if kind == "ray":
        from rft.scoring.ray import RayExecutor

        return RayExecutor(grader_set, options)
    from rft.core.errors import ConfigError

    raise ConfigError(f"unknown executor {kind!r}; valid: local, ray", key="scoring.executor")


def _shorten_json(value: Any, n: int = 500) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return shorten(text, n)
