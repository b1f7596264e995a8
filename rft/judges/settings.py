"""Where a judge endpoint is and how hard to push it (:class:`EndpointConfig`), and what
it cost (:class:`Usage`).

Plain data, no connections: a grader holds an :class:`EndpointConfig`, pickles it to
worker processes and Ray actors, and :func:`rft.judges.client.get_endpoint` turns it
into the one shared connection pool of this process. Import these names from
:mod:`rft.judges.client`, which re-exports them.

>>> cfg = EndpointConfig(base_url="http://127.0.0.1:8000/v1", max_concurrency=4)
>>> cfg.chat_url
'http://127.0.0.1:8000/v1/chat/completions'
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rft.core.errors import ConfigError

__all__ = ["API_KEY_ENVS", "BASE_URL_ENVS", "DEFAULT_BASE_URL", "GRADER_TOKEN_ENV", "EndpointConfig", "Usage"]

#: Environment variables read, in order, when an entry sets no ``base_url``.
BASE_URL_ENVS = ("RFT_JUDGE_BASE_URL", "OPENAI_BASE_URL")
#: Environment variables read, in order, when an entry sets neither ``api_key`` nor ``api_key_env``.
API_KEY_ENVS = ("RFT_JUDGE_API_KEY", "OPENAI_API_KEY")
DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Environment variable holding the bearer token of ``rft serve-graders``, read by the server
#: and by the ``remote`` grader (when its entry gives no ``token``).
GRADER_TOKEN_ENV = "RFT_GRADER_TOKEN"


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointConfig:
    """How to reach one endpoint and how hard to push it.

    Equal configs share one connection pool and one circuit breaker per process, and one
    set of limits (concurrency, rates, budget) per run: every worker process and Ray
    actor of a run asks the run's limiter (:mod:`rft.scoring.limits`), so two judges on
    the same server, in however many workers, respect the same ``max_concurrency``.

    Attributes:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (vLLM, llama.cpp
            server, Ollama's ``/v1``) or ``https://api.openai.com/v1``.
        api_key: sent as ``Authorization: Bearer …``; None sends no header (local servers).
        max_concurrency: requests in flight at once, in the whole run.
        requests_per_minute: request rate limit of the run (None: unlimited).
        tokens_per_minute: token rate limit of the run, on estimated prompt + ``max_tokens``
            (None: unlimited).
        request_timeout: seconds for one HTTP request.
        max_retries: retries after the first attempt, on transient errors only.
        backoff_initial: first backoff in seconds; it doubles per retry, with full jitter.
        backoff_max: cap of one backoff sleep (a server's ``Retry-After`` may exceed it).
        deadline: seconds per judgment from its first attempt, retries included (None: none).
        breaker_failures: consecutive transient failures that open the circuit.
        breaker_cooldown: seconds the circuit stays open before one probe is let through.
        price_input: USD per million prompt tokens (None: cost is not counted).
        price_output: USD per million completion tokens.
        budget_usd: stop judging (fail fast) once the run spent this much.
        budget_tokens: stop judging once the run used this many tokens.
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    request_timeout: float = 60.0
    max_retries: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    deadline: float | None = 180.0
    breaker_failures: int = 10
    breaker_cooldown: float = 30.0
    price_input: float | None = None
    price_output: float | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise ValueError(
                f"`base_url` must be an http(s) URL such as http://127.0.0.1:8000/v1, got {self.base_url!r}"
            )
        positive = {
            "max_concurrency": self.max_concurrency,
            "request_timeout": self.request_timeout,
            "breaker_failures": self.breaker_failures,
            "backoff_max": self.backoff_max,
        }
        optional_positive = {
            "requests_per_minute": self.requests_per_minute,
            "tokens_per_minute": self.tokens_per_minute,
            "deadline": self.deadline,
            "budget_usd": self.budget_usd,
            "budget_tokens": self.budget_tokens,
        }
        for key, value in {**positive, **{k: v for k, v in optional_positive.items() if v is not None}}.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"`{key}` must be a positive number, got {value!r}")
        non_negative = {
            "max_retries": self.max_retries,
            "backoff_initial": self.backoff_initial,
            "breaker_cooldown": self.breaker_cooldown,
            "price_input": self.price_input if self.price_input is not None else 0,
            "price_output": self.price_output if self.price_output is not None else 0,
        }
        for key, value in non_negative.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{key}` must be a number >= 0, got {value!r}")
        if not isinstance(self.max_retries, int):
            raise ValueError(f"`max_retries` must be an integer, got {self.max_retries!r}")

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        prices: Mapping[str, float] | None = None,
        env_defaults: bool = True,
        **settings: Any,
    ) -> EndpointConfig:
        """A config from grader-entry settings, filling gaps from the environment.

        ``base_url`` defaults to ``$RFT_JUDGE_BASE_URL``, then ``$OPENAI_BASE_URL``, then
        OpenAI. The key is ``api_key``, else the variable named by ``api_key_env`` (an
        error when it is unset), else ``$RFT_JUDGE_API_KEY`` / ``$OPENAI_API_KEY``, else
        none. ``prices`` is ``{"input": usd_per_1m, "output": usd_per_1m}``.

        With ``env_defaults=False`` (a server that is not an LLM endpoint, such as
        ``rft serve-graders``) neither comes from those variables: ``base_url`` is
        required and the key is ``api_key`` or ``api_key_env``, else none.

        >>> EndpointConfig.resolve(base_url="http://h:1/v1/", max_retries=2).base_url
        'http://h:1/v1'
        """
        url = base_url
        if env_defaults and not url:
            url = next((os.environ[e] for e in BASE_URL_ENVS if os.environ.get(e)), DEFAULT_BASE_URL)
        key = api_key
        if key is None and api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ConfigError(
                    f"`api_key_env` names the environment variable {api_key_env!r}, which is not set; "
                    "export it, or give `api_key`, or remove `api_key_env` for a server without keys"
                )
        if key is None and env_defaults:
            key = next((os.environ[e] for e in API_KEY_ENVS if os.environ.get(e)), None)
        if prices is not None:
            unknown = [k for k in prices if k not in ("input", "output")]
            if unknown or not isinstance(prices, Mapping):
                raise ValueError(
                    f"`prices` must be {{input: USD per 1M prompt tokens, output: USD per 1M completion tokens}}, "
                    f"got {dict(prices)!r}"
                )
            settings.setdefault("price_input", prices.get("input", 0.0))
            settings.setdefault("price_output", prices.get("output", 0.0))
        return cls(base_url=str(url).rstrip("/"), api_key=key, **settings)

    @property
    def chat_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    @property
    def priced(self) -> bool:
        return self.price_input is not None or self.price_output is not None

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for one request, None without prices.

        >>> EndpointConfig("http://h/v1", price_input=1.0, price_output=2.0).cost(1_000_000, 500_000)
        2.0
        """
        if not self.priced:
            return None
        return (prompt_tokens * (self.price_input or 0.0) + completion_tokens * (self.price_output or 0.0)) / 1e6


# ---------------------------------------------------------------------------
# usage accounting
# ---------------------------------------------------------------------------


@dataclass
class Usage:
    """Counters of one endpoint in this process (or their sum, see :func:`usage_totals`)."""

    requests: int = 0  #: judgments that got an answer
    attempts: int = 0  #: HTTP attempts made, retries included
    retries: int = 0  #: attempts after a transient failure
    failures: int = 0  #: judgments that ended in an error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    circuit_opens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, float]:
        d: dict[str, float] = dataclasses.asdict(self)
        d["total_tokens"] = self.total_tokens
        return d
