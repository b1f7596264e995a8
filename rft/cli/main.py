"""The ``rft`` command. Heavy imports live inside commands so ``rft --help`` is instant.

Each module of :mod:`rft.cli` registers one command group on :data:`rft.cli.app.app`;
importing them here, in this order, is what makes them (and the help's order) appear.
"""

from __future__ import annotations

from rft.cli import advise, cluster, environments, grading, judges, train, view  # noqa: F401  (each registers its commands)
from rft.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``rft`` console script."""
    app()
