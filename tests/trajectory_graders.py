"""Graders of trajectories for the tests (a plugin file: Ray actors import it by path)."""

from __future__ import annotations

from typing import Any

import rft


@rft.grader
def booked(state: dict[str, Any]) -> float:
    """1.0 when the environment's final state records a booking."""
    return float(bool(state.get("booked")))


@rft.grader
def calls_made(tool_calls: list[dict[str, Any]], messages: list[dict[str, Any]]) -> rft.Grade:
    """The number of tool calls, and the roles of the whole conversation as the reason."""
    return rft.Grade(float(len(tool_calls)), reason=",".join(m["role"] for m in messages))
