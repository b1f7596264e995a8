"""The addition example's task-specific grader: partial credit for an addition answer.

The built-in ``exact_match`` is the goal (1 for the right sum, else 0), but a 0/1 reward
gives GRPO no signal on prompts where every sampled answer is wrong. ``digit_credit``
adds a dense part: the share of digits in the right place, for replies that are a bare
number with as many digits as the answer. ``configs/addition.yaml`` weights it at 0.5,
so the reward is 1.5 for the right sum, at most 0.5 for a wrong one, and 0 for a reply
that is not a number of the right length.

Why the length rule: an earlier version aligned replies from the ones place and gave
credit to replies of any length. GRPO found the loophole within 20 steps: "444" for
44 earned 2/3 and the held-out pass rate fell from 0.56 to 0.22. Partial credit must not
pay for something the exact answer would never contain.
"""

from __future__ import annotations

import re

import rft

_DIGITS = re.compile(r"\d+")


@rft.grader(range=(0.0, 1.0))
def digit_credit(completion: str, answer: str) -> float:
    """Share of the answer's digits that the reply gets right, position by position.

    Only a reply that is a bare number (surrounding whitespace ignored) with as many
    digits as the answer earns credit.

    >>> digit_credit("109", "109"), digit_credit("119", "109"), digit_credit("57", "58")
    (1.0, 0.6666666666666666, 0.5)
    >>> digit_credit("444", "44"), digit_credit("The sum is 109", "109")
    (0.0, 0.0)
    """
    reply, want = completion.strip(), str(answer).strip()
    if not _DIGITS.fullmatch(reply) or len(reply) != len(want):
        return 0.0
    return sum(a == b for a, b in zip(reply, want)) / len(want)


@rft.hookimpl
def rft_register_graders(register):
    register(digit_credit)
