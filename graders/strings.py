"""String graders: exact match and substring checks."""

from __future__ import annotations

import rft


@rft.grader(range=(0.0, 1.0))
def exact_match(completion: str, answer: str) -> float:
    """1.0 when the completion equals the reference answer (surrounding whitespace ignored).

    >>> exact_match(" 42\\n", "42")
    1.0
    """
    return float(completion.strip() == str(answer).strip())


@rft.hookimpl
def rft_register_graders(register):
    register(exact_match)
