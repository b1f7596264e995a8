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
        typer.Option("--host", help="Interface to bind; 127.0.0.1 serves this machine only, 0.0.0.0 every network."),
    ] = "127.0.0.1",
    plugin: PluginOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve a grader set over HTTP (POST /v1/grade, GET /v1/graders, GET /health).

    Training machines call these graders with `name: remote, url: http://HOST:PORT,
    grader: ID`. The server has no authentication: bind it to a private network.
    """
    from rft.core.errors import RFTError
    from rft.plugins import grader_set_from_file

    try:
        grader_set = grader_set_from_file(graders_file, plugins=list(plugin or []))
    except RFTError as err:
        fail(str(err))
    from rft.judges.server import serve

    console().print(
        f"serving {len(grader_set)} grader(s) ({', '.join(grader_set.ids)}) on http://{host}:{port}", highlight=False
    )
    serve(grader_set, host=host, port=port, log_level=log_level)
