"""Run-wide limits: one concurrency limit, rate limits and budget per endpoint for a whole run.

A judge endpoint's ``max_concurrency``, ``requests_per_minute``, ``tokens_per_minute``,
``budget_usd`` and ``budget_tokens`` are promises about the run, not about one process:
with two scoring workers, ``max_concurrency: 4`` must still mean at most 4 requests in
flight at the server. So the limits live in one :class:`LimiterService` per run, owned
by the executor, and every process of the run asks it before each request:

- in-process (``inline``, or no executor at all): :class:`LocalLimiter`, the service
  called directly on the judge client's event loop;
- the local executor: :class:`LimiterServer`, the service on a private Unix socket in
  the executor's process; each worker process finds it through ``$RFT_LIMITS_SOCKET``
  and talks to it with a :class:`SocketLimiter` (one connection per process, never
  blocking the event loop);
- the Ray executor: the service in a named Ray actor, created in
  :mod:`rft.scoring.ray` (the one scoring module that imports Ray) and handed to each
  grader actor, which calls :func:`install`.

Every limiter offers the same two calls (:class:`Limiter`): ``await acquire(spec,
tokens)`` waits for a concurrency slot, then for the rate limits, checks the budget and
returns a lease; ``release(lease, usage)`` gives the slot back and charges what the
request cost (tokens and USD) to the run's budget in the same message, so a request
that is already answered is never missed by the next budget check. Slots held by a
process that dies (a worker killed at its timeout, a lost actor) are given back: a
socket connection's leases when it closes, an actor's when the executor replaces it
(:meth:`LimiterService.forget`).

The logic is one pure-asyncio object (:class:`LimiterService`: ``asyncio.Semaphore``
and ``aiolimiter`` leaky buckets per key); the transports only carry its calls.

>>> spec = LimitSpec(key="k", name="http://h/v1", max_concurrency=2)
>>> import asyncio
>>> async def two():
...     limiter = LocalLimiter()
...     a = await limiter.acquire(spec, 0)
...     b = await limiter.acquire(spec, 0)
...     busy = limiter.service.in_flight("k")
...     limiter.release(a, (10, 0.0)); limiter.release(b)
...     return busy, limiter.service.in_flight("k"), limiter.service.spent("k")
>>> asyncio.run(two())
(2, 0, (10, 0.0, 1))
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rft.core.errors import GraderInfrastructureError, JudgeBudgetError

logger = logging.getLogger(__name__)

__all__ = [
    "LIMITS_ENV",
    "LimitSpec",
    "Limiter",
    "LimiterServer",
    "LimiterService",
    "LocalLimiter",
    "SocketLimiter",
    "install",
    "run_limiter",
]

#: Environment variable naming the Unix socket of the run's :class:`LimiterServer`; the
#: local executor sets it for its worker processes.
LIMITS_ENV = "RFT_LIMITS_SOCKET"

#: ``usage`` of :meth:`Limiter.release`: (tokens used, USD spent) by an answered request.
Usage = tuple[int, float]


@dataclass(frozen=True)
class LimitSpec:
    """The limits of one endpoint; equal ``key`` means one shared set of limits.

    Attributes:
        key: identifies the endpoint and its settings (a digest; never a secret).
        name: shown in messages (the endpoint's URL).
        max_concurrency: requests in flight at once, in the whole run.
        requests_per_minute: request rate (None: unlimited).
        tokens_per_minute: token rate, on each request's estimate (None: unlimited).
        budget_usd: no request starts once the run spent this much (None: no budget).
        budget_tokens: no request starts once the run used this many tokens.
    """

    key: str
    name: str
    max_concurrency: int
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Limits:
    """The state of one key: slots, leaky buckets, what the run spent."""

    def __init__(self, spec: LimitSpec):
        from aiolimiter import AsyncLimiter

        self.spec = spec
        self.slots = asyncio.Semaphore(spec.max_concurrency)
        self.in_flight = 0
        self.rpm = AsyncLimiter(spec.requests_per_minute, 60) if spec.requests_per_minute else None
        self.tpm = AsyncLimiter(spec.tokens_per_minute, 60) if spec.tokens_per_minute else None
        self.tokens = 0
        self.cost_usd = 0.0
        self.requests = 0

    def check_budget(self) -> None:
        s = self.spec
        if s.budget_usd is not None and self.cost_usd >= s.budget_usd:
            raise JudgeBudgetError(
                f"judge budget spent: {self.cost_usd:.4f} USD used of budget_usd={s.budget_usd:g} at {s.name} "
                f"({self.requests} judgments in this run); raise budget_usd or remove it to continue"
            )
        if s.budget_tokens is not None and self.tokens >= s.budget_tokens:
            raise JudgeBudgetError(
                f"judge budget spent: {self.tokens} tokens used of budget_tokens={s.budget_tokens} at {s.name} "
                f"({self.requests} judgments in this run); raise budget_tokens or remove it to continue"
            )


class LimiterService:
    """The limits of every endpoint of a run, on one event loop (no locks needed).

    ``owner`` names the process a lease belongs to (a socket connection, a Ray actor),
    so :meth:`forget` can give back what a dead process held. A lease is released with
    :meth:`release` whether it was granted or is still waiting (then its wait is
    cancelled); a release that arrives before its acquire (Ray does not order the calls
    of an async actor) cancels that acquire when it comes.
    """

    def __init__(self) -> None:
        self._limits: dict[str, _Limits] = {}
        self._held: dict[str, tuple[str, _Limits]] = {}  # lease → (owner, limits)
        self._waiting: dict[str, tuple[str, asyncio.Task[Any]]] = {}  # lease → (owner, acquiring task)
        self._dropped: set[str] = set()  # released before their acquire arrived

    def _get(self, spec: LimitSpec) -> _Limits:
        lim = self._limits.get(spec.key)
        if lim is None:
            lim = self._limits[spec.key] = _Limits(spec)
        return lim

    async def acquire(self, owner: str, lease: str, spec: LimitSpec, tokens: int) -> None:
        """Wait for a slot and the rate limits, then hold ``lease``.

        Raises:
            JudgeBudgetError: the run's budget for this endpoint is spent.
            asyncio.CancelledError: the lease was released while it waited.
        """
        if lease in self._dropped:
            self._dropped.discard(lease)
            raise asyncio.CancelledError
        lim = self._get(spec)
        lim.check_budget()  # fail fast, without queueing for a slot
        task = asyncio.current_task()
        if task is not None:
            self._waiting[lease] = (owner, task)
        try:
            await lim.slots.acquire()
            try:
                if lim.rpm is not None:
                    await lim.rpm.acquire()
                if lim.tpm is not None and tokens:
                    # aiolimiter refuses more than its capacity: a huge request waits for a full bucket
                    await lim.tpm.acquire(min(float(tokens), float(lim.tpm.max_rate)))
                lim.check_budget()  # again: it may have been spent while this one waited
            except BaseException:
                lim.slots.release()
                raise
        finally:
            self._waiting.pop(lease, None)
        lim.in_flight += 1
        self._held[lease] = (owner, lim)

    def release(self, lease: str, usage: Usage | None = None) -> None:
        """Give ``lease`` back and charge ``usage`` (tokens, USD) of an answered request."""
        held = self._held.pop(lease, None)
        if held is not None:
            lim = held[1]
            lim.in_flight -= 1
            lim.slots.release()
            if usage is not None:
                lim.tokens += int(usage[0])
                lim.cost_usd += float(usage[1])
                lim.requests += 1
            return
        waiting = self._waiting.pop(lease, None)
        if waiting is not None:
            waiting[1].cancel()
        else:
            self._dropped.add(lease)

    def forget(self, owner: str) -> int:
        """Give back every lease of ``owner`` (a process that is gone); returns how many."""
        leases = [k for k, (o, _) in self._held.items() if o == owner]
        for lease in leases:
            self.release(lease)
        for lease, (o, task) in list(self._waiting.items()):
            if o == owner:
                self._waiting.pop(lease, None)
                task.cancel()
        if leases:
            logger.info("run limiter: gave back %d request slot(s) held by %s", len(leases), owner)
        return len(leases)

    def in_flight(self, key: str) -> int:
        """Leases of ``key`` held now."""
        lim = self._limits.get(key)
        return lim.in_flight if lim is not None else 0

    def spent(self, key: str) -> tuple[int, float, int]:
        """(tokens, USD, answered requests) charged to ``key`` in this run."""
        lim = self._limits.get(key)
        return (lim.tokens, lim.cost_usd, lim.requests) if lim is not None else (0, 0.0, 0)


# ---------------------------------------------------------------------------
# what a process holds: the Limiter protocol and its in-process and socket forms
# ---------------------------------------------------------------------------


class Limiter(Protocol):
    """What the judge client calls, on its own event loop, around each request."""

    async def acquire(self, spec: LimitSpec, tokens: int) -> str:
        """Wait for a slot and the rate limits; returns the lease.

        Raises:
            JudgeBudgetError: the run's budget is spent.
            GraderInfrastructureError: the run's limiter cannot be reached.
        """
        ...

    def release(self, lease: str, usage: Usage | None = None) -> None:
        """Give the lease back (without waiting), charging ``usage`` to the budget."""
        ...

    async def aclose(self) -> None:
        """Close what this process opened on the running loop (before the loop stops)."""
        ...


class LocalLimiter:
    """The service called in this process: limits shared by this process only.

    Use it on one event loop (asyncio primitives bind to the loop that first waits).
    """

    def __init__(self) -> None:
        self.service = LimiterService()
        self._ids = itertools.count()

    async def acquire(self, spec: LimitSpec, tokens: int) -> str:
        lease = str(next(self._ids))
        await self.service.acquire("local", lease, spec, tokens)
        return lease

    def release(self, lease: str, usage: Usage | None = None) -> None:
        self.service.release(lease, usage)

    async def aclose(self) -> None:
        """Nothing to close."""


class SocketLimiter:
    """A worker process's line to the run's :class:`LimiterServer` (one connection).

    Messages are JSON lines: ``{"op": "a", "id", "spec", "n"}`` asks for a lease and is
    answered ``{"id"}`` or ``{"id", "err"}``; ``{"op": "r", "id", "u"}`` releases it (no
    answer). The connection belongs to the event loop that opened it and is opened
    again on another loop (after a fork, or a new client loop).
    """

    def __init__(self, path: str):
        self.path = path
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._replies: dict[str, asyncio.Future[str | None]] = {}
        self._ids = itertools.count()
        self._prefix = f"{os.getpid()}-"
        self._connecting: asyncio.Lock | None = None
        self._reader_task: asyncio.Task[None] | None = None

    async def _connect(self) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._writer, self._connecting = loop, None, None
            self._replies = {}
            self._prefix = f"{os.getpid()}-"
        if self._writer is not None:
            return self._writer
        lock = self._connecting
        if lock is None:
            lock = self._connecting = asyncio.Lock()
        async with lock:
            if self._writer is None:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.path)
                except OSError as err:
                    raise GraderInfrastructureError(
                        f"the run's judge limiter at {self.path} (${LIMITS_ENV}) cannot be reached: {err}; "
                        f"was its executor closed? Unset ${LIMITS_ENV} outside a run's worker processes"
                    ) from None
                self._writer = writer
                self._reader_task = loop.create_task(self._read(reader))
        return self._writer

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                fut = self._replies.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg.get("err"))
        finally:
            self._writer = None
            lost = GraderInfrastructureError(f"the run's judge limiter at {self.path} closed the connection")
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(lost)
            self._replies.clear()

    async def acquire(self, spec: LimitSpec, tokens: int) -> str:
        writer = await self._connect()
        lease = f"{self._prefix}{next(self._ids)}"
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._replies[lease] = fut
        writer.write(_line({"op": "a", "id": lease, "spec": spec.to_dict(), "n": tokens}))
        try:
            err = await fut
        except asyncio.CancelledError:
            self.release(lease)  # granted or still waiting: the server settles either
            raise
        if err is not None:
            raise JudgeBudgetError(err)
        return lease

    def release(self, lease: str, usage: Usage | None = None) -> None:
        self._replies.pop(lease, None)
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(_line({"op": "r", "id": lease, "u": list(usage) if usage else None}))

    async def aclose(self) -> None:
        """Close the connection if the running loop opened it (the server gives back its leases)."""
        if self._loop is not asyncio.get_running_loop():
            return
        writer, task = self._writer, self._reader_task
        self._writer = self._reader_task = None
        if writer is not None:
            writer.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _line(msg: Mapping[str, Any]) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


class LimiterServer:
    """The run's :class:`LimiterService` on a private Unix socket, on a thread of this process.

    The socket lies in a fresh ``0700`` temporary folder, so only this user reaches it.
    Each connection is one worker process; when it closes (the worker exited or was
    killed), its leases are given back.

    Args:
        start: start serving now (else call :meth:`start`).
    """

    def __init__(self, *, start: bool = True):
        self._folder = tempfile.mkdtemp(prefix="rft-limits-")
        self.path = os.path.join(self._folder, "limits.sock")
        self.service = LimiterService()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rft-run-limiter", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._owners = itertools.count()
        if start:
            self.start()

    def start(self) -> LimiterServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_unix_server(self._serve, self.path), self._loop)
        self._server = fut.result(10)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        owner = f"connection-{next(self._owners)}"
        service = self.service

        async def grant(lease: str, spec: LimitSpec, tokens: int) -> None:
            try:
                await service.acquire(owner, lease, spec, tokens)
                writer.write(_line({"id": lease}))
            except JudgeBudgetError as err:
                writer.write(_line({"id": lease, "err": str(err)}))

        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if msg["op"] == "a":
                    task = asyncio.create_task(grant(msg["id"], LimitSpec(**msg["spec"]), int(msg["n"])))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                else:
                    u = msg.get("u")
                    service.release(msg["id"], (int(u[0]), float(u[1])) if u else None)
        except (ConnectionError, ValueError, KeyError, TypeError) as err:
            logger.warning("run limiter: dropping a worker's connection after a bad message: %s", err)
        except asyncio.CancelledError:
            logger.debug("run limiter: %s ended at shutdown", owner)  # close() ends live connections
        finally:
            service.forget(owner)
            for task in tasks:
                task.cancel()
            writer.close()

    @property
    def env(self) -> dict[str, str]:
        """The environment entry that points a worker process at this server."""
        return {LIMITS_ENV: self.path}

    def close(self) -> None:
        """Stop serving and remove the socket (idempotent)."""
        if self._loop.is_closed():
            return
        if self._server is not None and self._thread.is_alive():
            server = self._server

            async def stop() -> None:
                server.close()
                # the connections of workers still alive: end them, so no task outlives the loop
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self._loop).result(2)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2)
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._folder, ignore_errors=True)


# ---------------------------------------------------------------------------
# which limiter this process uses
# ---------------------------------------------------------------------------

_installed: Limiter | None = None
_installed_lock = threading.Lock()


def install(limiter: Limiter | None) -> None:
    """Make ``limiter`` the run's limiter in this process (a Ray grader actor calls this);
    None goes back to ``$RFT_LIMITS_SOCKET`` or the in-process limits."""
    global _installed
    with _installed_lock:
        _installed = limiter


def run_limiter() -> Limiter | None:
    """The run's shared limiter for this process, or None outside an executor's workers
    (then each process keeps its own, :class:`LocalLimiter`)."""
    global _installed
    with _installed_lock:
        if _installed is None and os.environ.get(LIMITS_ENV):
            _installed = SocketLimiter(os.environ[LIMITS_ENV])
        return _installed
