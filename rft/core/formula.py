"""Safe evaluation of reward formulas (``formula:`` of a grader set, OpenAI ``calculate_output``).

Formulas are evaluated with simpleeval, never ``eval``: numbers, names, ``+ - * / ** ^``
(``^`` is a power, as in OpenAI's formulas), comparisons, and the functions in
:data:`FORMULA_FUNCTIONS`. A formula is parsed once per process, not once per sample.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping

__all__ = ["FORMULA_FUNCTIONS", "evaluate_formula", "formula_names"]


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


@functools.lru_cache(maxsize=256)
def _parsed(formula: str) -> ast.AST:
    from simpleeval import SimpleEval

    # OpenAI writes powers as `^`; Python's `**` has the precedence a power needs
    return SimpleEval().parse(formula.replace("^", "**"))


@functools.lru_cache(maxsize=256)
def formula_names(formula: str) -> frozenset[str]:
    """The names a formula reads (its functions excluded).

    Raises:
        SyntaxError: the formula is not an expression.

    >>> sorted(formula_names("0.5 * a + max(b, 1) ^ 2"))
    ['a', 'b']
    """
    called = {n.func.id for n in ast.walk(_parsed(formula)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return frozenset(n.id for n in ast.walk(_parsed(formula)) if isinstance(n, ast.Name) and n.id not in called)


def evaluate_formula(formula: str, names: Mapping[str, float]) -> float:
    """Evaluate a formula over named scores.

    Raises:
        TypeError: the formula does not give a number.
        ArithmeticError, ValueError: the values make it fail (a division by zero,
            ``log(0)``, an overflow).
        simpleeval errors: an unknown name or function, or a forbidden construct.

    >>> evaluate_formula("0.5 * a + b ^ 2", {"a": 1.0, "b": 0.5})
    0.75
    """
    from simpleeval import SimpleEval

    value = SimpleEval(functions=FORMULA_FUNCTIONS, names=dict(names)).eval(formula, previously_parsed=_parsed(formula))
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, (int, float)):
        raise TypeError(f"formula {formula!r} gave {type(value).__name__} {value!r}, not a number")
    return float(value)
