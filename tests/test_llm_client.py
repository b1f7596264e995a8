"""The judge client against a real HTTP server on loopback (tests/fake_openai.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from rft.core.errors import ConfigError, GraderInfrastructureError, JudgeBudgetError
from rft.judges.client import (
    CircuitBreaker,
    CircuitOpenError,
    EndpointConfig,
    JudgeRequestError,
    JudgeTimeoutError,
    close_all,
    get_endpoint,
)

FAST: dict[str, Any] = {"backoff_initial": 0.002, "backoff_max": 0.01}  # keep retry sleeps in milliseconds


@pytest.fixture(scope="module", autouse=True)
def _close_client_loop():
    yield
    close_all()


def free_port() -> int:
    """A loopback port with nothing listening on it (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ask(endpoint, n: int, text: str = "[[Score: 1]]"):
    """n concurrent chat requests; exceptions are returned, not raised."""

    async def main():
        msgs = [{"role": "user", "content": text}]
        return await asyncio.gather(*(endpoint.chat(msgs, "judge") for _ in range(n)), return_exceptions=True)

    return asyncio.run(main())


def test_flaky_endpoint_every_request_succeeds_with_counted_retries_and_bounded_concurrency():
    with FakeOpenAI(latency=0.005, failure_rate=0.3, seed=1) as server:
        ep = get_endpoint(EndpointConfig(server.base_url, max_concurrency=4, max_retries=10, **FAST))
        results = ask(ep, 40)
    assert [type(r).__name__ for r in results] == ["ChatResult"] * 40
    assert server.failures > 0  # the test exercised retries at all
    # each failed answer (429 or 500) cost exactly one retry, and nothing else did
    assert ep.usage.retries == server.failures
    assert sum(r.attempts for r in results) == server.requests == ep.usage.attempts
    assert 1 < server.max_in_flight <= 4  # requests overlapped, never beyond the limit
    assert ep.usage.requests == 40 and ep.usage.failures == 0


def test_server_down_opens_the_circuit_and_later_calls_make_no_attempt():
    cfg = EndpointConfig(
        f"http://127.0.0.1:{free_port()}/v1",
        max_concurrency=4,
        max_retries=5,
        breaker_failures=3,
        breaker_cooldown=60,
        **FAST,
    )
    ep = get_endpoint(cfg)
    first = ask(ep, 16)
    assert all(isinstance(r, GraderInfrastructureError) for r in first)
    assert ep.breaker.state == "open"
    assert any(isinstance(r, CircuitOpenError) for r in first)
    # the breaker stopped the hammering: at most the threshold plus what was in flight when it opened
    assert ep.usage.attempts <= cfg.breaker_failures + cfg.max_concurrency
    attempts = ep.usage.attempts
    second = ask(ep, 16)
    assert all(isinstance(r, CircuitOpenError) for r in second)
    assert "circuit open" in str(second[0]) and "is the server up" in str(second[0])
    assert ep.usage.attempts == attempts  # failing fast: not one more connection attempt


def test_rejected_request_is_not_retried():
    with FakeOpenAI(known_models={"real-judge"}) as server:
        ep = get_endpoint(EndpointConfig(server.base_url, **FAST))
        (err,) = ask(ep, 1)
    assert isinstance(err, JudgeRequestError)
    assert "HTTP 404" in str(err) and "model" in str(err)
    assert server.requests == 0 and ep.usage.attempts == 1  # one try: a wrong model name does not heal
    assert err.outcome_kind == "grader_error"


def test_retries_exhausted_is_an_infrastructure_error_naming_the_attempts():
    with FakeOpenAI(failure_rate=1.0) as server:
        ep = get_endpoint(EndpointConfig(server.base_url, max_retries=2, breaker_failures=100, **FAST))
        (err,) = ask(ep, 1)
    assert isinstance(err, GraderInfrastructureError) and not isinstance(err, CircuitOpenError)
    assert "3 attempt(s)" in str(err) and "max_retries=2" in str(err)
    assert server.requests == 3


def test_deadline_stops_a_slow_judgment_as_a_timeout():
    with FakeOpenAI(latency=0.3) as server:
        ep = get_endpoint(EndpointConfig(server.base_url, deadline=0.05, **FAST))
        (err,) = ask(ep, 1)
    assert isinstance(err, JudgeTimeoutError) and err.outcome_kind == "timeout"
    assert "deadline of 0.05s" in str(err)


def test_deadline_stops_retrying_before_it_passes():
    # every answer is an error asking to retry in 300 ms: a 1 s deadline leaves room for 4 attempts
    # at most (at 0, 0.3, 0.6, 0.9 s if answers took no time), and the client gives up rather than sleep past it
    with FakeOpenAI(failure_rate=1.0, retry_after_ms=300) as server:
        ep = get_endpoint(EndpointConfig(server.base_url, deadline=1.0, max_retries=50, breaker_failures=100, **FAST))
        (err,) = ask(ep, 1)
    assert isinstance(err, GraderInfrastructureError)
    assert "deadline of 1s would pass" in str(err)
    assert 1 <= server.requests <= 4


def test_usage_cost_and_budget():
    # the fake counts words: "[[Score: 1]]" is 2 prompt tokens, the reply "Score: 1" 2 completion tokens
    with FakeOpenAI() as server:
        cfg = EndpointConfig(server.base_url, price_input=1_000_000, price_output=2_000_000, budget_usd=10, **FAST)
        ep = get_endpoint(cfg)
        (first,) = ask(ep, 1)
        assert (first.prompt_tokens, first.completion_tokens) == (2, 2)
        assert first.cost_usd == pytest.approx(2 * 1.0 + 2 * 2.0)  # USD per 1M tokens × tokens
        (second,) = ask(ep, 1)  # 6 USD spent of 10: still allowed
        (third,) = ask(ep, 1)  # 12 USD spent: the budget is gone
    assert ep.usage.cost_usd == pytest.approx(12.0)
    assert isinstance(third, JudgeBudgetError) and third.outcome_kind == "infrastructure"
    assert "budget_usd=10" in str(third)
    assert server.requests == 2


def test_token_limit_smaller_than_one_request_still_lets_it_through():
    # aiolimiter refuses to acquire more than its capacity; the client clamps the estimate
    with FakeOpenAI() as server:
        ep = get_endpoint(EndpointConfig(server.base_url, tokens_per_minute=5, requests_per_minute=100, **FAST))
        (result,) = ask(ep, 1, "[[Score: 1]] " + "word " * 200)
    assert result.content == "Score: 1"


# -- the circuit breaker's state machine, on a fake clock -------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    "events, expected",
    [
        # two failures, one short of the threshold: still closed
        (["fail", "fail"], "closed"),
        # a success resets the count: failures must be consecutive
        (["fail", "fail", "ok", "fail", "fail"], "closed"),
        # three in a row open it
        (["fail", "fail", "fail"], "open"),
        # after the cooldown it lets a probe through…
        (["fail", "fail", "fail", "wait"], "half-open"),
        # …whose success closes it
        (["fail", "fail", "fail", "wait", "probe", "ok"], "closed"),
        # …and whose failure opens it for another cooldown
        (["fail", "fail", "fail", "wait", "probe", "fail"], "open"),
    ],
)
def test_circuit_breaker_states(events, expected):
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown=10, name="http://h/v1", clock=clock)
    for e in events:
        if e == "fail":
            b.record_failure()
        elif e == "ok":
            b.record_success()
        elif e == "wait":
            clock.now += 10
        elif e == "probe":
            assert b.before_call() is True
    assert b.state == expected


def test_circuit_breaker_lets_one_probe_at_a_time():
    clock = Clock()
    b = CircuitBreaker(failures=1, cooldown=5, name="http://h/v1", clock=clock)
    b.record_failure()
    with pytest.raises(CircuitOpenError, match="failing fast for 5s"):
        b.before_call()
    clock.now = 5
    assert b.before_call() is True  # the probe
    with pytest.raises(CircuitOpenError):
        b.before_call()  # a second caller while the probe is out
    b.abandon_probe()  # the probe was cancelled: someone else may probe
    assert b.before_call() is True


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, kwargs, expected_url, expected_key",
    [
        # nothing set: OpenAI, no key
        ({}, {}, "https://api.openai.com/v1", None),
        # rftkit's own variables win over OpenAI's
        ({"RFT_JUDGE_BASE_URL": "http://a:1/v1", "OPENAI_BASE_URL": "http://b:2/v1"}, {}, "http://a:1/v1", None),
        ({"OPENAI_BASE_URL": "http://b:2/v1", "OPENAI_API_KEY": "sk-o"}, {}, "http://b:2/v1", "sk-o"),
        ({"RFT_JUDGE_API_KEY": "sk-r", "OPENAI_API_KEY": "sk-o"}, {}, "https://api.openai.com/v1", "sk-r"),
        # the entry wins over the environment
        (
            {"OPENAI_API_KEY": "sk-o"},
            {"base_url": "http://c:3/v1", "api_key_env": "MY_KEY"},
            "http://c:3/v1",
            "sk-mine",
        ),
        ({"OPENAI_API_KEY": "sk-o"}, {"api_key": "sk-inline"}, "https://api.openai.com/v1", "sk-inline"),
        # without env defaults (the remote grader's server): OpenAI's key is not its key ...
        (
            {"OPENAI_API_KEY": "sk-o", "RFT_JUDGE_API_KEY": "sk-r"},
            {"base_url": "http://d:4", "env_defaults": False},
            "http://d:4",
            None,
        ),
        # ... but the variable the entry names still is
        (
            {"OPENAI_API_KEY": "sk-o"},
            {"base_url": "http://d:4", "api_key_env": "MY_KEY", "env_defaults": False},
            "http://d:4",
            "sk-mine",
        ),
    ],
)
def test_endpoint_settings_from_entry_then_environment(monkeypatch, env, kwargs, expected_url, expected_key):
    for var in ("RFT_JUDGE_BASE_URL", "OPENAI_BASE_URL", "RFT_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for k, v in {**env, "MY_KEY": "sk-mine"}.items():
        monkeypatch.setenv(k, v)
    cfg = EndpointConfig.resolve(**kwargs)
    assert (cfg.base_url, cfg.api_key) == (expected_url, expected_key)
    assert "sk-" not in repr(cfg)  # keys never reach logs


def test_unset_api_key_env_is_a_config_error(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match="'NOPE_KEY', which is not set"):
        EndpointConfig.resolve(base_url="http://h/v1", api_key_env="NOPE_KEY")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_url": "localhost:8000"}, "must be an http"),
        ({"base_url": "http://h/v1", "max_concurrency": 0}, "`max_concurrency` must be a positive"),
        ({"base_url": "http://h/v1", "max_retries": -1}, "`max_retries` must be a number >= 0"),
        ({"base_url": "http://h/v1", "budget_usd": 0}, "`budget_usd` must be a positive"),
    ],
)
def test_invalid_settings_name_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EndpointConfig(**kwargs)
