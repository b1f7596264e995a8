"""The flagship's verifier: is the reply a number in the range, with the asked parity?

``in_range`` is the goal (1 or 0). ``range_credit`` is the dense part that gives GRPO a
signal where every sample of a group fails: for a reply that is a bare number, half for the
right parity and half for being close to the range. Neither reads a reference output: the
row carries only ``low``, ``high`` and ``parity``, so prompts without labels train RFT too.
"""

from __future__ import annotations

import re

import rft

_NUMBER = re.compile(r"\s*(\d{1,9})\s*")
#: How far outside the range (in units) a number still earns closeness credit.
NEAR = 50


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
    """Partial credit for a bare number: 0.5 for the parity, 0.5 × closeness to the range.

    Closeness is 1 inside the range and falls to 0 at :data:`NEAR` units outside it.

    >>> row = {"low": 818, "high": 830, "parity": "even"}
    >>> range_credit("824", row), range_credit("825", row), range_credit("844", row), range_credit("no", row)
    (1.0, 0.5, 0.7, 0.0)
    """
    x = _number(completion)
    if x is None:
        return 0.0
    distance = max(item["low"] + 1 - x, 0, x - (item["high"] - 1))
    return 0.5 * float(_parity_ok(x, item["parity"])) + 0.5 * max(0.0, 1.0 - distance / NEAR)


@rft.hookimpl
def rft_register_graders(register):
    register(in_range)
    register(range_credit)
