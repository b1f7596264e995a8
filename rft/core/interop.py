"""Functions written for other frameworks, as graders: the pieces :class:`rft.core.Grader` uses.

* TRL reward functions: :class:`MetricLog` (``log_metric`` inside a grader), :func:`log_extra`
  and :class:`MissingInputError` (``completion_ids`` without a tokenizer).
* reward-kit / Eval Protocol functions: :func:`reward_kit_inputs` (the conversation ending
  with the completion, ``ground_truth``) and :func:`reward_kit_result` (``EvaluateResult``-like
  objects, dicts and ``(score, metrics)`` tuples as a :class:`Grade`, duck-typed).
* reward-function factories such as TRL's ``get_soft_overlong_punishment``: :func:`is_factory`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from rft.core.outcome import Grade, Outcome, is_number
from rft.core.sample import INJECTED_NAMES, REWARD_KIT_NAMES, TRL_NAMES, MissingInputError, Sample

__all__ = ["MetricLog", "MissingInputError", "is_factory", "log_extra", "reward_kit_inputs", "reward_kit_result"]

#: Arguments a function may take from a sample; a plain function taking none of them is a factory.
_SAMPLE_NAMES = INJECTED_NAMES | TRL_NAMES | REWARD_KIT_NAMES


class MetricLog:
    """TRL's ``log_metric(name, value)`` inside a grader: the numbers become sub-metrics of the
    batch's outcomes (rftkit logs them per grader as ``graders/<id>/metrics/<name>``)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def __call__(self, name: str, value: float) -> None:
        if is_number(value) or isinstance(value, bool):
            self.values[str(name)] = float(value)

    def apply(self, outs: list[Outcome]) -> None:
        if self.values:
            for o in outs:
                if o.ok:
                    o.metrics = {**self.values, **o.metrics}


def log_extra(column: str, values: list[Any]) -> None:
    """TRL's ``log_extra`` inside a grader: accepted and not kept (rollouts.jsonl has reasons)."""


def reward_kit_inputs(
    sample: Sample, inputs: Sequence[str], var_kwargs: bool, bound: Mapping[str, Any]
) -> dict[str, Any]:
    """``messages`` (the conversation ending with the completion) and what else a reward-kit
    function takes from the sample: ``ground_truth`` and ``original_messages``."""
    out: dict[str, Any] = {"messages": sample.chat}
    if ("ground_truth" in inputs or var_kwargs) and "ground_truth" not in bound:
        out["ground_truth"] = sample.item.get("ground_truth")
    if "original_messages" in inputs and "original_messages" not in bound:
        original = sample.item.get("messages")
        out["original_messages"] = original if isinstance(original, list) else sample.prompt_messages
    return out


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _metric_score(value: Any) -> Any:
    """A sub-metric's number: a ``MetricResult``-like object's or dict's ``score``, or the value."""
    if is_number(value) or isinstance(value, bool) or value is None:
        return value
    score = _field(value, "score")
    return value if score is None else score


def reward_kit_result(value: Any, *, grader: str = "?") -> Any:
    """What a reward-kit / Eval Protocol function returned, as a :class:`Grade` (duck-typed).

    Accepts an ``EvaluateResult``-like object or dict (``score``, ``reason``, ``metrics`` of
    ``MetricResult``-like objects or dicts with ``score``/``reason``/``success``, ``error``)
    or a ``(score, metrics)`` tuple. Anything else is returned as is (numbers, ``Grade`` …),
    so :func:`coerce_result` judges it.

    Raises:
        ValueError: the result reports an ``error`` (the call is then a ``grader_error``,
            not a score).

    >>> reward_kit_result({"score": 0.5, "reason": "half", "metrics": {"len": {"score": 1.0, "success": True}}})
    Grade(score=0.5, reason='half', metrics={'len': 1.0})
    >>> reward_kit_result((1.0, {"exact": 1.0})).metrics
    {'exact': 1.0}
    """
    if value is None or is_number(value) or isinstance(value, (bool, Grade, Outcome)):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], Mapping):
        score, metrics, reason = value[0], value[1], None
    elif (isinstance(value, Mapping) and "score" in value) or hasattr(value, "score"):
        error = _field(value, "error")
        if error:
            raise ValueError(f"grader {grader!r} reported an error: {error}")
        score, metrics, reason = _field(value, "score"), _field(value, "metrics") or {}, _field(value, "reason")
    else:
        return value
    if not isinstance(metrics, Mapping):
        return value  # not the documented shape: coerce_result names the type
    return Grade(score, str(reason) if reason else None, {str(k): _metric_score(v) for k, v in metrics.items()})


def is_factory(fn: Any, params: Mapping[str, Any]) -> bool:
    """True for an undecorated function that takes nothing from a sample (no sample names, no
    ``**kwargs``): a reward-function factory such as TRL's
    ``get_repetition_penalty_reward(ngram_size=3, max_penalty=-1.0)``.

    Raises:
        TypeError: ``params`` do not fit the factory's parameters (naming them).
    """
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        return False
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    if any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in sig.parameters.values()):
        return False
    if set(sig.parameters) & _SAMPLE_NAMES:
        return False
    try:
        sig.bind(**params)
    except TypeError as err:
        accepted = ", ".join(sig.parameters) or "none"
        raise TypeError(
            f"{getattr(fn, '__name__', fn)!r} takes nothing from a sample, so it is a factory of reward functions "
            f"whose parameters come from the grader-set entry: {err} (parameters: {accepted})"
        ) from None
    return True
