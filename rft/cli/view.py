"""``rft view``: a local web page over one or more run directories, live while they train.

Registered on :data:`rft.cli.main.app` by one import line in ``rft/cli/main.py``; the page
and its API are :mod:`rft.view` (FastAPI under uvicorn), imported only when the command runs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from rft.cli.app import app, console, fail

__all__ = ["view"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_run_dirs(run_dirs: list[Path]) -> list[str]:
    """What is wrong with each path given as a run directory (empty when all are usable).

    A directory without any of the files ``rft train`` writes is refused (a typo would
    otherwise show an empty page); a run that has only started (``run.json``) is fine.
    """
    problems = []
    for d in run_dirs:
        if not d.exists():
            problems.append(f"{d}: no such directory; pass the output_dir of an `rft train` run")
        elif not d.is_dir():
            problems.append(f"{d}: not a directory; pass the run's output_dir, not one of its files")
        elif not any((d / n).exists() for n in ("run.json", "metrics.jsonl", "rollouts.jsonl", "eval.json")):
            problems.append(
                f"{d}: not an rftkit run directory (no run.json, metrics.jsonl, rollouts.jsonl or eval.json); "
                "pass the output_dir of an `rft train` run"
            )
    return problems


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port).

    Raises:
        OSError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@app.command()
def view(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run directories (output_dir of `rft train`); several side by side.")
    ],
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to bind. The page has no login: keep 127.0.0.1 unless you trust the network."
        ),
    ] = "127.0.0.1",
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "warning",
) -> None:
    """Browse a run's rollouts, grader verdicts, curves and evals in a local web page.

    Rollouts by step and GRPO group with each grader's score, reason and error kind (filters
    by grader, score range, error kind, zero-variance groups, text); reward, loss, KL, length
    and grader health curves; base → SFT → RFT evals per held-out row. A run that is still
    training is followed as its files grow. The viewer only reads the run directories.
    """
    problems = check_run_dirs(run_dirs)
    if problems:
        fail("\n".join(problems))
    import uvicorn

    from rft.view import create_app

    try:
        sock = bind(host, port)
    except OSError as err:
        fail(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another with --port (0 picks a free one)")
        return
    real_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    out = console()
    if host not in _LOOPBACK:
        out.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach this address can read these runs "
            "(the viewer has no login)",
            highlight=False,
        )
    out.print(f"rft view: http://{shown}:{real_port}/  ({len(run_dirs)} run(s); Ctrl-C stops)", highlight=False)
    config = uvicorn.Config(create_app(run_dirs), log_level=log_level)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
