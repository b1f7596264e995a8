"""The ``task_success`` grader: the environment's own verdict on a multi-turn episode.

An environment that knows when its task is solved (the right record booked, the puzzle
solved, the tests passing) says so in the episode's ``success``; this grader turns it into
the score. An episode without that signal is an error outcome naming why, never a 0: a
missing signal is not a failed task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import rft
from rft.core import Grade
from rft.core.errors import GraderFailure

__all__ = ["NoSuccessSignal", "task_success"]


class NoSuccessSignal(GraderFailure):
    """The sample carries no success signal to grade (recorded as a ``grader_error``)."""


@rft.grader(range=(0.0, 1.0))
def task_success(episode: Mapping[str, Any] | None = None) -> Grade:
    """The environment's success signal of the episode: success 1.0, failure 0.0.

    Reads ``episode["success"]`` of a multi-turn rollout (or of a saved trajectory's
    ``episode``). ``None`` — the environment gave no success signal — and a sample that is
    no trajectory are a ``grader_error`` saying which, never a score.

    >>> task_success({"environment": "calc", "turns": 2, "success": True, "done": True}).score
    1.0
    >>> task_success({"environment": "calc", "turns": 3, "success": False, "done": False}).reason
    'calc: task failed after 3 turn(s) (episode not done)'
    """
    if episode is None:
        raise NoSuccessSignal(
            "the sample is not a multi-turn trajectory (it has no `episode`): task_success grades rollouts of an "
            "environment, or saved trajectories whose rows carry an `episode` with `success`"
        )
    if not isinstance(episode, Mapping):
        raise NoSuccessSignal(f"`episode` must be an object with `success`, got {type(episode).__name__}")
    env = episode.get("environment") or "the environment"
    success = episode.get("success")
    if success is None:
        raise NoSuccessSignal(
            f"{env} gave no success signal for this episode (episode.success is None): give the environment a "
            "success/done check, or grade it with another grader"
        )
    if not isinstance(success, bool):
        raise NoSuccessSignal(f"episode.success must be true, false or null, got {success!r}")
    turns = episode.get("turns")
    where = f" after {turns} turn(s)" if isinstance(turns, int) else ""
    done = "" if episode.get("done", True) else " (episode not done)"
    verdict = "task solved" if success else "task failed"
    return Grade(float(success), reason=f"{env}: {verdict}{where}{done}")


@rft.hookimpl
def rft_register_graders(register: Callable[[Any], None]) -> None:
    register(task_success)
