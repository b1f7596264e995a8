"""The flagship's verifier: is the reply a number in the range, with the asked parity?

``in_range`` is the goal (1 or 0). ``range_credit`` is the dense part that gives GRPO a
signal where every sample of a group fails: for a reply that is a bare number, half for the
right parity and half for being inside the range. Neither reads a reference output: the row
carries only ``low``, ``high`` and ``parity``, so prompts without labels train RFT too.

Why no credit for being *close* to the range: an earlier version paid 0.5 × closeness (1 inside,
falling to 0 at 50 outside). GRPO found the loophole on one of three seeds: copying the
prompt's lower bound ("Name an odd number between 39 and 50." → "39") is 1 outside the range
and earned 0.99 of the dense credit half the time; the held-out pass rate fell from 0.54 after
SFT to 0.39. Partial credit must not pay for something a right answer never is.
"""

from __future__ import annotations

import re

import rft

_NUMBER = re.compile(r"\s*(\d{1,9})\s*")


def _number(completion: str) -> int | None:
    m = _NUMBER.fullmatch(completion)
    return int(m.group(1)) if m else None


def _parity_ok(x: int, parity: str) -> bool:
    if parity not in ("even", "odd"):
        raise ValueError(f"parity is {parity!r}; the row's `parity` column must be 'even' or 'odd'")
    return x % 2 == (parity == "odd")


@rft.grader(range=(0.0, 1.0))
def in_range(completion: str, item: dict) -> float:
    """1 when the reply is a bare number strictly between ``low`` and ``high`` with the row's ``parity``.

    >>> row = {"low": 818, "high": 830, "parity": "even"}
    >>> in_range("824", row), in_range(" 828\\n", row), in_range("825", row), in_range("830", row)
    (1.0, 1.0, 0.0, 0.0)
    >>> in_range("The number is 824", row), in_range("", row)
    (0.0, 0.0)
    """
    x = _number(completion)
    return float(x is not None and item["low"] < x < item["high"] and _parity_ok(x, item["parity"]))


@rft.grader(range=(0.0, 1.0))
def range_credit(completion: str, item: dict) -> float:
    """Partial credit for a bare number: 0.5 for the parity, 0.5 for being strictly inside the range.

    >>> row = {"low": 818, "high": 830, "parity": "even"}
    >>> range_credit("824", row), range_credit("825", row), range_credit("818", row), range_credit("no", row)
    (1.0, 0.5, 0.5, 0.0)
    """
    x = _number(completion)
    if x is None:
        return 0.0
    return 0.5 * float(_parity_ok(x, item["parity"])) + 0.5 * float(item["low"] < x < item["high"])


@rft.hookimpl
def rft_register_graders(register):
    register(in_range)
    register(range_credit)
