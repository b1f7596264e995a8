"""Math graders: symbolic equivalence with math-verify, and numbers within a tolerance.

math-verify's own timeouts use ``signal.alarm``: they work only on a process's main
thread, and a timeout there is swallowed (``parse`` returns ``[]``, ``verify``
returns False), which used to score a sample 0.0. The ``math`` grader turns them off
and keeps its own deadline instead, the same on every thread (local workers run
graders on their main thread, Ray actors and ``inline`` scoring on helper threads):
past its ``time_limit`` (default :data:`MATH_TIMEOUT_S`) the grading thread is
interrupted and the sample is recorded as a ``timeout``. math-verify's errors are raised (``raise_on_error=True``) and become
``grader_error`` outcomes. A 0.0 means math-verify compared the answers and they differ.
The scoring engine's own killing timeout stays the backstop for C code that cannot
be interrupted (e.g. a huge integer power).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math as _math
import re
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import rft
from rft.core import Grade
from rft.core.errors import ConfigError, GraderFailure
from rft.core.parsing import completion_text, extract_json, find_numbers

__all__ = ["MATH_TIMEOUT_S", "MathEquivalent", "MathVerifyTimeout", "Numeric", "final_number", "math_equivalent"]

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")

#: Seconds the ``math`` grader gives math-verify per sample (parsing both answers and comparing).
MATH_TIMEOUT_S = 10.0


class MathVerifyTimeout(GraderFailure):
    """math-verify ran past its deadline on a sample; recorded as kind ``timeout``, never as 0."""

    outcome_kind = "timeout"


class _Interrupted(BaseException):
    """Raised in the grading thread at its deadline. A BaseException, like math-verify's
    own ``TimeoutException``, so that the ``except Exception`` handlers of math-verify
    and sympy do not swallow it."""


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    # CPython's documented hook for raising in another thread; None clears a pending one.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class _Deadline:
    """Interrupt the calling thread with :class:`_Interrupted` after ``seconds``; thread-safe,
    on any thread, no signals. Like a signal handler, the exception arrives between two
    bytecodes, so C code that never returns to Python runs on (the engine's timeout is the
    backstop). Entering and leaving it is race-free: the interruption fires only while the
    block runs, and one still pending when the block ends is cleared."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._lock = threading.Lock()
        self._state = "idle"
        self._thread_id = 0
        self._timer: threading.Timer | None = None

    def __enter__(self) -> _Deadline:
        self._thread_id = threading.get_ident()
        self._state = "running"
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _fire(self) -> None:
        with self._lock:
            if self._state == "running":
                self._state = "fired"
                _set_async_exc(self._thread_id, _Interrupted)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            fired, self._state = self._state == "fired", "done"
        if fired and exc_type is not _Interrupted:
            _set_async_exc(self._thread_id, None)  # fired just as the block ended: not raised yet
            raise _Interrupted


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns once that its timeouts are off; here a deadline replaces them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def _parse(text: str) -> list[Any]:
    from math_verify import parse

    return list(parse(text, parsing_timeout=None, raise_on_error=True))


def _equal(gold: list[Any], pred: list[Any]) -> bool:
    """True when any parsed reference equals any parsed prediction (math-verify's ``verify``).

    A comparison that raises is an error only when no other pair is equal: ``verify``
    would stop at the first raising pair, or (without ``raise_on_error``) count it as
    unequal, which would be a silent 0.
    """
    from math_verify import verify

    failed: Exception | None = None
    for g, p in itertools.product(gold, pred):
        try:
            if verify(g, p, timeout_seconds=None, raise_on_error=True):
                return True
        except Exception as err:  # noqa: BLE001 - kept, and raised below unless another pair is equal
            failed = failed or err
    if failed is not None:
        raise RuntimeError(f"math-verify failed comparing the answers: {type(failed).__name__}: {failed}") from failed
    return False


_warm = threading.Lock()
_warmed = False


def _warm_up() -> None:
    """Import math-verify and run it once per process outside any deadline: its first call
    imports and builds parsers lazily, slow work no interruption should land in."""
    global _warmed
    with _warm:
        if not _warmed:
            _equal(_parse("$1$"), _parse("$1$"))
            _warmed = True


def _grade_math(completion: str, answer: Any, time_limit: float) -> Grade:
    if not _warmed:
        _warm_up()
    ref = str(answer).strip()
    text = completion_text(completion)
    tagged = _ANSWER_TAG.findall(text)
    if tagged:  # R1-style <answer>…</answer>: grade the last answer section only
        text = tagged[-1].strip()
    if tagged and "\\" in text and "$" not in text:  # bare LaTeX inside the tags: `2\pi`
        text = f"${text}$"
    step = "parsing the reference answer"
    try:
        with _Deadline(time_limit):
            # a bare reference is LaTeX math: `\frac{1}{2}`, `2\pi`, `3/4`
            gold = _parse(ref if "$" in ref or "\\boxed" in ref else f"${ref}$")
            if not any(not isinstance(g, str) for g in gold):
                raise ValueError(
                    f"math-verify cannot parse the reference answer {ref!r}; write it as a number or LaTeX"
                )
            step = "parsing the completion's answer"
            pred = _parse(text)
            if not pred:
                return Grade(0.0, reason="no final answer found in the completion")
            step = "comparing the answers"
            ok = _equal(gold, pred)
    except _Interrupted:
        raise MathVerifyTimeout(
            f"math-verify ran past its time limit of {time_limit:g} s {step} (reference {ref!r}); "
            "recorded as a timeout, not a 0 (raise the grader's `time_limit` if such answers are expected)"
        ) from None
    shown = pred[-1] if isinstance(pred[-1], str) else str(pred[0])
    return Grade(float(ok), reason=f"answer {shown!r} {'equals' if ok else 'differs from'} {ref!r}")


@rft.grader(name="math", range=(0.0, 1.0))
class MathEquivalent:
    """1.0 when the completion's final answer is mathematically equal to ``answer`` (math-verify).

    Understands ``\\boxed{…}``, LaTeX (``\\frac{1}{2}``) and plain final answers
    (``The answer is 0.5``); equal values in other forms count (``1/2`` = ``0.5``).
    When the completion has ``<answer>…</answer>`` sections only the last one is
    graded. The reference is read as LaTeX math (``12``, ``\\frac{3}{4}``, ``2\\pi``).
    math-verify running past ``time_limit`` is a ``timeout`` outcome and a math-verify
    error a ``grader_error``, on every thread; 0.0 only when the answers differ or the
    completion has none.

    Args:
        time_limit: seconds math-verify may take on one sample (parsing both answers
            and comparing them).

    >>> MathEquivalent()("So the answer is $\\\\boxed{\\\\frac{1}{2}}$.", "0.5").score
    1.0
    """

    def __init__(self, time_limit: float = MATH_TIMEOUT_S):
        if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
            raise ConfigError(f"grader 'math': time_limit must be a positive number of seconds, got {time_limit!r}")
        self.time_limit = float(time_limit)

    def __call__(self, completion: str, answer: Any) -> Grade:
        return _grade_math(completion, answer, self.time_limit)


@rft.grader(name="math", range=(0.0, 1.0))
def math_equivalent(completion: str, answer: Any) -> Grade:
    """The ``math`` grader with the default time limit (:class:`MathEquivalent`), as a function.

    >>> math_equivalent("So the answer is $\\\\boxed{\\\\frac{1}{2}}$.", "0.5").score
    1.0
    >>> math_equivalent("I think it is 3", "4").score
    0.0
    """
    return _grade_math(completion, answer, MATH_TIMEOUT_S)


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
    register(MathEquivalent)
    register(Numeric)
