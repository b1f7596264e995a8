"""The grader server behind ``rft serve-graders``: registered graders over HTTP.

Graders with heavy dependencies run where those live; training reaches them with the
``remote`` grader. The API (JSON; FastAPI also serves its OpenAPI page at ``/docs``):

- ``GET /health`` → ``{"status": "ok", "graders": [ids], "version": …}``
- ``GET /v1/graders`` → ``{"graders": [{"id", "name", "plugin", "description", "inputs", …}]}``
- ``POST /v1/grade`` with ``{"graders": [ids] (optional, default all), "samples":
  [{"completion", "item", "prompt", "tool_calls", "step"}]}`` → ``{"graders": [ids],
  "outcomes": [{id: Outcome.to_dict()} per sample]}``. An unknown id is a 404 naming
  the valid ones; a malformed body is a 422.

Graders run in the server's process: async graders concurrently (each sample under
its entry's ``timeout``), sync graders in threads. A grader fault is an error outcome
in the reply, never an HTTP error; ``on_error`` policies and error budgets are left
to the caller's side, so it sees the kind the server recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from rft.core import GraderEntry, GraderSet, Outcome, OutcomeKind, Sample
from rft.core.errors import did_you_mean

logger = logging.getLogger(__name__)

__all__ = ["create_app", "serve", "GradeRequest", "SampleIn"]


class SampleIn(BaseModel):
    """One sample to grade (the fields of :class:`rft.Sample`)."""

    completion: str
    item: dict[str, Any] = Field(default_factory=dict)
    prompt: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    step: int | None = None


class GradeRequest(BaseModel):
    """A batch to grade, with every grader of the set or the ones named."""

    graders: list[str] | None = None
    samples: list[SampleIn]


async def _timed(entry: GraderEntry, samples: Sequence[Sample]) -> list[Outcome]:
    """Outcomes of one entry, each sample (or the batch, for batched graders) under its timeout."""
    g, timeout = entry.grader, entry.timeout

    def expired(n: int, t0: float) -> list[Outcome]:
        msg = f"grader {entry.id!r} ran past its timeout of {timeout:g}s on the grader server"
        return [Outcome.failure(OutcomeKind.TIMEOUT, msg, latency_s=time.perf_counter() - t0) for _ in range(n)]

    async def run(batch: Sequence[Sample]) -> list[Outcome]:
        t0 = time.perf_counter()
        try:
            return await asyncio.wait_for(g.agrade(batch), timeout)
        except asyncio.TimeoutError:
            return expired(len(batch), t0)

    if g.batched or not samples:
        return await run(samples)
    parts = await asyncio.gather(*(run([s]) for s in samples))
    return [p[0] for p in parts]


def create_app(grader_set: GraderSet) -> FastAPI:
    """The FastAPI app serving ``grader_set``.

    >>> import rft
    >>> app = create_app(rft.GraderSet([rft.grader(lambda completion: 1.0, name="one")]))
    >>> sorted(r.path for r in app.routes if r.path.startswith(("/v1", "/health")))
    ['/health', '/v1/grade', '/v1/graders']
    """
    from rft import __version__

    app = FastAPI(title="rftkit grader server", version=__version__)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "graders": grader_set.ids, "version": __version__}

    @app.get("/v1/graders")
    async def list_graders() -> dict[str, Any]:
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
        return {"graders": rows}

    @app.post("/v1/grade")
    async def grade(request: GradeRequest) -> dict[str, Any]:
        ids = request.graders or grader_set.ids
        for gid in ids:
            if gid not in grader_set.ids:
                raise HTTPException(
                    404, detail=f"unknown grader {gid!r} on this server: {did_you_mean(gid, grader_set.ids)}"
                )
        samples = [Sample(**s.model_dump()) for s in request.samples]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_timed(grader_set[gid], samples) for gid in ids))
        logger.info("graded %d samples with %s in %.3fs", len(samples), ", ".join(ids), time.perf_counter() - t0)
        return {
            "graders": ids,
            "outcomes": [{gid: results[j][i].to_dict() for j, gid in enumerate(ids)} for i in range(len(samples))],
        }

    return app


def serve(grader_set: GraderSet, *, host: str = "127.0.0.1", port: int = 8700, log_level: str = "info") -> None:
    """Serve ``grader_set`` until interrupted (blocking)."""
    import uvicorn

    uvicorn.run(create_app(grader_set), host=host, port=port, log_level=log_level)
