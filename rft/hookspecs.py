"""Every hook a plugin can implement, grouped by phase.

Hooks are called with keyword arguments only, so an implementation may accept a
subset of a hook's arguments and specs can grow without breaking plugins. Mark an
implementation with :data:`rft.hookimpl`::

    import rft

    @rft.hookimpl
    def rft_register_graders(register):
        register(my_grader)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("rft")
hookimpl = pluggy.HookimplMarker("rft")

# ---------------------------------------------------------------------------
# registration: called once when a plugin manager is built
# ---------------------------------------------------------------------------


@hookspec
def rft_register_graders(register: Callable[..., Any]) -> None:
    """Register graders.

    Call ``register(obj, name=None)`` once per grader, where ``obj`` is a function
    decorated with ``@rft.grader``, a class decorated with ``@rft.grader`` (a grader
    factory whose ``__init__`` parameters come from the grader-set file), or a
    TRL-style reward function ``(prompts, completions, **kwargs) -> list[float]``.
    Two plugins registering the same name is an error naming both.
    Return value is ignored.
    """


# ---------------------------------------------------------------------------
# advising: called by `rft advise`
# ---------------------------------------------------------------------------


@hookspec
def rft_advisor_signals(rows: list[dict[str, Any]], stats: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Contribute extra signals to the SFT-vs-RFT advisor.

    Args:
        rows: the dataset rows (normalized dicts).
        stats: the statistics the advisor computed so far.

    Return a list of signals, each ``{"name": str, "value": Any, "reason": str}``
    optionally with ``"vote": "sft" | "rft" | ...`` to sway the recommendation;
    ``None`` contributes nothing.
    """
