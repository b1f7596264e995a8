"""Programs that run inside the sandbox, kept as real modules (linted, type-checked, tested).

A program module uses the standard library only (the sandbox starts Python with ``-I -S``)
and does its work under ``if __name__ == "__main__":``, so importing it (tests, doctests)
runs nothing. The sandbox reads its source with :func:`program_source` and runs that.
"""

from __future__ import annotations

import functools
import importlib.resources

__all__ = ["program_source"]


@functools.cache
def program_source(package: str, name: str) -> str:
    """The source text of program module ``name`` shipped in ``package`` (read once per process).

    Args:
        package: the package that holds the program, e.g. ``"rft.sandbox.programs"``.
        name: the module name, without ``.py``.

    Raises:
        FileNotFoundError: the package ships no such module (a broken installation).

    >>> "def main(" in program_source("rft.sandbox.programs", "unshare_init")
    True
    """
    return importlib.resources.files(package).joinpath(f"{name}.py").read_text(encoding="utf-8")
