"""The ``remote`` grader: a grader served by ``rft serve-graders`` on another machine.

Graders with heavy dependencies (a GPU judge, a compiler toolchain, a licensed
checker) can run where those live; training calls them over HTTP::

    # on the grading machine (a token is required beyond loopback)
    RFT_GRADER_TOKEN=… rft serve-graders --graders graders.yaml --host 0.0.0.0 --port 8700

    # in the run's grader set (the token: `token:`, `token_env:`, else $RFT_GRADER_TOKEN)
    graders:
      - name: remote
        id: proof_check
        url: http://grading-box:8700
        grader: proof_check        # its id in the server's grader set

Samples go in batches (one request per ``batch_size`` samples, ``max_concurrency``
requests at once) with the retries, circuit breaker and deadline of
:mod:`rft.judges.client`. Each sample's outcome comes back with its kind as the server
recorded it (score, not applicable, grader error, timeout, …); a server that cannot
be reached is ``infrastructure`` for the whole batch, and one that refuses the request
(a wrong token: 401, a batch over its limits: 413) is ``grader_error`` with its reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import rft
from rft.core import Outcome, Sample
from rft.core.errors import ConfigError, GraderInfrastructureError
from rft.judges.client import GRADER_TOKEN_ENV, EndpointConfig, get_endpoint

__all__ = ["Remote"]


@rft.grader(name="remote", batched=True)
class Remote:
    """A grader served by ``rft serve-graders``; outcomes come back with their kinds.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8700``.
        grader: the grader's id in the server's grader set.
        batch_size: samples per request.
        max_concurrency: requests in flight at once, across every worker and actor of the run.
        request_timeout: seconds for one request (a whole batch on the server).
        max_retries: retries on connection errors, timeouts, 429 and 5xx.
        deadline: seconds per batch, retries included (None: no limit).
        breaker_failures, breaker_cooldown: the circuit breaker (see
            :class:`rft.judges.client.EndpointConfig`).
        token: the server's bearer token (``rft serve-graders`` with ``$RFT_GRADER_TOKEN`` or
            ``--token-file``).
        token_env: the environment variable holding the token (an error when unset);
            without ``token`` and ``token_env``, ``$RFT_GRADER_TOKEN`` when set, else none.
        api_key, api_key_env: older names of ``token`` and ``token_env``.

    >>> Remote(url="http://127.0.0.1:8700", grader="exact_match").endpoint.base_url
    'http://127.0.0.1:8700'
    """

    def __init__(
        self,
        url: str,
        grader: str,
        *,
        batch_size: int = 64,
        max_concurrency: int = 8,
        request_timeout: float = 300.0,
        max_retries: int = 3,
        deadline: float | None = 900.0,
        breaker_failures: int = 5,
        breaker_cooldown: float = 30.0,
        token: str | None = None,
        token_env: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
    ):
        if not isinstance(grader, str) or not grader:
            raise ConfigError(f"remote: `grader` must be the grader's id on the server, got {grader!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"remote: `batch_size` must be a positive integer, got {batch_size!r}")
        if (token is not None and api_key is not None) or (token_env and api_key_env):
            raise ConfigError("remote: give `token`/`token_env` or their older names `api_key`/`api_key_env`, not both")
        token = token if token is not None else api_key
        token_env = token_env or api_key_env
        if token is None and token_env:
            token = os.environ.get(token_env) or None
            if token is None:
                raise ConfigError(
                    f"remote: `token_env` names the environment variable {token_env!r}, which is not set; "
                    f"export it, give `token`, or drop `token_env` to use ${GRADER_TOKEN_ENV}"
                )
        if token is None:
            token = os.environ.get(GRADER_TOKEN_ENV) or None
        self.grader = grader
        self.batch_size = batch_size
        try:
            self.endpoint = EndpointConfig.resolve(
                base_url=url,
                api_key=token,
                env_defaults=False,  # never $OPENAI_BASE_URL / $OPENAI_API_KEY: they are not the grader server's
                max_concurrency=max_concurrency,
                request_timeout=request_timeout,
                max_retries=max_retries,
                deadline=deadline,
                breaker_failures=breaker_failures,
                breaker_cooldown=breaker_cooldown,
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"remote: {err}") from err

    def __repr__(self) -> str:
        return f"Remote({self.endpoint.base_url!r}, grader={self.grader!r})"

    async def __call__(self, sample: Sequence[Sample]) -> list[Outcome]:
        chunks = [list(sample[i : i + self.batch_size]) for i in range(0, len(sample), self.batch_size)]
        parts = await asyncio.gather(*(self._post(chunk) for chunk in chunks))
        return [o for part in parts for o in part]

    async def _post(self, samples: list[Sample]) -> list[Outcome]:
        endpoint = get_endpoint(self.endpoint, kind="remote")
        payload = {"graders": [self.grader], "samples": [s.to_dict() for s in samples]}
        data, _ = await endpoint.post_json("/v1/grade", payload)
        try:
            rows = data["outcomes"]
            if len(rows) != len(samples):
                raise ValueError(f"{len(rows)} outcomes for {len(samples)} samples")
            return [Outcome.from_dict(row[self.grader]) for row in rows]
        except (KeyError, TypeError, ValueError) as err:
            raise GraderInfrastructureError(
                f"grader server {self.endpoint.base_url} answered in an unexpected shape ({err}); "
                "is it `rft serve-graders` of a matching rftkit version?"
            ) from None


@rft.hookimpl
def rft_register_graders(register):
    register(Remote)
