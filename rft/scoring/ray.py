"""The Ray executor: graders in a pool of Ray actors (the only scoring module that imports ray).

Each actor rebuilds the grader set once (from its spec, or from a pickle for sets built
in code), keeps one event loop for async graders and a thread pool for sync ones, and
accepts ``max_concurrency`` calls at a time, so shards of async graders overlap. A
batch costs one remote call per shard (one shard per actor and grader), never one
per sample.

Timeouts: inside the actor, a sample past its timeout is recorded as ``timeout`` and
the call returns at once with the rest of its shard unrun; a thread is now stuck in
the actor, so the driver kills it (``ray.kill``), starts a fresh one and sends the
rest again. If the actor cannot even answer (C code holding the GIL), the driver
gives up on the call after ``timeout × samples in the shard`` plus a grace period and
does the same. An actor that dies (``os._exit``, OOM, node lost) is replaced and its
samples are retried up to the grader's ``retries``, then dropped as ``infrastructure``.

Limits that hold for the whole run (a judge endpoint's ``max_concurrency``, rate limits
and budget) live in one more actor, :class:`LimiterActor` (named ``rft-limits-<pool>``,
no CPU), created with the pool and handed to every grader actor as a
:class:`RayLimiter`; when a grader actor is replaced, the request slots it held are
given back.

Connection (:func:`connect`, the one function rftkit connects to Ray with, also used by
:mod:`rft.cluster`): an explicit ``address``, then ``RAY_ADDRESS``, then a local Ray
started here (with the dashboard off); a Ray already initialised in this process is
used as is. Only a connection this executor made is shut down by :meth:`close`.

The executor pickles: a copy (e.g. sent to a Ray Train worker in ``train_loop_config``)
uses the same actors and never kills them; the driver that created the pool owns it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import re
import time
from collections.abc import Sequence
from typing import Any

from rft.core import GraderSet, Outcome
from rft.core.errors import GraderInfrastructureError, JudgeBudgetError, PluginError, RFTError
from rft.scoring.base import Executor, Job, Ledger, ScoringOptions, Task
from rft.scoring.limits import LimiterService, LimitSpec, install
from rft.scoring.runner import (
    ASYNC_GRACE_S,
    EventLoopThread,
    GraderSetPayload,
    ShardReply,
    load_grader_set,
    make_payload,
    run_shard_watched,
    timeout_outcome,
)

logger = logging.getLogger(__name__)

__all__ = ["ClusterError", "LimiterActor", "RayExecutor", "RayLimiter", "connect", "pack", "resolve_address"]

#: Seconds to wait for the grader actors to start before reporting what blocks them.
ACTOR_START_TIMEOUT_S = 300.0
#: Seconds the driver adds to a call's own time budget before it declares the actor stuck.
DRIVER_GRACE_S = 5.0
#: Times one actor is replaced when it is lost (node died, process killed) before it started.
START_REPLACEMENTS = 3
#: Calls the limiter actor serves at once: each waiting request holds one, and a release
#: must never queue behind them.
LIMITER_CONCURRENCY = 100_000


class LimiterActor:
    """The run's :class:`~rft.scoring.limits.LimiterService` as an async Ray actor
    (a plain class; :class:`RayExecutor` makes it remote)."""

    def __init__(self) -> None:
        self.service = LimiterService()

    async def acquire(self, owner: str, lease: str, spec: dict[str, Any], tokens: int) -> tuple[str, str]:
        """("ok", ""), ("budget", message), or ("cancelled", "") when released while waiting."""
        try:
            await self.service.acquire(owner, lease, LimitSpec(**spec), tokens)
        except JudgeBudgetError as err:
            return "budget", str(err)
        except asyncio.CancelledError:  # released while it waited: its caller gave up
            return "cancelled", ""
        return "ok", ""

    async def release(self, lease: str, usage: tuple[int, float] | None) -> None:
        self.service.release(lease, usage)

    async def forget(self, owner: str) -> int:
        return self.service.forget(owner)

    async def spent(self, key: str) -> tuple[int, float, int]:
        return self.service.spent(key)


class RayLimiter:
    """A grader actor's line to the run's :class:`LimiterActor` (a
    :class:`~rft.scoring.limits.Limiter`; picklable, it travels to the actor).

    Args:
        actor: the limiter actor's handle.
        owner: names the grader actor, so its slots can be given back when it is replaced.
    """

    def __init__(self, actor: Any, owner: str):
        self.actor = actor
        self.owner = owner
        self._n = 0

    async def acquire(self, spec: LimitSpec, tokens: int) -> str:
        self._n += 1
        lease = f"{self.owner}-{self._n}"
        try:
            status, message = await self.actor.acquire.remote(self.owner, lease, spec.to_dict(), tokens)
        except asyncio.CancelledError:
            self.actor.release.remote(lease, None)  # granted or still waiting: the actor settles either
            raise
        except Exception as err:  # noqa: BLE001 - any Ray failure: the limiter is unreachable
            raise GraderInfrastructureError(
                f"the run's judge limiter actor cannot be reached ({type(err).__name__}: {err})"
            ) from err
        if status == "budget":
            raise JudgeBudgetError(message)
        if status != "ok":
            raise GraderInfrastructureError(f"the run's judge limiter refused a request slot ({status})")
        return lease

    def release(self, lease: str, usage: tuple[int, float] | None = None) -> None:
        self.actor.release.remote(lease, usage)

    async def aclose(self) -> None:
        """Nothing to close (the executor owns the limiter actor)."""


class GraderActor:
    """The grader actor (a plain class; :class:`RayExecutor` makes it remote)."""

    def __init__(self, payload: GraderSetPayload, limiter: RayLimiter | None = None):
        if limiter is not None:
            install(limiter)  # the judge client asks the run's limiter, not this process's
        self.grader_set = load_grader_set(payload)
        self.loop = EventLoopThread()

    def ping(self) -> int:
        return os.getpid()

    def score(self, grader_id: str, shard: bytes, timeout: float | None) -> bytes:
        """Score one shard: samples in, a :class:`ShardReply` out, each as one pickle."""
        return pack(run_shard_watched(self.grader_set[grader_id], pickle.loads(shard), timeout, self.loop))


def pack(obj: Any) -> bytes:
    """One pickle for a whole shard (its samples, or its reply).

    Ray serializes a list element by element (a msgpack frame and a cloudpickle call
    each); one blob halves the round trip of a 64-sample shard (``benchmarks/scoring.py``),
    and rows shared by a prompt's completions are sent once. Rows holding what the
    standard pickler refuses (a lambda, a local class) go through cloudpickle.
    """
    try:
        return pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        from ray import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)


class ClusterError(RFTError):
    """Ray cannot be reached, or the Ray cluster cannot run what was asked."""


def resolve_address(address: str | None = None) -> tuple[str | None, str]:
    """Where to connect, and why: explicit address, then ``RAY_ADDRESS``, then local.

    Returns:
        ``(address, source)`` with source ``"explicit"``, ``"RAY_ADDRESS"`` or ``"local"``
        (address None: start an embedded local Ray).

    >>> import os; os.environ.pop("RAY_ADDRESS", None) and None
    >>> resolve_address("ray://head:10001")
    ('ray://head:10001', 'explicit')
    >>> resolve_address(None)
    (None, 'local')
    """
    if address:
        return address, "explicit"
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env, "RAY_ADDRESS"
    return None, "local"


def connect(address: str | None = None, *, dashboard: bool = False, **init_kwargs: Any) -> bool:
    """Connect this process to Ray: an explicit address, else ``RAY_ADDRESS``, else a local Ray.

    The one way rftkit connects to Ray (the scoring executor and :mod:`rft.cluster` both call
    it); it logs which way it went. A Ray already initialised in this process is used as is.

    Args:
        address: ``auto``, ``HOST:PORT`` or ``ray://HOST:10001``; None tries ``RAY_ADDRESS``
            (``ray.init`` reads it), then starts a new local Ray.
        dashboard: start the dashboard with a local Ray (Ray Train's state tracking needs it;
            Ray picks a free port when 8265 is taken). Ignored when connecting to a cluster.
        **init_kwargs: more ``ray.init`` arguments (``runtime_env``, ``namespace``, ``num_cpus`` …).

    Returns:
        True when this call initialised Ray (so the caller should shut it down), False
        when Ray was already initialised in this process.

    Raises:
        ClusterError: the address cannot be reached; the message names it and where it came from.
    """
    import ray

    if ray.is_initialized():
        logger.info("ray: using the Ray already initialised in this process")
        return False
    target, source = resolve_address(address)
    t0 = time.perf_counter()
    try:
        if source == "explicit":
            ray.init(address=target, **init_kwargs)
        elif source == "RAY_ADDRESS":
            ray.init(**init_kwargs)
        else:
            # address="local" starts a new Ray even when `ray start` left one running on this machine
            ray.init(address="local", include_dashboard=dashboard, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        what = f"connect to Ray at {target!r} (address from {source})" if target else "start a local Ray"
        raise ClusterError(
            f"cannot {what}: {err}; start a "
            "cluster with `ray start --head` or pass --address; an address from RAY_ADDRESS must be reachable "
            "from this machine"
        ) from err
    where = "a new local Ray" if target is None else f"the Ray cluster at {target}"
    logger.info("ray: connected to %s (address from %s) in %.1f s", where, source, time.perf_counter() - t0)
    return True


_REMOTE: Any = None
_REMOTE_LIMITER: Any = None


def _remote_actor_class() -> Any:
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(GraderActor)
    return _REMOTE


def _remote_limiter_class() -> Any:
    global _REMOTE_LIMITER
    if _REMOTE_LIMITER is None:
        import ray

        _REMOTE_LIMITER = ray.remote(LimiterActor)
    return _REMOTE_LIMITER


class RayExecutor(Executor):
    """Scores batches in a pool of Ray actors.

    Args:
        grader_set: the graders; built from a grader-set file (actors rebuild it from
            its spec, loading the plugins there) or in code (sent pickled).
        options: ``num_workers`` actors, each with ``actor_resources`` (e.g.
            ``{"num_cpus": 1, "resources": {"grader": 1}}`` to place graders on grader
            nodes) and ``max_concurrency``; ``address`` to connect to.

    Raises:
        PluginError: an actor could not load the grader set (the message has its traceback).
    """

    def __init__(self, grader_set: GraderSet, options: ScoringOptions | None = None):
        super().__init__(grader_set, options)
        self._payload = make_payload(grader_set)
        self._started_ray = connect(self.options.address)
        self._owner = True
        self._pool_id = os.urandom(6).hex()  # names this pool's replacement actors
        self._actors: list[Any] = []
        self._generation: list[int] = []
        self._limiter: Any = None
        try:
            self._limiter = (
                _remote_limiter_class()
                .options(
                    name=f"rft-limits-{self._pool_id}",
                    num_cpus=0,
                    max_concurrency=LIMITER_CONCURRENCY,
                    max_restarts=0,
                )
                .remote()
            )
            self._actors = [self._new_actor(k) for k in range(self.options.num_workers)]
            self._generation = [0] * len(self._actors)
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        logger.info(
            "ray executor: %d grader actors (%s)",
            len(self._actors),
            self.options.actor_resources or "default resources",
        )

    # -- the pool -----------------------------------------------------------
    def _owner_name(self, slot: int, generation: int) -> str:
        return f"rft-graders-{self._pool_id}-{slot}-{generation}"

    def _new_actor(self, slot: int, generation: int = 0) -> Any:
        opts: dict[str, Any] = {"max_concurrency": self.options.max_concurrency, "max_restarts": 0}
        opts.update(self.options.actor_resources)
        name = self._owner_name(slot, generation)
        if generation > 0:
            # A replacement is named by (pool, slot, generation): every copy of this executor
            # (one per Ray Train learner) that sees the same actor die gets the same new actor,
            # so the learners keep sharing one pool of the configured size.
            opts.update(name=name, get_if_exists=True)
        return _remote_actor_class().options(**opts).remote(self._payload, RayLimiter(self._limiter, name))

    def _wait_ready(self) -> None:
        """Wait until every actor has loaded the grader set.

        An actor whose ``__init__`` raised is a :class:`PluginError` (the grader set does not
        load; starting it again would fail the same way). An actor lost for a system reason
        while starting (its node died, its process was killed) is replaced, up to
        :data:`START_REPLACEMENTS` times per actor.
        """
        import ray
        from ray.exceptions import RayActorError

        deadline = time.monotonic() + ACTOR_START_TIMEOUT_S
        pending = {a.ping.remote(): k for k, a in enumerate(self._actors)}
        replaced = [0] * len(self._actors)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RFTError(
                    f"{len(pending)} of {len(self._actors)} grader actors did not start within "
                    f"{ACTOR_START_TIMEOUT_S:g} s. Each asks for "
                    f"{self.options.actor_resources or 'the default resources (1 CPU to schedule)'}; the "
                    f"cluster has {ray.available_resources()} available. Lower `scoring.num_workers` or "
                    "`scoring.actor_resources`, or add nodes with those resources"
                )
            k = pending.pop(ready[0])
            try:
                ray.get(ready[0])
            except RayActorError as err:
                if err.actor_init_failed:  # its traceback ends with the plugin's own error
                    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # Ray colours the task name
                    raise PluginError(f"a grader actor could not load the grader set: {text}") from err
                if replaced[k] >= START_REPLACEMENTS:
                    raise RFTError(
                        f"grader actor {k} was lost {replaced[k] + 1} times while starting; last: {err}"
                    ) from err
                replaced[k] += 1
                logger.warning("grader actor %d was lost while starting (%s); replacing it", k, type(err).__name__)
                self._replace(k, kill=False)
                pending[self._actors[k].ping.remote()] = k

    def _replace(self, k: int, *, kill: bool) -> None:
        import ray

        if kill:
            ray.kill(self._actors[k], no_restart=True)
        # the request slots the old actor held (a judgment in flight when it died) come back
        self._limiter.forget.remote(self._owner_name(k, self._generation[k]))
        self._generation[k] += 1
        self._actors[k] = self._new_actor(k, self._generation[k])

    @property
    def actors(self) -> list[Any]:
        """The actor handles (picklable; hand them to Ray Train workers)."""
        return list(self._actors)

    # -- running ------------------------------------------------------------
    def _budget(self, job: Job, task: Task) -> float | None:
        if job.timeout is None:
            return None
        g = job.entry.grader
        per_call = job.timeout if (g.is_async or g.batched) else job.timeout * len(task.idx)
        return per_call + ASYNC_GRACE_S + DRIVER_GRACE_S

    def _dispatch(self, ledger: Ledger, inflight: dict[Any, Any], load: list[int], exclusive: list[bool]) -> None:
        """Send pending tasks: plain ones to the least-loaded actor, exclusive ones only
        to an idle actor, which then takes nothing else until they return."""
        held = []
        while ledger.pending:
            task = ledger.pending.popleft()
            free = [k for k in range(len(self._actors)) if not exclusive[k] and (load[k] == 0 or not task.exclusive)]
            if not free:
                held.append(task)
                continue
            k = min(free, key=load.__getitem__)
            job = ledger.jobs[task.job]
            ref = self._actors[k].score.remote(job.entry.id, pack(ledger.samples(task)), job.timeout)
            budget = self._budget(job, task)
            inflight[ref] = (task, k, self._generation[k], None if budget is None else time.monotonic() + budget)
            load[k] += 1
            exclusive[k] = task.exclusive
        ledger.pending.extend(held)

    def _run(self, jobs: Sequence[Job]) -> list[list[Outcome]]:
        import ray
        from ray.exceptions import ObjectLostError, RayActorError, WorkerCrashedError

        ledger = Ledger(jobs, len(self._actors))
        inflight: dict[Any, tuple[Task, int, int, float | None]] = {}
        load = [0] * len(self._actors)
        exclusive = [False] * len(self._actors)
        died: dict[tuple[int, int], bool] = {}  # (actor, generation) → it ran one task alone
        killed: set[tuple[int, int]] = set()  # generations we killed on purpose
        while not ledger.done():
            self._dispatch(ledger, inflight, load, exclusive)
            deadlines = [d for *_, d in inflight.values() if d is not None]
            wait_s = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=wait_s)
            if ready and len(inflight) > 1:
                ready, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0)
            for ref in ready:
                task, k, gen, _ = inflight.pop(ref)
                if gen == self._generation[k]:
                    load[k] -= 1
                    exclusive[k] = exclusive[k] and not task.exclusive
                try:
                    reply: ShardReply = pickle.loads(ray.get(ref))
                except (RayActorError, WorkerCrashedError, ObjectLostError) as err:
                    if (k, gen) in killed:  # we killed it on purpose: not this task's fault
                        ledger.requeue(task, ledger.unfinished(task))
                        continue
                    if gen == self._generation[k]:
                        died[(k, gen)] = not any(kk == k and g == gen for _, kk, g, _ in inflight.values())
                        logger.warning("grader actor died (%s); replacing it", type(err).__name__)
                        self._replace(k, kill=False)
                        load[k], exclusive[k] = 0, False
                    if died.get((k, gen)):
                        ledger.crashed(task, f"its Ray actor died ({type(err).__name__})")
                    else:
                        ledger.suspect(task)
                    continue
                ledger.settle(task, reply.outcomes, split=reply.split)
                if reply.tainted and gen == self._generation[k]:
                    logger.warning(
                        "grader %r ran past its timeout; replacing its actor", ledger.jobs[task.job].entry.id
                    )
                    killed.add((k, gen))
                    self._replace(k, kill=True)
                    load[k], exclusive[k] = 0, False
            now = time.monotonic()
            for ref, (task, k, gen, deadline) in list(inflight.items()):
                if deadline is None or now < deadline:
                    continue
                inflight.pop(ref)
                job = ledger.jobs[task.job]
                todo = ledger.unfinished(task)
                logger.warning("grader actor did not answer within %.1f s; killing it", self._budget(job, task) or 0.0)
                if len(todo) == 1 or ledger.is_group(task):  # a group is one call: it timed out as a whole
                    for p in todo:
                        ledger.record(task, p, timeout_outcome(job.entry.id, job.timeout or 0.0))
                else:  # one by one, so the next deadline names the culprit
                    ledger.suspect(task)
                if gen == self._generation[k]:
                    killed.add((k, gen))
                    self._replace(k, kill=True)
                    load[k], exclusive[k] = 0, False
        return ledger.outcomes()

    # -- lifetime -----------------------------------------------------------
    def close(self) -> None:
        """Kill the actors this executor created and disconnect a Ray it connected (idempotent)."""
        if not getattr(self, "_owner", False):
            return
        import ray

        if ray.is_initialized():
            for a in [*self._actors, *([self._limiter] if self._limiter is not None else [])]:
                try:
                    ray.kill(a, no_restart=True)
                except (ValueError, RFTError):  # pragma: no cover - already gone
                    logger.debug("grader actor already gone")
        self._actors = []
        self._limiter = None
        self._owner = False
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
            logger.info("ray: shut down the Ray this executor started")
        self._started_ray = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_owner"] = False  # a copy uses the pool; the driver that built it owns it
        state["_started_ray"] = False
        state["cache"] = None
        # the copy rebuilds the set from its payload (plugin files load by path), so a set
        # with graders from a plugin file travels to processes that never imported that file
        state["grader_set"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import threading

        from rft.scoring.cache import ResultCache

        self.__dict__.update(state)
        self.grader_set = load_grader_set(self._payload)
        self.cache = ResultCache(self.options.cache_size) if self.options.cache else None
        self._lock = threading.Lock()
