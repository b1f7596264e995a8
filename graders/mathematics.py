"""Math graders: symbolic equivalence with math-verify, and numbers within a tolerance."""

from __future__ import annotations

import math as _math
import re
import threading
from collections.abc import Mapping
from typing import Any

import rft
from rft.core import Grade
from rft.core.errors import ConfigError
from rft.core.parsing import completion_text, extract_json, find_numbers

__all__ = ["math_equivalent", "Numeric", "final_number"]

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")


def _timeouts() -> float | None:
    # math-verify times out with signal.alarm, which only works in the main thread; in
    # worker threads the scoring engine's own per-call timeout applies instead.
    return 5 if threading.current_thread() is threading.main_thread() else None


@rft.grader(name="math", range=(0.0, 1.0))
def math_equivalent(completion: str, answer: Any) -> Grade:
    """1.0 when the completion's final answer is mathematically equal to ``answer`` (math-verify).

    Understands ``\\boxed{…}``, LaTeX (``\\frac{1}{2}``) and plain final answers
    (``The answer is 0.5``); equal values in other forms count (``1/2`` = ``0.5``).
    When the completion has ``<answer>…</answer>`` sections only the last one is
    graded. The reference is read as LaTeX math (``12``, ``\\frac{3}{4}``, ``2\\pi``).

    >>> math_equivalent("So the answer is $\\\\boxed{\\\\frac{1}{2}}$.", "0.5").score
    1.0
    >>> math_equivalent("I think it is 3", "4").score
    0.0
    """
    from math_verify import parse, verify

    timeout = _timeouts()
    ref = str(answer).strip()
    # a bare reference is LaTeX math: `\frac{1}{2}`, `2\pi`, `3/4`
    gold = parse(ref if "$" in ref or "\\boxed" in ref else f"${ref}$", parsing_timeout=timeout)
    if not any(not isinstance(g, str) for g in gold):
        raise ValueError(f"math-verify cannot parse the reference answer {ref!r}; write it as a number or LaTeX")
    text = completion_text(completion)
    tagged = _ANSWER_TAG.findall(text)
    if tagged:  # R1-style <answer>…</answer>: grade the last answer section only
        text = tagged[-1].strip()
    if tagged and "\\" in text and "$" not in text:  # bare LaTeX inside the tags: `2\pi`
        text = f"${text}$"
    pred = parse(text, parsing_timeout=timeout)
    if not pred:
        return Grade(0.0, reason="no final answer found in the completion")
    ok = verify(gold, pred, timeout_seconds=timeout)
    shown = pred[-1] if isinstance(pred[-1], str) else str(pred[0])
    return Grade(float(ok), reason=f"answer {shown!r} {'equals' if ok else 'differs from'} {ref!r}")


def final_number(text: str) -> float | None:
    """The final numeric answer of a completion: the number in the last ``\\boxed{}``,
    else after the last ``####`` (GSM8K style), else the last number in the text.

    >>> final_number("3 apples + 4 apples = 7 apples")
    7.0
    >>> final_number("We get \\\\boxed{1,000} and check with 3 other ways")
    1000.0
    """
    boxed = _BOXED.findall(text)
    if boxed:
        nums = find_numbers(boxed[-1])
        if nums:
            return nums[-1]
    if "####" in text:
        nums = find_numbers(text.rsplit("####", 1)[1])
        if nums:
            return nums[0]
    nums = find_numbers(text)
    return nums[-1] if nums else None


@rft.grader(name="numeric", range=(0.0, 1.0))
class Numeric:
    """1.0 when the completion's final number is within tolerance of the answer column.

    The final number is the ``json_key`` field when the completion is a JSON object
    with it (also inside a code fence), else the number in the last ``\\boxed{}``,
    else after ``####``, else the last number in the text (``1,234`` and ``3/4`` are
    understood). Passes when
    ``|got - want| <= max(abs_tol, rel_tol * |want|)`` (``math.isclose``).

    Args:
        column: the dataset column with the reference number.
        abs_tol: absolute tolerance.
        rel_tol: relative tolerance (0.01 = 1 %).
        json_key: the field holding the answer in JSON completions (None: ignore JSON).
        name: the grader's id in a set.

    >>> Numeric(rel_tol=0.01)("about 99.5", {"answer": 100}).score
    1.0
    >>> Numeric()('{"answer": 24, "why": "4 boxes of 6"}', {"answer": "24"}).score
    1.0
    """

    def __init__(
        self,
        column: str = "answer",
        abs_tol: float = 1e-6,
        rel_tol: float = 0.0,
        json_key: str | None = "answer",
        name: str | None = None,
    ):
        for key, v in (("abs_tol", abs_tol), ("rel_tol", rel_tol)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"numeric: {key} must be a number >= 0, got {v!r}")
        self.column, self.abs_tol, self.rel_tol, self.name = column, float(abs_tol), float(rel_tol), name
        self.json_key = json_key

    @property
    def rft_columns(self) -> tuple[str, ...]:
        return (self.column,)

    def __call__(self, completion: str, item: Mapping[str, Any]) -> Grade:
        raw = item[self.column]
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            want = float(raw)
        else:
            nums = find_numbers(str(raw))
            if len(nums) != 1:
                raise ValueError(f"column {self.column!r} holds {raw!r}, which is not one number")
            want = nums[0]
        text = completion_text(completion)
        got = None
        if self.json_key is not None:
            found, value = extract_json(text)
            if found and isinstance(value, Mapping) and self.json_key in value:
                field = value[self.json_key]
                nums = (
                    [float(field)]
                    if isinstance(field, (int, float)) and not isinstance(field, bool)
                    else (find_numbers(str(field)))
                )
                got = nums[-1] if nums else None
        if got is None:
            got = final_number(text)
        if got is None:
            return Grade(0.0, reason="no number in the completion")
        ok = _math.isclose(got, want, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return Grade(
            float(ok),
            reason=f"final number {got:g} {'≈' if ok else '≠'} {want:g}",
            metrics={"abs_error": abs(got - want)},
        )


@rft.hookimpl
def rft_register_graders(register):
    register(math_equivalent)
    register(Numeric)
