"""Small text and number helpers that messages, reports and metrics share (one of each)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["percentile", "shorten", "snake_case"]


def shorten(value: Any, n: int = 80) -> str:
    """``value`` on one line (its ``repr`` unless it is a string), cut to ``n`` characters.

    >>> shorten("a  long\\ntext", 8)
    'a long …'
    >>> shorten({"x": 1})
    "{'x': 1}"
    """
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100); NaN for no values.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([], 95)
    nan
    """
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def snake_case(name: str) -> str:
    """A CamelCase class name in snake_case (the default name of a grader class).

    >>> snake_case("ExactMatch")
    'exact_match'
    """
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
