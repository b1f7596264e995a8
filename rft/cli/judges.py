"""``rft serve-graders``: expose a grader set over HTTP for the ``remote`` grader.

Registered on :data:`rft.cli.main.app` by one import line in ``rft/cli/main.py``; the server
itself is :mod:`rft.judges.server` (FastAPI under uvicorn), imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rft.cli.app import PluginOpt, app, console, fail

__all__ = ["serve_graders"]


@app.command("serve-graders")
def serve_graders(
    graders_file: Annotated[Path, typer.Option("--graders", help="Grader-set file (YAML or JSON) to serve.")],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port to listen on.")] = 8700,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Interface to bind; 127.0.0.1 serves this machine only, 0.0.0.0 every network (needs a token).",
        ),
    ] = "127.0.0.1",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File whose first line is the bearer token clients must send (default: $RFT_GRADER_TOKEN). "
            "Required to bind beyond loopback.",
        ),
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Largest request body in bytes; larger is answered 413.")
    ] = 16 * 1024 * 1024,
    max_samples: Annotated[
        int, typer.Option("--max-samples", min=1, help="Most samples in one request; more is answered 413.")
    ] = 1024,
    max_concurrency: Annotated[
        int,
        typer.Option(
            "--max-concurrency",
            min=1,
            help="Grader runs scored at once (one grader over one request's samples); more wait their turn.",
        ),
    ] = 4,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes per grader run (the engine's num_workers).")
    ] = 2,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline",
            help="Run graders in the server process, not in worker processes (one copy of a local judge model); "
            "a hung sync grader is then reported as a timeout but keeps its thread.",
        ),
    ] = False,
    default_timeout: Annotated[
        float,
        typer.Option(
            "--default-timeout", min=0.0, help="Seconds per grader call for graders without a `timeout` (0: none)."
        ),
    ] = 60.0,
    plugin: PluginOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve a grader set over HTTP (POST /v1/grade, GET /v1/graders, GET /health).

    Training machines call these graders with `name: remote, url: http://HOST:PORT,
    grader: ID`. Graders run through the scoring engine, as in training: a call past its
    `timeout` is stopped and comes back as a `timeout` outcome. With a token
    ($RFT_GRADER_TOKEN or --token-file) every request must send `Authorization: Bearer
    TOKEN` (the remote grader sends its `token:` or $RFT_GRADER_TOKEN); binding beyond
    127.0.0.1 without one is refused.
    """
    from rft.core.errors import RFTError
    from rft.judges.guard import check_bind, resolve_token
    from rft.judges.server import ServerOptions, serve
    from rft.plugins import grader_set_from_file
    from rft.scoring import ScoringOptions

    try:
        token = resolve_token(token_file)
        check_bind(host, token)
        options = ServerOptions(
            token=token,
            max_body_bytes=max_body_bytes,
            max_samples=max_samples,
            max_concurrency=max_concurrency,
            scoring=ScoringOptions(num_workers=workers, default_timeout=default_timeout or None, inline=inline),
        )
        grader_set = grader_set_from_file(graders_file, plugins=list(plugin or []))
    except RFTError as err:
        fail(str(err))
    auth = "bearer token required" if token else "no token: this machine only"
    console().print(
        f"serving {len(grader_set)} grader(s) ({', '.join(grader_set.ids)}) on http://{host}:{port} ({auth})",
        highlight=False,
    )
    serve(grader_set, host=host, port=port, log_level=log_level, options=options)
