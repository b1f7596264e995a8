"""The ``rft`` Typer application, shared by every command module of :mod:`rft.cli`."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["PluginOpt", "app", "console", "fail"]

app = typer.Typer(
    name="rft",
    help="rftkit: reinforcement fine-tuning centered on pluggable graders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PluginOpt = Annotated[
    list[str] | None,
    typer.Option("--plugin", "-p", help="Plugin file (*.py) or module to load; repeatable."),
]


def console():
    from rich.console import Console

    return Console()


def fail(message: str, code: int = 2) -> None:
    """Print an error in red and exit (the only place the CLI turns errors into exit codes)."""
    from rich.markup import escape

    console().print(f"[bold red]error:[/] {escape(str(message))}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
