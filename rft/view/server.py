"""The viewer's web server: a JSON API over :class:`~rft.view.run.RunReader` and the page.

``create_app([run_dir, …])`` returns a FastAPI app. The API (all ``GET``, read-only):

=====================================  ==============================================================
``/api/runs``                          each run: name, path, model, stages, graders, which files exist
``/api/status``                        per run: line counts and generations of the JSONL files, eval
                                       mtime, ``finished`` (the page polls it to follow a live run)
``/api/runs/{id}/steps``               per rollout step: completions, groups, mean reward, zero-variance
``/api/runs/{id}/groups``              a page of GRPO groups: ``step grader lo hi kind zero_variance q
                                       offset limit sort`` (see :class:`~rft.view.run.Filters`)
``/api/runs/{id}/rollouts/{line}``     one rollout line in full and its group's line numbers
``/api/runs/{id}/metrics?start=N``     ``metrics.jsonl`` records from record N (incremental)
``/api/runs/{id}/eval``                ``eval.json``'s phases side by side, per held-out sample
=====================================  ==============================================================

The page itself (``/``) and its script, style and icon (``/static/…``) ship in the package
(``rft/view/static``); nothing is fetched from elsewhere, so it works offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from rft.view.run import Filters, RunReader

__all__ = ["STATIC", "create_app", "unique_names"]

#: The page's files, shipped as package data.
STATIC = Path(str(resources.files("rft.view") / "static"))


def create_app(run_dirs: Sequence[str | Path]) -> Any:
    """The FastAPI app that serves ``run_dirs`` (in the order given; ``id`` is the position).

    Raises:
        ValueError: no run directories were given.
    """
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles

    if not run_dirs:
        raise ValueError("create_app needs at least one run directory")
    readers = [RunReader(d, i) for i, d in enumerate(run_dirs)]
    for r, name in zip(readers, unique_names([Path(d) for d in run_dirs]), strict=True):
        r.name = name
    app = FastAPI(title="rft view", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.readers = readers

    def reader(run_id: int) -> RunReader:
        if not 0 <= run_id < len(readers):
            raise HTTPException(404, f"no run {run_id}; this viewer shows runs 0..{len(readers) - 1}")
        return readers[run_id]

    @app.middleware("http")
    async def no_cache(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def index() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return [r.info() for r in readers]

    @app.get("/api/status")
    def status() -> list[dict[str, Any]]:
        return [r.status() for r in readers]

    @app.get("/api/runs/{run_id}/steps")
    def steps(run_id: int) -> list[dict[str, Any]]:
        return reader(run_id).steps()

    @app.get("/api/runs/{run_id}/groups")
    def groups(
        run_id: int,
        step: int | None = None,
        grader: str | None = None,
        lo: float | None = None,
        hi: float | None = None,
        kind: str | None = None,
        zero_variance: bool = False,
        q: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(20, ge=1, le=200),
        sort: str = "step",
    ) -> Any:
        filters = Filters(
            step=step,
            grader=grader or None,
            lo=lo,
            hi=hi,
            kind=kind or None,
            zero_variance=zero_variance,
            q=q or None,
        )
        try:
            return reader(run_id).groups(filters, offset=offset, limit=limit, sort=sort)
        except (KeyError, ValueError) as err:
            return JSONResponse({"detail": str(err).strip("'\"")}, status_code=400)

    @app.get("/api/runs/{run_id}/rollouts/{line}")
    def rollout(run_id: int, line: int) -> Any:
        try:
            return reader(run_id).rollout(line)
        except KeyError as err:
            raise HTTPException(404, str(err).strip("'\"")) from err

    @app.get("/api/runs/{run_id}/metrics")
    def metrics(run_id: int, start: int = Query(0, ge=0)) -> Any:
        return reader(run_id).metric_records(start)

    @app.get("/api/runs/{run_id}/eval")
    def evals(run_id: int) -> Any:
        return reader(run_id).eval_compare()

    return app


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Short names that tell the runs apart: the directory's name, with as many parents as needed.

    >>> unique_names([Path("/a/x/run"), Path("/a/y/run"), Path("/b/other")])
    ['x/run', 'y/run', 'other']
    """
    resolved = [p.resolve() for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(p.parts[-d:]) for p, d in zip(resolved, depth, strict=True)]
        clash = [i for i, n in enumerate(names) if names.count(n) > 1 and depth[i] < len(resolved[i].parts)]
        if not clash:
            return names
        for i in clash:
            depth[i] += 1
