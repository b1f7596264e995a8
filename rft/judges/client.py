"""An async client for OpenAI-compatible chat endpoints, built for model judges.

Model judges fail in ways rule-based graders do not: an endpoint answers 429 under
load, a server restarts, a network blip drops a connection. This client turns each of
those into either a retry or a typed error outcome, never a silent 0:

- **Concurrency**: at most ``max_concurrency`` requests in flight per endpoint in the
  whole run, across every worker process and Ray actor (see below).
- **Rate limits**: ``requests_per_minute`` and ``tokens_per_minute`` (leaky buckets from
  ``aiolimiter``; tokens are estimated before a request from its size and ``max_tokens``),
  per run as well.
- **Retries** (``tenacity``) only on transient errors: 408/409/429 (honouring
  ``retry-after-ms`` / ``Retry-After``), 5xx, timeouts and connection errors, with
  exponential backoff and full jitter. Other 4xx answers fail at once with the
  server's message.
- **Circuit breaker**: after ``breaker_failures`` consecutive transient failures the
  endpoint is considered down; calls fail fast for ``breaker_cooldown`` seconds, then
  one probe is let through (half-open) and its result closes or re-opens the circuit.
- **Deadline** per judgment, counted from its first attempt: retries stop when the next
  one could not finish in time.
- **Usage and cost**: tokens, requests, retries and (with prices) USD are counted per
  endpoint and process; an optional budget (per run) fails further judgments fast once
  spent.

Exhausted retries, an open circuit and a spent budget raise
:class:`rft.core.errors.GraderInfrastructureError` (outcome kind ``infrastructure``).

Every endpoint lives on one background event loop per process, so limits hold across
batches and graders (``Grader.grade`` runs each batch in a fresh loop) and the objects
handed to Ray or worker processes hold only an :class:`EndpointConfig`, never a
connection. The limits themselves (concurrency, rates, budget) are asked of the run's
limiter before each attempt (:mod:`rft.scoring.limits`): the executor of a run owns one
and hands it to its worker processes and Ray actors; outside an executor's workers
(``inline`` scoring, a grader called directly) the limits hold per process. Heavy
imports (httpx, tenacity, aiolimiter) happen on first use.

The settings (:class:`EndpointConfig`, :class:`Usage`) live in :mod:`rft.judges.settings`
and the breaker in :mod:`rft.judges.breaker`; this module re-exports them, so callers
(the judge graders, the ``remote`` grader) import everything from here.

>>> cfg = EndpointConfig(base_url="http://127.0.0.1:8000/v1", max_concurrency=4)
>>> cfg.chat_url
'http://127.0.0.1:8000/v1/chat/completions'
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import email.utils
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rft.core.errors import GraderFailure, GraderInfrastructureError
from rft.core.text import shorten
from rft.judges.breaker import CircuitBreaker, CircuitOpenError
from rft.judges.settings import (
    API_KEY_ENVS,
    BASE_URL_ENVS,
    DEFAULT_BASE_URL,
    GRADER_TOKEN_ENV,
    EndpointConfig,
    Usage,
)
from rft.scoring.limits import Limiter, LimitSpec, LocalLimiter, run_limiter

logger = logging.getLogger(__name__)

__all__ = [
    "API_KEY_ENVS",
    "BASE_URL_ENVS",
    "DEFAULT_BASE_URL",
    "GRADER_TOKEN_ENV",
    "ChatResult",
    "CircuitBreaker",
    "CircuitOpenError",
    "Endpoint",
    "EndpointConfig",
    "JudgeRequestError",
    "JudgeTimeoutError",
    "Usage",
    "close_all",
    "get_endpoint",
    "run_on_client_loop",
    "usage_totals",
]

T = TypeVar("T")

#: HTTP statuses worth retrying (the set OpenAI's own SDK retries).
TRANSIENT_STATUS = frozenset({408, 409, 429})
#: Longest ``Retry-After`` honoured, in seconds (longer asks wait this long; a deadline cuts it shorter).
MAX_RETRY_AFTER = 600.0


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


class JudgeRequestError(GraderFailure):
    """The endpoint rejected the request (a 4xx other than 408/409/429): wrong model
    name, bad API key, malformed parameters. Not retried; recorded as ``grader_error``."""


class JudgeTimeoutError(GraderFailure):
    """A judgment ran past its deadline while a request was in flight."""

    outcome_kind = "timeout"


class _Transient(Exception):
    """One failed attempt that is worth retrying (internal)."""

    def __init__(self, message: str, *, retry_after: float | None = None, counts_for_breaker: bool = True):
        super().__init__(message)
        self.retry_after = retry_after
        self.counts_for_breaker = counts_for_breaker


# ---------------------------------------------------------------------------
# the per-process background loop
# ---------------------------------------------------------------------------

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_endpoints: dict[tuple[Any, ...], Endpoint] = {}
_local_limiter: LocalLimiter | None = None  # the limits of this process, when no run shares them


def _client_loop() -> asyncio.AbstractEventLoop:
    """The process's client loop, started on first use (and again after a fork)."""
    global _loop, _loop_pid, _local_limiter
    with _lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rft-llm-client", daemon=True)
            thread.start()
            _loop, _loop_pid = loop, os.getpid()
            _endpoints.clear()
            _local_limiter = None
        return _loop


def _limiter() -> Limiter:
    """The limiter this process asks before each request: the run's, else its own."""
    global _local_limiter
    shared = run_limiter()
    if shared is not None:
        return shared
    with _lock:
        if _local_limiter is None:
            _local_limiter = LocalLimiter()
        return _local_limiter


async def run_on_client_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on the client loop from any event loop (cancellation propagates)."""
    loop = _client_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - always called from a coroutine
        running = None
    if running is loop:
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def get_endpoint(config: EndpointConfig, *, kind: str = "chat") -> Endpoint:
    """The shared :class:`Endpoint` for ``config`` in this process."""
    _client_loop()
    key = (kind, config)
    with _lock:
        ep = _endpoints.get(key)
        if ep is None:
            ep = _endpoints[key] = Endpoint(config, kind=kind)
        return ep


def usage_totals() -> Usage:
    """Usage summed over every endpoint used in this process."""
    total = Usage()
    with _lock:
        for ep in _endpoints.values():
            total.add(ep.usage)
    return total


def close_all(timeout: float = 5.0) -> None:
    """Close every connection pool and stop the client loop (tests, process exit)."""
    global _loop
    with _lock:
        loop, eps = _loop, list(_endpoints.values())
        if loop is None or _loop_pid != os.getpid() or loop.is_closed():
            return
        _endpoints.clear()
        _loop = None

    async def _close() -> None:
        for ep in eps:
            await ep.aclose()
        shared = run_limiter()
        if shared is not None:
            await shared.aclose()

    try:
        asyncio.run_coroutine_threadsafe(_close(), loop).result(timeout)
    except Exception as err:  # noqa: BLE001 - best effort at shutdown, but say so
        logger.debug("closing judge connections failed: %s", err)
    loop.call_soon_threadsafe(loop.stop)


atexit.register(close_all)


# ---------------------------------------------------------------------------
# one endpoint
# ---------------------------------------------------------------------------


@dataclass
class ChatResult:
    """The reply to one chat request."""

    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    attempts: int
    latency_s: float


class Endpoint:
    """Connection pool, limits, breaker and counters of one :class:`EndpointConfig`.

    Use :func:`get_endpoint`; its coroutines may be awaited from any event loop.
    """

    def __init__(self, config: EndpointConfig, *, kind: str = "chat"):
        self.config = config
        self.kind = kind
        self.usage = Usage()
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown, name=config.base_url)
        self.limits = LimitSpec(
            key=hashlib.sha256(repr((kind, dataclasses.astuple(config))).encode()).hexdigest()[:24],
            name=config.base_url,
            max_concurrency=config.max_concurrency,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
            budget_usd=config.budget_usd,
            budget_tokens=config.budget_tokens,
        )
        self._client: Any = None
        self.in_flight = 0
        self.max_in_flight = 0

    def _setup(self) -> None:  # on the client loop
        if self._client is not None:
            return
        import httpx

        c = self.config
        headers = {"User-Agent": "rftkit-judge"}
        if c.api_key:
            headers["Authorization"] = f"Bearer {c.api_key}"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(c.request_timeout),
            limits=httpx.Limits(max_connections=c.max_concurrency, max_keepalive_connections=c.max_concurrency),
            headers=headers,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- public coroutines (any loop) -----------------------------------------
    async def chat(
        self, messages: list[dict[str, Any]], model: str, params: Mapping[str, Any] | None = None
    ) -> ChatResult:
        """One chat completion, with every protection of this module.

        Raises:
            GraderInfrastructureError: retries exhausted, circuit open, budget spent.
            JudgeRequestError: the endpoint rejected the request (not retried).
            JudgeTimeoutError: the deadline passed while a request was in flight.
        """
        payload = {"model": model, "messages": messages, **dict(params or {})}
        return await run_on_client_loop(self._chat(payload))

    async def _chat(self, payload: dict[str, Any]) -> ChatResult:  # on the client loop, like every counter update
        max_out = payload.get("max_completion_tokens") or payload.get("max_tokens") or 0
        estimate = len(json.dumps(payload["messages"], ensure_ascii=False)) // 4 + int(max_out)
        data, attempts, latency = await self._request(self.config.chat_url, payload, estimate)
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content")
            finish = choice.get("finish_reason")
        except (KeyError, IndexError, TypeError, AttributeError) as err:
            raise GraderInfrastructureError(
                f"endpoint {self.config.base_url} answered without choices[0].message ({shorten(data)}); "
                "is it an OpenAI-compatible /chat/completions server?"
            ) from err
        p, c = _token_usage(data)
        cost = self.config.cost(p, c)
        self.usage.prompt_tokens += p
        self.usage.completion_tokens += c
        if cost is not None:
            self.usage.cost_usd += cost
        return ChatResult(
            content=content if isinstance(content, str) else "",
            finish_reason=finish,
            prompt_tokens=p,
            completion_tokens=c,
            cost_usd=cost,
            attempts=attempts,
            latency_s=latency,
        )

    async def post_json(self, path: str, payload: Mapping[str, Any]) -> tuple[Any, int]:
        """POST ``payload`` to ``base_url + path`` with retries; returns (JSON, attempts)."""
        url = f"{self.config.base_url.rstrip('/')}/{path.lstrip('/')}"
        data, attempts, _ = await run_on_client_loop(self._request(url, payload, 0))
        return data, attempts

    # -- on the client loop ---------------------------------------------------
    async def _request(self, url: str, payload: Mapping[str, Any], estimate: int) -> tuple[Any, int, float]:
        from tenacity import AsyncRetrying, retry_if_exception_type, wait_random_exponential

        self._setup()
        c = self.config
        started: list[float] = []  # set when the first attempt goes out
        backoff = wait_random_exponential(multiplier=c.backoff_initial, max=c.backoff_max)

        def wait(rs: Any) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            return float(retry_after) if retry_after is not None else backoff(rs)

        def stop(rs: Any) -> bool:
            if rs.attempt_number > c.max_retries:
                return True
            if c.deadline is not None and started:
                return time.monotonic() - started[0] + (rs.upcoming_sleep or 0.0) >= c.deadline
            return False

        t0 = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            before_sleep=lambda rs: logger.debug(
                "%s: attempt %d failed (%s); retrying in %.2fs",
                url,
                rs.attempt_number,
                rs.outcome.exception() if rs.outcome else None,
                rs.upcoming_sleep,
            ),
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if attempts > 1:
                        self.usage.retries += 1
                    data = await self._attempt(url, payload, estimate, started)
        except _Transient as err:
            self.usage.failures += 1
            elapsed = time.monotonic() - t0
            why = "deadline" if attempts <= c.max_retries else "retries"
            hint = (
                f"its deadline of {c.deadline:g}s would pass before another retry"
                if why == "deadline"
                else f"max_retries={c.max_retries}"
            )
            raise GraderInfrastructureError(
                f"endpoint {url} failed {attempts} attempt(s) in {elapsed:.1f}s ({hint}); last error: {err}"
            ) from None
        except BaseException:
            self.usage.failures += 1
            raise
        self.usage.requests += 1
        return data, attempts, time.monotonic() - t0

    async def _attempt(self, url: str, payload: Mapping[str, Any], estimate: int, started: list[float]) -> Any:
        self.breaker.check()  # fail fast without queueing for a slot
        limiter = _limiter()
        # a slot of the run's max_concurrency, the rate limits, the budget check
        lease = await limiter.acquire(self.limits, estimate)
        spent: tuple[int, float] | None = None
        try:
            probe = self.breaker.before_call()  # again: the circuit may have opened while we queued
            try:
                resp = await self._send(url, payload, started)
                data = self._handle(url, resp)
            finally:
                if probe and self.breaker.probe_in_flight:
                    self.breaker.abandon_probe()
            prompt, completion = _token_usage(data)
            spent = (prompt + completion, self.config.cost(prompt, completion) or 0.0)
            return data
        finally:
            # charged with the release, in one message: the next budget check sees this request
            limiter.release(lease, spent)

    async def _send(self, url: str, payload: Mapping[str, Any], started: list[float]) -> Any:
        import httpx

        c = self.config
        if not started:
            started.append(time.monotonic())
        remaining = None if c.deadline is None else c.deadline - (time.monotonic() - started[0])
        if remaining is not None and remaining <= 0:
            raise JudgeTimeoutError(f"judgment passed its deadline of {c.deadline:g}s before request to {url}")
        self.usage.attempts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            coro = self._client.post(url, json=payload)
            resp = await (asyncio.wait_for(coro, remaining) if remaining is not None else coro)
        except asyncio.TimeoutError:
            self._failed()
            raise JudgeTimeoutError(f"judgment passed its deadline of {c.deadline:g}s waiting for {url}") from None
        except httpx.TimeoutException as err:
            self._failed()
            raise _Transient(f"request timed out after {c.request_timeout:g}s ({type(err).__name__})") from None
        except httpx.TransportError as err:
            self._failed()
            raise _Transient(f"connection error: {type(err).__name__}: {err or 'no details'}") from None
        finally:
            self.in_flight -= 1
        return resp

    def _handle(self, url: str, resp: Any) -> Any:
        status = resp.status_code
        if status in TRANSIENT_STATUS or status >= 500:
            if status >= 500:
                self._failed()
            raise _Transient(
                f"HTTP {status}: {shorten(resp.text, 200)}",
                retry_after=_retry_after(resp.headers, MAX_RETRY_AFTER),
            )
        if status >= 400:
            self.breaker.record_success()  # the server is up; the request is wrong
            if self.kind == "chat":
                hint = {
                    401: "check api_key / api_key_env",
                    403: "check api_key / api_key_env and the model's access",
                    404: "check base_url (it usually ends in /v1) and the model name",
                }.get(status, "check the model name and sampling_params")
            else:
                hint = {
                    401: f"check `token` (or ${GRADER_TOKEN_ENV}): it must be the grader server's token",
                    413: "lower the grader's `batch_size`, or raise the server's --max-samples / --max-body-bytes",
                }.get(status, "check `url` and `grader`")
            raise JudgeRequestError(f"{url} answered HTTP {status}: {shorten(resp.text, 300)} ({hint})")
        self.breaker.record_success()
        try:
            return resp.json()
        except ValueError:
            raise GraderInfrastructureError(
                f"{url} answered HTTP {status} with non-JSON: {shorten(resp.text, 200)}"
            ) from None

    def _failed(self) -> None:
        before = self.breaker.opens
        self.breaker.record_failure()
        self.usage.circuit_opens += self.breaker.opens - before


def _token_usage(data: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a reply's ``usage`` (0 when it has none).

    >>> _token_usage({"usage": {"prompt_tokens": 12, "completion_tokens": 3}})
    (12, 3)
    """
    usage = data.get("usage") if isinstance(data, Mapping) else None
    if not isinstance(usage, Mapping):
        return 0, 0
    try:
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return 0, 0


def _retry_after(headers: Mapping[str, str], cap: float) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or a date).

    >>> _retry_after({"retry-after-ms": "250"}, 60)
    0.25
    >>> _retry_after({"retry-after": "2"}, 60)
    2.0
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return min(max(float(raw_ms) / 1000.0, 0.0), cap)
        except ValueError:
            pass  # fall through to Retry-After
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return min(max(float(raw), 0.0), cap)
    except ValueError:
        pass  # an HTTP date
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return min(max(parsed.timestamp() - time.time(), 0.0), cap)
