"""Safe evaluation of reward formulas (``formula:`` of a grader set, OpenAI ``calculate_output``).

Formulas are evaluated with simpleeval, never ``eval``: numbers, names, ``+ - * / ** ^``
(``^`` is a power, as in OpenAI's formulas), comparisons, and the functions in
:data:`FORMULA_FUNCTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["FORMULA_FUNCTIONS", "evaluate_formula"]


def _clip(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


#: Functions a formula may call.
FORMULA_FUNCTIONS = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
    "clip": _clip,
}


def evaluate_formula(formula: str, names: Mapping[str, float]) -> float:
    """Evaluate a formula over named scores.

    Raises:
        TypeError: the formula does not give a number.
        simpleeval errors: an unknown name or function, or a forbidden construct.

    >>> evaluate_formula("0.5 * a + b ^ 2", {"a": 1.0, "b": 0.5})
    0.75
    """
    from simpleeval import SimpleEval

    # OpenAI writes powers as `^`; Python's `**` has the precedence a power needs
    value = SimpleEval(functions=FORMULA_FUNCTIONS, names=dict(names)).eval(formula.replace("^", "**"))
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, (int, float)):
        raise TypeError(f"formula {formula!r} gave {type(value).__name__} {value!r}, not a number")
    return float(value)
