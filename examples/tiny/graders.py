"""Graders for the CI-sized tiny run (configs/tiny.yaml).

``brevity`` varies even on a random tiny model, so GRPO has a signal to learn from.
"""

from __future__ import annotations

import rft


@rft.grader(range=(0.0, 1.0))
def brevity(completion: str, max_chars: int = 8) -> float:
    """1.0 for an empty answer, falling linearly to 0.0 at ``max_chars`` characters.

    >>> brevity("19"), brevity("x" * 20)
    (0.75, 0.0)
    """
    return max(0.0, 1.0 - len(completion.strip()) / max_chars)


@rft.hookimpl
def rft_register_graders(register):
    register(brevity)
