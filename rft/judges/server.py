"""The grader server behind ``rft serve-graders``: registered graders over HTTP.

Graders with heavy dependencies run where those live; training reaches them with the
``remote`` grader. The API (JSON; FastAPI also serves its OpenAPI page at ``/docs``):

- ``GET /health`` → ``{"status": "ok", "graders": [ids], "version": …}``
- ``GET /v1/graders`` → ``{"graders": [{"id", "name", "plugin", "description", "inputs", …}]}``
- ``POST /v1/grade`` with ``{"graders": [ids] (optional, default all), "samples":
  [{"completion", "item", "prompt", "tool_calls", "step"}]}`` → ``{"graders": [ids],
  "outcomes": [{id: Outcome.to_dict()} per sample]}``. An unknown id is a 404 naming
  the valid ones; a malformed body is a 422; more than ``max_samples`` samples is a 413.

Every route needs ``Authorization: Bearer <token>`` when the server has a token, which it
must have to bind beyond loopback (:mod:`rft.judges.guard`: 401, and 413 for a body over
``max_body_bytes``, both before any work).

Graders run through the scoring engine (:mod:`rft.judges.pool`), with the contract
training has: a call past its grader's ``timeout`` (else ``default_timeout``) is stopped
and recorded as ``timeout``, a lost worker is retried per the entry's ``retries``,
identical inputs are scored once, and several requests are scored at once, off the event
loop, so a slow request does not hold up the others. A grader fault is an outcome in the
reply, never an HTTP error; ``on_error`` policies and error budgets are left to the
caller's side, so it sees the kind the server recorded.

A sample without a ``prompt`` gets the prompt its ``item`` row has under the data layer's
row model (:func:`rft.data.rows.to_example`), as training would give it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from rft.core import GraderSet, Sample
from rft.core.errors import ConfigError, PluginError, did_you_mean
from rft.core.version import __version__
from rft.data.rows import to_example
from rft.judges.guard import RequestGuard, check_bind
from rft.judges.pool import ScoringPool
from rft.scoring import ScoringOptions

logger = logging.getLogger(__name__)

__all__ = ["GradeRequest", "SampleIn", "ServerOptions", "create_app", "serve", "to_sample"]


@dataclass
class ServerOptions:
    """How ``rft serve-graders`` serves (its command-line options).

    Attributes:
        token: the bearer token every request must carry; None: none (loopback only).
        max_body_bytes: the largest request body; a larger one is answered 413 unread.
        max_samples: the most samples in one request; more is answered 413 before scoring.
        max_concurrency: grader runs (one grader over one request's samples) at once;
            further runs wait for a free slot.
        scoring: how graders run (the engine's options; its ``error_budget`` is not used,
            the caller applies its own).
    """

    token: str | None = field(default=None, repr=False)
    max_body_bytes: int = 16 * 1024 * 1024
    max_samples: int = 1024
    max_concurrency: int = 4
    scoring: ScoringOptions = field(default_factory=ScoringOptions)

    def __post_init__(self) -> None:
        for key in ("max_body_bytes", "max_samples", "max_concurrency"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", key=key)
        if self.token is not None and not self.token.strip():
            raise ConfigError("the token is empty; give a non-empty token or none", key="token")


class SampleIn(BaseModel):
    """One sample to grade (the fields of :class:`rft.Sample`)."""

    completion: str
    item: dict[str, Any] = Field(default_factory=dict)
    prompt: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    step: int | None = None
    completion_messages: list[dict[str, Any]] | None = None
    completion_ids: list[int] | None = None
    conversational: bool | None = None
    state: Any = None
    episode: dict[str, Any] | None = None


class GradeRequest(BaseModel):
    """A batch to grade, with every grader of the set or the ones named."""

    graders: list[str] | None = None
    samples: list[SampleIn]


def to_sample(s: SampleIn) -> Sample:
    """The :class:`Sample` graders see for one sample of a request.

    A sample sent without ``prompt`` gets its row's prompt as the row model reads it
    (chat messages, the trailing assistant turn left out), as in training.

    >>> to_sample(SampleIn(completion="4", item={"prompt": "2+2?", "answer": "4"})).prompt
    [{'role': 'user', 'content': '2+2?'}]
    >>> to_sample(SampleIn(completion="4", item={"answer": "4"})).prompt is None
    True
    """
    prompt = s.prompt
    if prompt is None and s.item:
        try:
            prompt = to_example(s.item).prompt
        except ValueError:
            # a row with no prompt of its own ({"answer": …}) is a valid sample: graders that
            # read only the completion and columns need none, and as before it has none
            prompt = None
    return Sample(
        completion=s.completion,
        item=s.item,
        prompt=prompt,
        tool_calls=s.tool_calls,
        step=s.step,
        completion_messages=s.completion_messages,
        completion_ids=s.completion_ids,
        conversational=s.conversational,
        state=s.state,
        episode=s.episode,
    )


def _parse(raw: bytes, max_samples: int) -> tuple[list[str] | None, list[Sample]]:
    """The graders named and the samples of a request body, counted before they are
    validated (413 beyond ``max_samples``)."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise HTTPException(422, detail=f"the body is not JSON: {err}") from None
    samples = data.get("samples") if isinstance(data, dict) else None
    if isinstance(samples, list) and len(samples) > max_samples:
        raise HTTPException(
            413,
            detail=f"{len(samples)} samples in one request; this server takes at most {max_samples} "
            "(rft serve-graders --max-samples). Set the `remote` grader's `batch_size` to "
            f"{max_samples} or less, or raise the limit",
        )
    try:
        req = GradeRequest.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
        ) from None
    return req.graders, [to_sample(s) for s in req.samples]


def _graders_listing(grader_set: GraderSet) -> list[dict[str, Any]]:
    rows = []
    for e in grader_set:
        g = e.grader
        rows.append(
            {
                "id": e.id,
                "name": g.name,
                "plugin": g.plugin,
                "description": g.description,
                "inputs": list(g.inputs),
                "columns": g.required_columns(),
                "batched": g.batched,
                "async": g.is_async,
                "range": list(g.range) if g.range else None,
                "timeout": e.timeout,
                "version": g.version,
            }
        )
    return rows


def create_app(grader_set: GraderSet, options: ServerOptions | None = None) -> FastAPI:
    """The ASGI app serving ``grader_set`` (FastAPI behind :class:`RequestGuard`).

    >>> import rft
    >>> app = create_app(rft.GraderSet([rft.grader(lambda completion: 1.0, name="one")]))
    >>> sorted(r.path for r in app.routes if r.path.startswith(("/v1", "/health")))
    ['/health', '/v1/grade', '/v1/graders']
    """
    version = __version__
    opts = options or ServerOptions()
    pool = ScoringPool(grader_set, opts.scoring, max_concurrency=opts.max_concurrency)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()

    app = FastAPI(title="rftkit grader server", version=version, lifespan=lifespan)
    app.add_middleware(RequestGuard, token=opts.token, max_body_bytes=opts.max_body_bytes)
    app.state.pool = pool

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "graders": grader_set.ids, "version": version}

    @app.get("/v1/graders")
    async def list_graders() -> dict[str, Any]:
        return {"graders": _graders_listing(grader_set)}

    body_schema = {"$ref": "#/components/schemas/GradeRequest"}

    @app.post(
        "/v1/grade",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": body_schema}}}},
    )
    async def grade(request: Request) -> dict[str, Any]:
        # parsed and validated in a thread: a body near the size limit takes a while
        named, samples = await asyncio.to_thread(_parse, await request.body(), opts.max_samples)
        ids = named or grader_set.ids
        for gid in ids:
            if gid not in grader_set.ids:
                raise HTTPException(
                    404, detail=f"unknown grader {gid!r} on this server: {did_you_mean(gid, grader_set.ids)}"
                )
        t0 = time.perf_counter()
        try:
            outcomes = await pool.score(ids, samples)
        except (ConfigError, PluginError) as err:  # workers cannot load or receive the grader set
            raise HTTPException(503, detail=f"the grader server cannot run its graders: {err}") from err
        logger.info("graded %d samples with %s in %.3fs", len(samples), ", ".join(ids), time.perf_counter() - t0)
        return {"graders": ids, "outcomes": [{gid: o.to_dict() for gid, o in per.items()} for per in outcomes]}

    def openapi() -> dict[str, Any]:
        # /v1/grade reads its body itself (to count samples before validating them), so its
        # schema is added here for the /docs page
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            model = GradeRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            nested = model.pop("$defs", {})
            schema.setdefault("components", {}).setdefault("schemas", {}).update({**nested, "GradeRequest": model})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(
    grader_set: GraderSet,
    *,
    host: str = "127.0.0.1",
    port: int = 8700,
    log_level: str = "info",
    options: ServerOptions | None = None,
) -> None:
    """Serve ``grader_set`` until interrupted (blocking).

    Raises:
        ConfigError: ``host`` is beyond loopback and ``options`` has no token.
    """
    import uvicorn

    opts = options or ServerOptions()
    check_bind(host, opts.token)
    uvicorn.run(create_app(grader_set, opts), host=host, port=port, log_level=log_level)
