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


@hookspec
def rft_register_environments(register: Callable[..., Any]) -> None:
    """Register environments for agentic (multi-turn) RFT.

    Call ``register(env, name=None)`` once per environment, where ``env`` is an
    :class:`rft.Environment` (e.g. made with ``@rft.environment``). A plugin file without
    this hook contributes its module-level environments by itself. Two plugins registering
    the same name is an error naming both. Return value is ignored.
    """


# ---------------------------------------------------------------------------
# advising: called by `rft advise`
# ---------------------------------------------------------------------------


@hookspec
def rft_advisor_signals(
    rows: list[dict[str, Any]],
    stats: dict[str, Any],
    verifiability: dict[str, Any] | None,
    probe: dict[str, Any] | None,
) -> list[dict[str, Any]] | None:
    """Contribute extra signals to the SFT-vs-RFT advisor (``rft advise``).

    Args:
        rows: the dataset rows, as loaded.
        stats: the dataset statistics the advisor computed (``stats`` of ``--json``).
        verifiability: the grader checks (``verifiability`` of ``--json``).
        probe: the base-model probe results, or None when no probe ran.

    Return a list of signals, each ``{"name": str, "value": <JSON value>, "reason": str}``
    optionally with ``"vote"`` (one of ``sft``, ``rft``, ``sft_then_rft``,
    ``rft_with_judge``, ``collect_labels``, ``none``); when every vote agrees it decides
    the recommendation, as the last step of the decision path. ``None`` contributes
    nothing. Signals appear in the report and under ``signals`` in ``--json``.
    """
