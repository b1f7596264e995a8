"""Tools for agentic RFT that run code the model writes, in the sandbox.

A tool that runs model-written code must not run it in the training process: a thread with
a timeout cannot stop an infinite loop, and the code could read or change anything.
:func:`python_tool` makes an :class:`rft.Tool` that runs each call's code with
:func:`rft.sandbox.run_python` — its own process tree, resource limits, no network, a
private working directory, killed at its wall-clock limit::

    import rft
    from rft.sandbox import Limits
    from rft.sandbox.tools import python_tool

    run_python = python_tool(limits=Limits(wall_s=5, memory_mb=256))

    @rft.environment(tools=[run_python], max_turns=3)
    def calculator(row):
        return {}

The model sees one argument, ``code``; it gets back the program's output (stdout, then
stderr), with ``exit N`` / ``timed out`` when the program failed. A program that fails is a
result the model reads, not a tool error; a sandbox that cannot run at all raises (counted
as a tool error and shown to the model).
"""

from __future__ import annotations

from typing import Any

from rft.core.environment import Tool
from rft.sandbox.limits import Limits
from rft.sandbox.runner import run_python

__all__ = ["python_tool"]

#: Characters of output sent back to the model per call.
MAX_TOOL_OUTPUT = 2000


def python_tool(
    *,
    name: str = "run_python",
    limits: Limits | None = None,
    backend: str | None = None,
    require_isolation: bool | None = None,
    max_output: int = MAX_TOOL_OUTPUT,
) -> Tool:
    """A tool that runs the model's Python code in the sandbox and returns its output.

    Args:
        name: the tool's name as the model calls it.
        limits: the sandbox's limits per call (default ``Limits(wall_s=10)``); the tool's
            own timeout is the wall limit plus a margin for starting the sandbox.
        backend, require_isolation: as :func:`rft.sandbox.run`.
        max_output: characters of output returned to the model (the rest is cut, and says so).
    """
    lim = limits or Limits(wall_s=10)

    def run_code(code: str) -> str:
        """Run a Python program and return what it prints.

        Args:
            code: the complete Python program (standard library only); print the results you need.
        """
        result = run_python(code, limits=lim, backend=backend, require_isolation=require_isolation)
        out = (result.stdout or "") + (result.stderr or "")
        if len(out) > max_output:
            out = out[:max_output] + f"\n… ({len(out) - max_output} more characters cut)"
        status = "" if result.ok else f"[{result.describe()}]"
        return (out.rstrip() + ("\n" + status if status and out.strip() else status)) or "(no output)"

    run_code.__name__ = name
    timeout: Any = float(lim.wall_s) + 5.0
    return Tool(run_code, name, timeout)
