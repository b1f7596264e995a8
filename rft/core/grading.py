"""Graders: the decorator, argument injection, typed outcomes and grader sets.

A grader scores one completion of one dataset row. It is a plain function (or a
picklable callable class) that asks for what it needs by argument name::

    import rft

    @rft.grader
    def exact_answer(completion: str, answer: str) -> float:
        return float(completion.strip() == answer.strip())

Injectable names: ``completion``, ``prompt``, ``messages``, ``item`` (the whole row),
``tool_calls``, ``step``, ``sample`` and any dataset column. A grader returns a number,
a bool, ``None`` (not applicable) or a :class:`Grade`; every call becomes an
:class:`Outcome` whose kind says what happened. Errors never become a silent 0.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import importlib
import inspect
import json
import logging
import math
import numbers
import re
import sys
import time
import traceback as tb
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import ConfigError, GraderError, GraderFailure, did_you_mean
from rft.core.text import shorten

logger = logging.getLogger(__name__)

__all__ = [
    "Grade",
    "Outcome",
    "OutcomeKind",
    "Sample",
    "Grader",
    "GraderEntry",
    "GraderSet",
    "grader",
    "INJECTED_NAMES",
    "coerce_result",
]

#: Argument names filled from the sample rather than from a dataset column.
INJECTED_NAMES = frozenset({"completion", "prompt", "messages", "item", "tool_calls", "step", "sample"})
#: Argument names of TRL-style reward functions ``(prompts, completions, **kwargs)``.
_TRL_NAMES = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"})


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grade:
    """A score with an explanation and named sub-metrics.

    Args:
        score: the score; ``None`` means the grader does not apply to this sample.
        reason: a short human-readable explanation (shown in ``rft grade`` and rollouts).
        metrics: named numbers logged beside the score (e.g. ``{"precision": 0.5}``).

    >>> Grade(1.0, "exact match").score
    1.0
    """

    score: float | None
    reason: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


class OutcomeKind(str, enum.Enum):
    """What happened when a grader was called on one sample."""

    SCORE = "score"
    NOT_APPLICABLE = "not_applicable"
    GRADER_ERROR = "grader_error"  #: the grader raised
    INVALID_OUTPUT = "invalid_output"  #: NaN, inf, wrong type, wrong length, out of range
    TIMEOUT = "timeout"  #: the grader ran past its timeout and was stopped
    INFRASTRUCTURE = "infrastructure"  #: the worker or actor running it died, node lost, endpoint down, …
    JUDGE_UNPARSEABLE = "judge_unparseable"  #: a model judge replied without a readable score or label

    @property
    def is_error(self) -> bool:
        return self not in (OutcomeKind.SCORE, OutcomeKind.NOT_APPLICABLE)

    def __str__(self) -> str:
        return self.value


ERROR_KINDS = tuple(k for k in OutcomeKind if k.is_error)


@dataclass
class Outcome:
    """The typed outcome of one grader on one sample.

    ``score`` is set for :attr:`OutcomeKind.SCORE`; for error kinds it is ``None`` unless
    the grader's ``on_error`` policy supplied a fixed score (``fallback`` is then True).
    ``attempts`` is how many times the sample was sent to a worker: more than 1 when a
    worker or actor it was on died, was killed after a timeout, or its node was lost.
    """

    kind: OutcomeKind
    score: float | None = None
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    attempts: int = 1
    fallback: bool = False

    @property
    def ok(self) -> bool:
        return not self.kind.is_error

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # a flat tuple pickles about twice as fast as a dataclass's state dict, and
        # outcomes cross a process boundary by the thousand
        return _outcome, (
            self.kind.value, self.score, self.reason, self.metrics, self.error,
            self.traceback, self.latency_s, self.cached, self.attempts, self.fallback,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind.value, "score": self.score}
        for key in ("reason", "error", "traceback"):
            if getattr(self, key):
                d[key] = getattr(self, key)
        if self.metrics:
            d["metrics"] = dict(self.metrics)
        d["latency_s"] = round(self.latency_s, 6)
        if self.cached:
            d["cached"] = True
        if self.attempts != 1:
            d["attempts"] = self.attempts
        if self.fallback:
            d["fallback"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Outcome:
        return cls(
            kind=OutcomeKind(d["kind"]),
            score=d.get("score"),
            reason=d.get("reason"),
            metrics=dict(d.get("metrics") or {}),
            error=d.get("error"),
            traceback=d.get("traceback"),
            latency_s=d.get("latency_s", 0.0),
            cached=d.get("cached", False),
            attempts=d.get("attempts", 1),
            fallback=d.get("fallback", False),
        )

    @classmethod
    def failure(cls, kind: OutcomeKind, error: str, traceback: str | None = None, latency_s: float = 0.0) -> Outcome:
        return cls(kind=kind, error=error, traceback=traceback, latency_s=latency_s)


def _outcome(kind: str, *fields: Any) -> Outcome:
    return Outcome(_KINDS[kind], *fields)


_KINDS = {k.value: k for k in OutcomeKind}


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def coerce_result(value: Any, *, grader: str, range: tuple[float, float] | None = None) -> Outcome:
    """Turn what a grader returned into an :class:`Outcome`, validating it.

    >>> coerce_result(True, grader="g").score
    1.0
    >>> coerce_result(float("nan"), grader="g").kind.value
    'invalid_output'
    >>> coerce_result(None, grader="g").kind.value
    'not_applicable'
    """
    reason: str | None = None
    metrics: dict[str, float] = {}
    if isinstance(value, Outcome):  # a batched grader reporting one sample's typed outcome as is
        return value
    if isinstance(value, Grade):
        reason, metrics, value = value.reason, dict(value.metrics or {}), value.score
        bad = [k for k, v in metrics.items() if not _is_number(v) and not isinstance(v, bool)]
        if bad:
            return Outcome.failure(
                OutcomeKind.INVALID_OUTPUT,
                f"grader {grader!r} returned Grade.metrics with non-numeric values for {bad}",
            )
        metrics = {k: float(v) for k, v in metrics.items()}
    if value is None:
        return Outcome(OutcomeKind.NOT_APPLICABLE, reason=reason, metrics=metrics)
    if isinstance(value, bool):
        value = float(value)
    if not _is_number(value):
        try:  # numpy / torch scalars
            import numbers as _n  # noqa: F401

            if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
                value = value.item()
        except Exception as err:  # pragma: no cover - exotic scalar types
            return Outcome.failure(OutcomeKind.INVALID_OUTPUT, f"grader {grader!r} returned {value!r}: {err}")
    if not _is_number(value):
        return Outcome.failure(
            OutcomeKind.INVALID_OUTPUT,
            f"grader {grader!r} returned {type(value).__name__} {shorten(value)}; "
            "expected a number, a bool, None or rft.Grade",
        )
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return Outcome.failure(OutcomeKind.INVALID_OUTPUT, f"grader {grader!r} returned {value}")
    if range is not None and not (range[0] <= value <= range[1]):
        return Outcome.failure(
            OutcomeKind.INVALID_OUTPUT,
            f"grader {grader!r} returned {value}, outside its declared range [{range[0]}, {range[1]}]",
        )
    return Outcome(OutcomeKind.SCORE, score=value, reason=reason, metrics=metrics)


# ---------------------------------------------------------------------------
# samples
# ---------------------------------------------------------------------------


@dataclass
class Sample:
    """One completion of one dataset row, as graders see it.

    Args:
        completion: the model's output text.
        item: the dataset row (its columns are injectable by name).
        prompt: the prompt as text, or as a list of chat messages.
        tool_calls: tool calls made by the completion (OpenAI shape); parsed from the
            completion text when not given.
        step: the training step, when scored during training.
    """

    completion: str
    item: Mapping[str, Any] = field(default_factory=dict)
    prompt: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    step: int | None = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The prompt as chat messages (a text prompt becomes one user message)."""
        if isinstance(self.prompt, list):
            return self.prompt
        if self.prompt is None and isinstance(self.item.get("messages"), list):
            return [m for m in self.item["messages"] if m.get("role") != "assistant"] or self.item["messages"]
        return [{"role": "user", "content": self.prompt or ""}]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return Sample, (self.completion, self.item, self.prompt, self.tool_calls, self.step)

    def get_tool_calls(self) -> list[dict[str, Any]]:
        if self.tool_calls is None:
            from rft.core.parsing import parse_tool_calls

            self.tool_calls = parse_tool_calls(self.completion)
        return self.tool_calls

    def resolve(self, name: str) -> Any:
        """The value injected for argument ``name``; raises KeyError when there is none."""
        if name == "completion":
            return self.completion
        if name == "prompt":
            return self.prompt if self.prompt is not None else self.item.get("prompt", self.messages)
        if name == "messages":
            return self.messages
        if name == "item":
            return self.item
        if name == "tool_calls":
            return self.get_tool_calls()
        if name == "step":
            return self.step
        if name == "sample":
            return self
        return self.item[name]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"completion": self.completion, "item": dict(self.item)}
        if self.prompt is not None:
            d["prompt"] = self.prompt
        if self.tool_calls is not None:
            d["tool_calls"] = self.tool_calls
        if self.step is not None:
            d["step"] = self.step
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Sample:
        return cls(
            completion=d["completion"],
            item=d.get("item") or {},
            prompt=d.get("prompt"),
            tool_calls=d.get("tool_calls"),
            step=d.get("step"),
        )


# ---------------------------------------------------------------------------
# the grader object and the decorator
# ---------------------------------------------------------------------------


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _import_attr(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class Grader:
    """A callable that scores samples, with the metadata rftkit needs to run it.

    Made by :func:`grader`; calling a Grader directly calls the wrapped function, so
    a grader stays an ordinary function in the author's own tests.

    Attributes:
        name: the registered name.
        batched: the function takes lists (one entry per sample) and returns a list.
        inputs: the argument names it asks for, in order.
        optional: the argument names that have defaults.
        is_async: the function is ``async def`` (or ``__call__`` is).
        plugin: the plugin that registered it (set at registration).
        range: declared ``(low, high)`` bounds of the score; values outside are invalid.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        batched: bool = False,
        description: str | None = None,
        range: tuple[float, float] | None = None,
        version: str | None = None,
        plugin: str | None = None,
        bound: Mapping[str, Any] | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"a grader must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.bound: dict[str, Any] = dict(bound or {})
        target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
        self.name = name or getattr(fn, "__name__", None) or _snake(type(fn).__name__)
        doc = description or inspect.getdoc(fn) or (inspect.getdoc(type(fn)) if not inspect.isfunction(fn) else None)
        self.description = (doc or "").strip().splitlines()[0] if doc else ""
        self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(fn)
        self.range = tuple(range) if range is not None else None  # type: ignore[assignment]
        self.plugin = plugin
        self._version = version
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name not in self.bound]
        self.var_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        self.trl_style = "completions" in {p.name for p in named}
        self.batched = batched or self.trl_style
        self.inputs: tuple[str, ...] = tuple(p.name for p in named)
        self.optional: frozenset[str] = frozenset(p.name for p in named if p.default is not p.empty)
        self.defaults: dict[str, Any] = {p.name: p.default for p in named if p.default is not p.empty}
        if self.trl_style and not self.var_kwargs and self.inputs[:2] != ("prompts", "completions"):
            pass  # TRL-style without **kwargs is fine: we only pass what it names

    # -- plain calls --------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**self.bound, **kwargs})

    def __repr__(self) -> str:
        flags = "".join([" batched" if self.batched else "", " async" if self.is_async else ""])
        return f"<Grader {self.name}({', '.join(self.inputs)}){flags}>"

    def __reduce__(self):
        # A module-level decorated function is stored under its own name as this Grader:
        # pickle it by reference so it stays the same object after a round trip.
        fn = self.fn
        module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        if module and qualname and "<locals>" not in qualname:
            mod = sys.modules.get(module)
            anchor = _safe_getattr(mod, qualname) if mod is not None else None
            if anchor is self:
                return (_import_attr, (module, qualname))
            if isinstance(anchor, Grader) and anchor.fn is fn:
                # a copy of a module-level grader (e.g. with bound parameters)
                return (_rebuild_from_anchor, (module, qualname, self._kwargs()))
        return (_rebuild_grader, (self.fn, self._kwargs()))

    def _kwargs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "batched": self.batched and not self.trl_style,
            "description": self.description,
            "range": self.range,
            "version": self._version,
            "plugin": self.plugin,
            "bound": self.bound,
        }

    def bind(self, **params: Any) -> Grader:
        """A copy with some arguments fixed (parameters given in a grader-set file)."""
        unknown = [k for k in params if k not in self.inputs and not self.var_kwargs]
        if unknown:
            raise TypeError(
                f"grader {self.name!r} has no parameter {unknown[0]!r}: "
                f"{did_you_mean(unknown[0], [n for n in self.inputs if n not in INJECTED_NAMES])}"
            )
        injected = [k for k in params if k in INJECTED_NAMES]
        if injected:
            raise TypeError(f"grader {self.name!r}: {injected[0]!r} is filled from the sample and cannot be set")
        kw = self._kwargs()
        kw["bound"] = {**self.bound, **params}
        kw["batched"] = self.batched and not self.trl_style
        return Grader(self.fn, **kw)

    # -- identity -----------------------------------------------------------
    @property
    def version(self) -> str:
        """The grader's version for caching: explicit, else a digest of its source."""
        if self._version:
            return str(self._version)
        try:
            target = self.fn if inspect.isfunction(self.fn) else type(self.fn)
            src = inspect.getsource(target)
        except (OSError, TypeError):
            src = getattr(self.fn, "__qualname__", repr(type(self.fn)))
        return hashlib.sha256(src.encode()).hexdigest()[:12]

    @property
    def identity(self) -> str:
        """A stable key for the result cache: plugin, name, version and parameters."""
        state = self.bound
        if not inspect.isfunction(self.fn):
            state = {**getattr(self.fn, "__dict__", {}), **state}
        try:
            params = json.dumps(state, sort_keys=True, default=repr)
        except (TypeError, ValueError):
            params = repr(state)
        digest = hashlib.sha256(params.encode()).hexdigest()[:12]
        return f"{self.plugin or '?'}/{self.name}@{self.version}#{digest}"

    # -- inputs -------------------------------------------------------------
    def required_columns(self) -> list[str]:
        """Dataset columns this grader needs (names it asks for that are not injected).

        A grader object may add columns it reads through ``item`` (e.g. from an
        OpenAI template ``{{item.answer}}``) with an ``rft_columns`` attribute.
        """
        skip = INJECTED_NAMES | _TRL_NAMES if self.trl_style else INJECTED_NAMES
        cols = [n for n in self.inputs if n not in skip and n not in self.optional]
        extra = getattr(self.fn, "rft_columns", None) or ()
        return cols + [c for c in extra if c not in cols]

    def missing_columns(self, columns: Collection[str]) -> list[str]:
        return [c for c in self.required_columns() if c not in columns]

    def kwargs_for(self, sample: Sample) -> dict[str, Any]:
        """The keyword arguments for one sample (raises KeyError naming a missing input)."""
        kwargs: dict[str, Any] = dict(self.bound)
        for name in self.inputs:
            if name in kwargs:
                continue
            try:
                kwargs[name] = sample.resolve(name)
            except KeyError:
                if name in self.optional:
                    continue
                raise KeyError(
                    f"grader {self.name!r} needs input {name!r}, which the row does not have "
                    f"(columns: {', '.join(sorted(sample.item)) or 'none'})"
                ) from None
        if self.var_kwargs:
            for key, value in sample.item.items():
                kwargs.setdefault(key, value)
        return kwargs

    def batch_kwargs(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Keyword arguments of a batched call: every input becomes a list."""
        if self.trl_style:
            per = {
                "prompts": [s.prompt if s.prompt is not None else s.messages for s in samples],
                "completions": [s.completion for s in samples],
            }
            kwargs: dict[str, Any] = dict(self.bound)
            for name in self.inputs:
                if name in per:
                    kwargs[name] = per[name]
                elif name in _TRL_NAMES or name in kwargs:
                    continue
                elif name in self.optional and not all(name in s.item for s in samples):
                    continue
                else:
                    kwargs[name] = [s.resolve(name) for s in samples]
            if self.var_kwargs:
                columns = set().union(*(s.item.keys() for s in samples)) if samples else set()
                for col in columns:
                    kwargs.setdefault(col, [s.item.get(col) for s in samples])
            return kwargs
        per_sample = [self.kwargs_for(s) for s in samples]
        keys = [k for k in per_sample[0] if k not in self.bound] if per_sample else []
        out: dict[str, Any] = dict(self.bound)
        for k in keys:
            out[k] = [kw[k] for kw in per_sample]
        return out

    # -- running in-process -------------------------------------------------
    def _validate_batch(self, result: Any, n: int) -> list[Outcome] | None:
        if not isinstance(result, (list, tuple)) and not hasattr(result, "tolist"):
            msg = f"batched grader {self.name!r} returned {type(result).__name__}; expected a list of {n} results"
            return [Outcome.failure(OutcomeKind.INVALID_OUTPUT, msg) for _ in range(n)]
        result = list(result.tolist() if hasattr(result, "tolist") else result)
        if len(result) != n:
            msg = f"batched grader {self.name!r} returned {len(result)} results for {n} samples"
            return [Outcome.failure(OutcomeKind.INVALID_OUTPUT, msg) for _ in range(n)]
        return [coerce_result(r, grader=self.name, range=self.range) for r in result]

    def grade(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Score samples in this process, one outcome each; never raises for grader faults.

        No timeout applies here: the scoring engine (``rft.scoring``) adds timeouts,
        retries and worker isolation around this call.
        """
        if self.is_async:
            return _run_coro(self.agrade(samples))
        if self.batched:
            t0 = time.perf_counter()
            try:
                result = self.fn(**self.batch_kwargs(samples))
            except Exception as err:
                return _errors(self.name, err, len(samples), time.perf_counter() - t0)
            outs = self._validate_batch(result, len(samples))
            _spread_latency(outs, time.perf_counter() - t0)
            return outs
        outs = []
        for s in samples:
            t0 = time.perf_counter()
            try:
                value = self.fn(**self.kwargs_for(s))
                out = coerce_result(value, grader=self.name, range=self.range)
            except Exception as err:
                out = _errors(self.name, err, 1, 0.0)[0]
            out.latency_s = time.perf_counter() - t0
            outs.append(out)
        return outs

    async def agrade(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Async form of :meth:`grade`; samples of an async grader run concurrently."""
        if not self.is_async:
            return await asyncio.to_thread(self.grade, samples)
        if self.batched:
            t0 = time.perf_counter()
            try:
                result = await self.fn(**self.batch_kwargs(samples))
            except Exception as err:
                return _errors(self.name, err, len(samples), time.perf_counter() - t0)
            outs = self._validate_batch(result, len(samples))
            _spread_latency(outs, time.perf_counter() - t0)
            return outs

        async def one(s: Sample) -> Outcome:
            t0 = time.perf_counter()
            try:
                value = await self.fn(**self.kwargs_for(s))
                out = coerce_result(value, grader=self.name, range=self.range)
            except Exception as err:
                out = _errors(self.name, err, 1, 0.0)[0]
            out.latency_s = time.perf_counter() - t0
            return out

        return list(await asyncio.gather(*(one(s) for s in samples)))


def _safe_getattr(mod: Any, qualname: str) -> Any:
    obj = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _rebuild_from_anchor(module: str, qualname: str, kwargs: dict[str, Any]) -> Grader:
    return Grader(_import_attr(module, qualname).fn, **kwargs)


def _rebuild_grader(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Grader:
    return Grader(fn, **kwargs)


def _errors(name: str, err: BaseException, n: int, latency: float) -> list[Outcome]:
    text = "".join(tb.format_exception(type(err), err, err.__traceback__))
    msg = f"grader {name!r} raised {type(err).__name__}: {err}"
    kind = OutcomeKind.GRADER_ERROR
    if isinstance(err, GraderFailure):  # the grader chose the kind (endpoint down, unparseable judge reply, …)
        kind = OutcomeKind(err.outcome_kind)
        msg = f"grader {name!r}: {err}"
        text = None  # the message says it all; a stack of the grader's plumbing would bury it
    return [Outcome.failure(kind, msg, text, latency / max(n, 1)) for _ in range(n)]


def _spread_latency(outs: list[Outcome], total: float) -> None:
    for o in outs:
        o.latency_s = total / max(len(outs), 1)


def _run_coro(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # already inside an event loop (e.g. a notebook): run in a helper thread
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def grader(
    fn: Callable[..., Any] | type | None = None,
    *,
    name: str | None = None,
    batched: bool = False,
    description: str | None = None,
    range: tuple[float, float] | None = None,
    version: str | None = None,
) -> Any:
    """Declare a grader. Works bare (``@rft.grader``) and with arguments.

    On a function it returns a :class:`Grader` (still callable as the function). On a
    class it marks the class as a grader factory: its instances are graders, its
    ``__init__`` parameters are set from the grader-set file, and instances must be
    picklable (Ray ships them to workers).

    Args:
        name: registered name (default: the function name, or the class name in snake_case).
        batched: the grader takes lists of inputs and returns a list of results.
        description: one-line doc (default: first line of the docstring).
        range: declared ``(low, high)``; scores outside it are ``invalid_output``.
        version: bump to invalidate cached results (default: a digest of the source).

    >>> @grader
    ... def exact(completion: str, answer: str) -> float:
    ...     return float(completion == answer)
    >>> exact("4", "4"), exact.inputs
    (1.0, ('completion', 'answer'))
    """

    def wrap(obj: Any) -> Any:
        if isinstance(obj, type):
            obj.__rft_grader__ = {
                "name": name or _snake(obj.__name__),
                "batched": batched,
                "description": description,
                "range": range,
                "version": version,
            }
            return obj
        if isinstance(obj, Grader):
            return obj
        return Grader(obj, name=name, batched=batched, description=description, range=range, version=version)

    if fn is not None:
        return wrap(fn)
    return wrap


def as_grader(
    obj: Any, *, name: str | None = None, plugin: str | None = None, params: Mapping[str, Any] | None = None
) -> Grader:
    """Make a :class:`Grader` from a Grader, a decorated class (instantiated with
    ``params``), an instance of a decorated class, or a plain callable (a TRL-style
    reward function or an undecorated function)."""
    params = dict(params or {})
    if isinstance(obj, Grader):
        g = obj.bind(**params) if params else obj
        if plugin and not g.plugin:
            g.plugin = plugin
        if name and name != g.name:
            g = Grader(g.fn, **{**g._kwargs(), "name": name})
        return g
    if isinstance(obj, type):
        meta = getattr(obj, "__rft_grader__", {"name": _snake(obj.__name__)})
        try:
            inspect.signature(obj).bind(**params)
        except TypeError as err:
            accepted = [p for p in inspect.signature(obj).parameters if p != "self"]
            bad = [k for k in params if k not in accepted]
            hint = did_you_mean(bad[0], accepted) if bad else f"parameters: {', '.join(accepted)}"
            raise TypeError(f"grader {meta['name']!r}: {err} ({hint})") from None
        instance = obj(**params)
        return Grader(instance, **{**meta, "name": name or meta["name"], "plugin": plugin})
    meta = getattr(type(obj), "__rft_grader__", None)
    if meta is not None:
        return (
            Grader(obj, **{**meta, "name": name or meta["name"], "plugin": plugin}).bind(**params)
            if params
            else Grader(obj, **{**meta, "name": name or meta["name"], "plugin": plugin})
        )
    if callable(obj):
        g = Grader(obj, name=name, plugin=plugin)
        return g.bind(**params) if params else g
    raise TypeError(f"cannot make a grader from {type(obj).__name__}")


# ---------------------------------------------------------------------------
# grader sets
# ---------------------------------------------------------------------------

_ENTRY_KEYS = ("id", "weight", "timeout", "on_error", "retries", "range")


@dataclass
class GraderEntry:
    """A grader in a set, with how it is weighted and run.

    Attributes:
        id: the name it is logged under and referenced by in a formula.
        weight: its weight in the reward; 0 logs it without training on it.
        timeout: seconds before a call is stopped and recorded as a timeout.
        on_error: ``"fail"`` (count as an error), ``"skip"`` (not applicable) or a fixed score.
        retries: how often infrastructure errors are retried.
    """

    id: str
    grader: Grader
    weight: float = 1.0
    timeout: float | None = None
    on_error: str | float = "fail"
    retries: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.on_error, str) and self.on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail', 'skip' or a number, got {self.on_error!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    def apply_policy(self, outcome: Outcome) -> Outcome:
        """Apply ``on_error`` to an error outcome (the error itself stays recorded)."""
        if outcome.ok or self.on_error == "fail":
            return outcome
        if self.on_error == "skip":
            outcome.score = None
        else:
            outcome.score = float(self.on_error)
        outcome.fallback = True
        return outcome


class GraderSet:
    """Graders with weights, an optional formula, and per-grader metrics.

    Args:
        entries: the graders (``GraderEntry`` or plain graders, weight 1).
        formula: optional expression over grader ids combining their scores, evaluated
            safely (simpleeval), e.g. ``"0.7 * correct + 0.3 * format"``.
        spec: the config it was built from, so workers can rebuild it (set by loaders).
    """

    def __init__(
        self,
        entries: Iterable[GraderEntry | Grader | Callable[..., Any]],
        formula: str | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
    ):
        self.entries: list[GraderEntry] = []
        for e in entries:
            if not isinstance(e, GraderEntry):
                g = as_grader(e)
                e = GraderEntry(id=g.name, grader=g)
            self.entries.append(e)
        ids = [e.id for e in self.entries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"grader id {dupes[0]!r} is used twice; give one of them an `id:`")
        if not self.entries:
            raise ConfigError("a grader set needs at least one grader")
        self.formula = formula
        self.spec = dict(spec) if spec is not None else None
        if formula:
            self._check_formula(formula)

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: str) -> GraderEntry:
        for e in self.entries:
            if e.id == key:
                return e
        raise KeyError(f"no grader {key!r} in this set: {did_you_mean(key, self.ids)}")

    def __repr__(self) -> str:
        return f"GraderSet({', '.join(f'{e.id}×{e.weight:g}' for e in self.entries)})"

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    @property
    def weights(self) -> list[float]:
        return [e.weight for e in self.entries]

    def check_inputs(self, columns: Collection[str], *, source: str | None = None) -> None:
        """Fail now, not at step 100, when a grader asks for a column the data lacks."""
        for e in self.entries:
            missing = e.grader.missing_columns(columns)
            if missing:
                where = f" in {source}" if source else ""
                raise ConfigError(
                    f"grader {e.id!r} needs column {missing[0]!r}, which the data{where} does not have "
                    f"(columns: {', '.join(sorted(columns)) or 'none'}); {did_you_mean(missing[0], columns)}",
                    key=f"graders.{e.id}",
                )

    def _check_formula(self, formula: str) -> None:
        try:
            self.combine({i: 0.5 for i in self.ids}, _raise=True)
        except Exception as err:
            raise ConfigError(
                f"formula {formula!r} is invalid: {err} (names available: {', '.join(self.ids)})", key="formula"
            ) from err

    def combine(self, scores: Mapping[str, float | None], *, _raise: bool = False) -> float | None:
        """The reward for one sample from its per-grader scores.

        Without a formula: the weighted sum of the scores that apply (None is skipped,
        like TRL's nansum); None when none applies. With a formula: its value, or None
        when a score it uses is None.

        >>> gs = GraderSet([grader(lambda completion: 1.0, name="a")])
        >>> gs.combine({"a": 0.5})
        0.5
        """
        if self.formula:
            from rft.core.formula import evaluate_formula

            if any(v is None for v in scores.values()) and not _raise:
                return None
            if _raise:
                return evaluate_formula(self.formula, scores)
            try:
                return evaluate_formula(self.formula, scores)
            except (ArithmeticError, TypeError, ValueError) as err:  # e.g. a division by a zero score
                logger.warning("formula %r failed on scores %s: %s; reward is None", self.formula, dict(scores), err)
                return None
        total, seen = 0.0, False
        for e in self.entries:
            s = scores.get(e.id)
            if s is None or e.weight == 0:
                continue
            total += e.weight * s
            seen = True
        return total if seen else None

    # -- loading ------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, *, plugins: Sequence[str] = (), pm: Any = None) -> GraderSet:
        """Load a grader-set file (YAML or JSON): a ``graders:`` list, or one OpenAI grader object."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"cannot read grader-set file: {err.strerror}", file=str(path)) from err
        cfg = load_yaml_or_json(text, str(path))
        return cls.from_config(cfg, file=str(path), base_dir=path.parent, plugins=plugins, pm=pm)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        *,
        file: str | None = None,
        base_dir: str | Path | None = None,
        plugins: Sequence[str] = (),
        pm: Any = None,
        key_prefix: str = "",
    ) -> GraderSet:
        """Build a set from a parsed config (the ``graders:`` mapping of a run config or a file)."""
        from rft.plugins import get_plugin_manager, get_registry, resolve_plugin_paths

        if isinstance(cfg, list):
            cfg = {"graders": cfg}
        if not isinstance(cfg, Mapping):
            raise ConfigError("expected a mapping with a `graders:` list", file=file, key=key_prefix or None)
        if "type" in cfg and "graders" not in cfg or (cfg.get("type") == "multi"):
            cfg = {"graders": [dict(cfg)]}  # one OpenAI grader object, as is
        unknown = [k for k in cfg if k not in ("graders", "formula", "calculate_output", "plugins")]
        if unknown:
            raise ConfigError(
                f"unknown key {unknown[0]!r}; {did_you_mean(unknown[0], ['graders', 'formula', 'plugins'])}",
                file=file,
                key=f"{key_prefix}{unknown[0]}",
            )
        items = cfg.get("graders")
        if not isinstance(items, list) or not items:
            raise ConfigError("`graders` must be a non-empty list", file=file, key=f"{key_prefix}graders")
        plugin_refs = list(plugins) + resolve_plugin_paths(cfg.get("plugins") or [], base_dir)
        if pm is None:
            pm = get_plugin_manager(plugin_refs)
        registry = get_registry(pm)
        entries = [
            build_entry(item, registry, file=file, key=f"{key_prefix}graders[{i}]") for i, item in enumerate(items)
        ]
        formula = cfg.get("formula") or cfg.get("calculate_output")
        spec = {"graders": items, "plugins": plugin_refs}
        if formula:
            spec["formula"] = formula
        try:
            return cls(entries, formula, spec=spec)
        except ConfigError as err:
            raise ConfigError(str(err), file=file, key=f"{key_prefix}{err.key or 'graders'}") from err

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> GraderSet:
        """Rebuild a set in another process from :attr:`spec` (plugins are loaded there)."""
        return cls.from_config(dict(spec), plugins=())


def build_entry(item: Any, registry: Any, *, file: str | None = None, key: str = "graders[?]") -> GraderEntry:
    """Build one :class:`GraderEntry` from a grader-set entry.

    An entry is a registered grader (``name:`` plus parameters) or an OpenAI grader
    object (``type:`` plus its fields, with ``name`` as its id). ``weight``, ``timeout``,
    ``on_error``, ``retries``, ``range`` and ``id`` are common to both.
    """
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise ConfigError(f"a grader entry must be a mapping or a name, got {type(item).__name__}", file=file, key=key)
    item = dict(item)
    common = {k: item.pop(k) for k in _ENTRY_KEYS if k in item}
    if "type" in item:
        gname = item.pop("type")
        gid = common.get("id") or item.get("name") or gname
        params = item  # OpenAI objects keep their own `name` field; factories accept it
    elif "name" in item:
        gname = item.pop("name")
        gid = common.get("id") or gname
        params = item
    else:
        raise ConfigError(
            "a grader entry needs `name:` (a registered grader) or `type:` (an OpenAI grader)", file=file, key=key
        )
    try:
        registered = registry.get(gname)
    except KeyError as err:
        raise ConfigError(str(err), file=file, key=f"{key}.{'name' if 'type' not in item else 'type'}") from None
    if "range" in common and registered.is_factory and "range" in registered.params:
        params = {**params, "range": common["range"]}  # the factory uses it too (e.g. score_model)
    try:
        g = registered.make(params)
    except (TypeError, ValueError, ConfigError) as err:
        raise ConfigError(str(err), file=file, key=key) from err
    if "range" in common:
        r = common["range"]
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(_is_number(x) for x in r)):
            raise ConfigError(f"`range` must be [low, high], got {r!r}", file=file, key=f"{key}.range")
        g.range = (float(r[0]), float(r[1]))
    weight = common.get("weight", 1.0)
    if not _is_number(weight):
        raise ConfigError(f"`weight` must be a number, got {weight!r}", file=file, key=f"{key}.weight")
    timeout = common.get("timeout")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ConfigError(
            f"`timeout` must be a positive number of seconds, got {timeout!r}", file=file, key=f"{key}.timeout"
        )
    on_error = common.get("on_error", "fail")
    if not (on_error in ("fail", "skip") or _is_number(on_error)):
        raise ConfigError(
            f"`on_error` must be 'fail', 'skip' or a number, got {on_error!r}", file=file, key=f"{key}.on_error"
        )
    retries = common.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"`retries` must be a non-negative integer, got {retries!r}", file=file, key=f"{key}.retries")
    return GraderEntry(id=str(gid), grader=g, weight=float(weight), timeout=timeout, on_error=on_error, retries=retries)


def load_yaml_or_json(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON), naming the file and line on error."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source}{line}: invalid YAML/JSON: {problem}") from err


def raise_for_errors(
    grader_set: GraderSet, outcomes: Sequence[Mapping[str, Outcome]], samples: Sequence[Sample]
) -> None:
    """Raise :class:`GraderError` for the first error outcome (used by strict callers)."""
    for i, per in enumerate(outcomes):
        for gid, out in per.items():
            if out.kind.is_error:
                entry = grader_set[gid]
                raise GraderError(
                    f"{out.error} (sample {i})",
                    grader=gid,
                    plugin=entry.grader.plugin,
                    kind=out.kind.value,
                    sample_index=i,
                    sample=samples[i].to_dict() if i < len(samples) else None,
                    traceback=out.traceback,
                )
