"""The grader object: the `@grader` decorator, argument injection and running in-process.

A grader scores one completion of one dataset row. It is a plain function (or a
picklable callable class) that asks for what it needs by argument name::

    import rft

    @rft.grader
    def exact_answer(completion: str, answer: str) -> float:
        return float(completion.strip() == answer.strip())

Injectable names: ``completion``, ``prompt``, ``messages`` (the whole conversation),
``item`` (the whole row), ``tool_calls`` (all of them, in order), ``step``, ``sample``,
``state`` and ``episode`` (of a multi-turn rollout) and any dataset column. A grader returns a number,
a bool, ``None`` (not applicable) or a :class:`Grade`; every call becomes an
:class:`Outcome` whose kind says what happened. Errors never become a silent 0.

A **group grader** (``@rft.grader(group=True)``) scores all completions of one prompt
together — a relative judge, a majority vote, a diversity bonus. It is called once per
group like a batched grader: every argument is a list with one entry per completion of
the group (``completion`` is the group's completions, ``prompt`` the prompt repeated), and
it returns one result per completion, in order. A result of the wrong length or type is an
``invalid_output`` outcome for every completion of the group, never 0. The executors never
split a group across shards or workers; which samples form a group is decided by the
caller (:meth:`rft.scoring.Executor.score`'s ``groups``; by default identical prompts)::

    @rft.grader(group=True)
    def majority(completion: list[str]) -> list[float]:
        votes = Counter(c.strip() for c in completion)
        top = votes.most_common(1)[0][0]
        return [float(c.strip() == top) for c in completion]

Functions written for other frameworks run unchanged:

* TRL reward functions (they ask for ``prompts``, ``completions`` or ``completion_ids``)
  get what ``GRPOTrainer`` passes: prompts and completions in the row's format (chat
  messages for conversational rows, text for standard ones), ``completion_ids``, the
  dataset columns as lists, ``trainer_state`` (None outside training) and
  ``log_extra``/``log_metric`` (numbers given to ``log_metric`` become sub-metrics of
  the batch's outcomes; ``log_extra`` columns are not kept).
* reward-kit / Eval Protocol functions ``(messages, ground_truth=None, **kwargs)`` get the
  conversation with the completion as its last (assistant) message and the row's
  ``ground_truth``; they may return ``EvaluateResult``-like objects, dicts or
  ``(score, metrics)`` tuples (duck-typed), whose metrics become the grade's sub-metrics.
* an undecorated function that takes nothing from the sample, like TRL's
  ``get_soft_overlong_punishment(max_completion_len, soft_punish_cache)``, is a factory:
  :func:`as_grader` calls it with the grader-set entry's parameters and grades with the
  reward function it returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import json
import sys
import time
import traceback as tb
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from rft.core.errors import GraderFailure, did_you_mean
from rft.core.interop import MetricLog, MissingInputError, is_factory, log_extra, reward_kit_inputs, reward_kit_result
from rft.core.outcome import Outcome, OutcomeKind, coerce_result
from rft.core.sample import INJECTED_NAMES, REWARD_KIT_NAMES, TRL_NAMES, Sample
from rft.core.text import snake_case

__all__ = ["Grader", "as_grader", "grader"]

#: Arguments whose presence makes a function a TRL reward function (called with lists).
_TRL_MARKERS = frozenset({"prompts", "completions", "completion_ids"})
#: Dataset columns GRPOTrainer does not pass to reward functions as columns.
_TRL_RESERVED = frozenset({"prompt", "completion", "completion_ids"})


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
        group: the function scores the completions of one prompt together (one call per
            group, as a batched call); implies ``batched``.
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
        group: bool = False,
    ):
        if not callable(fn):
            raise TypeError(f"a grader must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.bound: dict[str, Any] = dict(bound or {})
        target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) else type(fn).__call__
        self.name = name or getattr(fn, "__name__", None) or snake_case(type(fn).__name__)
        doc = description or inspect.getdoc(fn) or (inspect.getdoc(type(fn)) if not inspect.isfunction(fn) else None)
        self.description = (doc or "").strip().splitlines()[0] if doc else ""
        self.is_async = inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(fn)
        self.range: tuple[float, float] | None = (float(range[0]), float(range[1])) if range is not None else None
        self.plugin = plugin
        self._version = version
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name not in self.bound]
        self.var_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        names = {p.name for p in named}
        #: a TRL reward function: called with lists, as GRPOTrainer calls it
        self.trl_style = bool(names & _TRL_MARKERS)
        #: a reward-kit / Eval Protocol function ``(messages, ground_truth=None, **kwargs)``
        self.reward_kit_style = (
            not self.trl_style
            and bool(named)
            and named[0].name == "messages"
            and "completion" not in names
            and ("ground_truth" in names or "original_messages" in names or self.var_kwargs)
        )
        #: scores all completions of one prompt in one call (see the module docstring)
        self.group = bool(group)
        self.batched = batched or self.trl_style or self.group
        self.inputs: tuple[str, ...] = tuple(p.name for p in named)
        self.optional: frozenset[str] = frozenset(p.name for p in named if p.default is not p.empty)
        self.defaults: dict[str, Any] = {p.name: p.default for p in named if p.default is not p.empty}

    # -- plain calls --------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**self.bound, **kwargs})

    def __repr__(self) -> str:
        flags = "".join(
            [" group" if self.group else " batched" if self.batched else "", " async" if self.is_async else ""]
        )
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
            "batched": self.batched and not self.trl_style and not self.group,
            "group": self.group,
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
        skip = INJECTED_NAMES | TRL_NAMES if self.trl_style else INJECTED_NAMES
        if self.reward_kit_style:
            skip = skip | REWARD_KIT_NAMES
        cols = [n for n in self.inputs if n not in skip and n not in self.optional]
        extra = getattr(self.fn, "rft_columns", None) or ()
        return cols + [c for c in extra if c not in cols]

    def missing_columns(self, columns: Collection[str]) -> list[str]:
        return [c for c in self.required_columns() if c not in columns]

    def kwargs_for(self, sample: Sample) -> dict[str, Any]:
        """The keyword arguments for one sample (raises KeyError naming a missing input)."""
        kwargs: dict[str, Any] = dict(self.bound)
        if self.reward_kit_style:
            kwargs.update(reward_kit_inputs(sample, self.inputs, self.var_kwargs, self.bound))
        for name in self.inputs:
            if name in kwargs:
                continue
            try:
                kwargs[name] = sample.resolve(name)
            except KeyError as err:
                if name in self.optional:
                    continue
                if isinstance(err, MissingInputError):  # an injected name this sample has no value for
                    raise MissingInputError(f"grader {self.name!r} needs input {name!r}: {err}") from None
                raise KeyError(
                    f"grader {self.name!r} needs input {name!r}, which the row does not have "
                    f"(columns: {', '.join(sorted(sample.item)) or 'none'})"
                ) from None
        if self.var_kwargs:
            for key, value in sample.item.items():
                kwargs.setdefault(key, value)
        return kwargs

    def batch_kwargs(self, samples: Sequence[Sample]) -> dict[str, Any]:
        """Keyword arguments of a batched call: every input becomes a list.

        Raises:
            KeyError: an input is missing (naming it), e.g. ``completion_ids`` of samples
                scored without a tokenizer.
        """
        if self.trl_style:
            return self._trl_kwargs(samples, MetricLog())
        per_sample = [self.kwargs_for(s) for s in samples]
        keys = [k for k in per_sample[0] if k not in self.bound] if per_sample else []
        out: dict[str, Any] = dict(self.bound)
        for k in keys:
            out[k] = [kw[k] for kw in per_sample]
        return out

    def _wants(self, name: str) -> bool:
        return name in self.inputs or self.var_kwargs

    def _trl_kwargs(self, samples: Sequence[Sample], log: MetricLog) -> dict[str, Any]:
        """What GRPOTrainer passes a reward function, for the arguments this one accepts."""
        kwargs: dict[str, Any] = dict(self.bound)
        if self._wants("prompts"):
            kwargs.setdefault("prompts", [s.trl_prompt for s in samples])
        if self._wants("completions"):
            kwargs.setdefault("completions", [s.trl_completion for s in samples])
        have_ids = all(s.completion_ids is not None for s in samples)
        if "completion_ids" in self.inputs and "completion_ids" not in kwargs and not have_ids:
            raise MissingInputError(
                "it asks for completion_ids (the token ids of each completion), which these samples lack: they come from the run's tokenizer (in `rft grade`: --tokenizer or --model, "
                "or a run config's model; in saved completions: a `completion_ids` field)"
            )
        if self._wants("completion_ids") and have_ids:
            kwargs.setdefault("completion_ids", [list(s.completion_ids or ()) for s in samples])
        if self._wants("trainer_state"):
            kwargs.setdefault("trainer_state", samples[0].trainer_state if samples else None)
        if self._wants("log_extra"):
            kwargs.setdefault("log_extra", log_extra)
        if self._wants("log_metric"):
            kwargs.setdefault("log_metric", log)
        for name in self.inputs:
            if name in kwargs or name in TRL_NAMES:
                continue
            if name in self.optional and not all(name in s.item for s in samples):
                continue
            kwargs[name] = [s.resolve(name) for s in samples]
        if self.var_kwargs:  # every dataset column, as lists, less the ones TRL passes itself
            columns: dict[str, None] = {}
            for s in samples:
                columns.update(dict.fromkeys(k for k in s.item if k not in _TRL_RESERVED))
            for col in columns:
                kwargs.setdefault(col, [s.item.get(col) for s in samples])
        return kwargs

    def call_inputs(self, sample: Sample) -> dict[str, Any]:
        """The inputs this grader receives for one sample, for the result cache.

        Bound parameters are left out; ``trainer_state`` is represented by the step (when
        the function names it) and ``item`` stands for the columns a ``**kwargs`` function
        receives.
        """
        if self.trl_style:
            out: dict[str, Any] = {"prompt": sample.trl_prompt, "completion": sample.trl_completion}
            # keyed on what the function names; one reading them only through **kwargs should name them
            if "completion_ids" in self.inputs:
                out["completion_ids"] = sample.completion_ids
            if "trainer_state" in self.inputs:
                out["step"] = sample.step
            names = [n for n in self.inputs if n not in self.bound and n not in TRL_NAMES]
        elif self.reward_kit_style:
            out = {"messages": sample.chat, "tool_calls": sample.tool_calls}
            names = [n for n in self.inputs if n not in self.bound and n != "messages"]
        else:
            out, names = {}, [n for n in self.inputs if n not in self.bound]
        for name in names:
            if name in ("ground_truth", "original_messages") and self.reward_kit_style:
                out[name] = sample.item.get(name)
                continue
            try:
                out[name] = sample.resolve(name)
            except KeyError:
                continue
        if self.var_kwargs:
            out["item"] = sample.item
        return out

    # -- running in-process -------------------------------------------------
    def _validate_batch(self, result: Any, n: int) -> list[Outcome]:
        what, unit = (
            ("group grader", f"the {n} completions of the group") if self.group else ("batched grader", f"{n} samples")
        )
        if not isinstance(result, (list, tuple)) and not hasattr(result, "tolist"):
            msg = (
                f"{what} {self.name!r} returned {type(result).__name__}; expected a list with one result for each of "
                f"{unit}"
            )
            return [Outcome.failure(OutcomeKind.INVALID_OUTPUT, msg) for _ in range(n)]
        result = list(result.tolist() if hasattr(result, "tolist") else result)
        if len(result) != n:
            msg = f"{what} {self.name!r} returned {len(result)} results for {unit}; return one per completion, in order"
            return [Outcome.failure(OutcomeKind.INVALID_OUTPUT, msg) for _ in range(n)]
        return [self._coerce(r) for r in result]

    def _coerce(self, value: Any) -> Outcome:
        if self.reward_kit_style:
            try:
                value = reward_kit_result(value, grader=self.name)
            except ValueError as err:
                return Outcome.failure(OutcomeKind.GRADER_ERROR, str(err))
        return coerce_result(value, grader=self.name, range=self.range)

    def _batch_call_kwargs(self, samples: Sequence[Sample], log: MetricLog) -> dict[str, Any]:
        return self._trl_kwargs(samples, log) if self.trl_style else self.batch_kwargs(samples)

    def grade(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Score samples in this process, one outcome each; never raises for grader faults.

        No timeout applies here: the scoring engine (``rft.scoring``) adds timeouts,
        retries and worker isolation around this call. A group grader treats ``samples``
        as one group (the executors call it once per group).
        """
        if self.is_async:
            return _run_coro(self.agrade(samples))
        if self.batched:
            t0 = time.perf_counter()
            log = MetricLog()
            try:
                result = self.fn(**self._batch_call_kwargs(samples, log))
            except Exception as err:
                return _errors(self.name, err, len(samples), time.perf_counter() - t0)
            return self._batch_outcomes(result, len(samples), log, t0)
        outs = []
        for s in samples:
            t0 = time.perf_counter()
            try:
                value = self.fn(**self.kwargs_for(s))
                out = self._coerce(value)
            except Exception as err:
                out = _errors(self.name, err, 1, 0.0)[0]
            out.latency_s = time.perf_counter() - t0
            outs.append(out)
        return outs

    def _batch_outcomes(self, result: Any, n: int, log: MetricLog, t0: float) -> list[Outcome]:
        """Outcomes of one batched (or group) call: validated, with logged metrics and shared latency."""
        outs = self._validate_batch(result, n)
        log.apply(outs)
        _spread_latency(outs, time.perf_counter() - t0)
        return outs

    async def agrade(self, samples: Sequence[Sample]) -> list[Outcome]:
        """Async form of :meth:`grade`; samples of an async grader run concurrently."""
        if not self.is_async:
            return await asyncio.to_thread(self.grade, samples)
        if self.batched:
            t0 = time.perf_counter()
            log = MetricLog()
            try:
                result = await self.fn(**self._batch_call_kwargs(samples, log))
            except Exception as err:
                return _errors(self.name, err, len(samples), time.perf_counter() - t0)
            return self._batch_outcomes(result, len(samples), log, t0)

        async def one(s: Sample) -> Outcome:
            t0 = time.perf_counter()
            try:
                value = await self.fn(**self.kwargs_for(s))
                out = self._coerce(value)
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
    text: str | None = "".join(tb.format_exception(type(err), err, err.__traceback__))
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
    group: bool = False,
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
        group: a group grader: called once with all completions of one prompt (every
            argument a list, one entry per completion), returns one result per completion.

    >>> @grader
    ... def exact(completion: str, answer: str) -> float:
    ...     return float(completion == answer)
    >>> exact("4", "4"), exact.inputs
    (1.0, ('completion', 'answer'))
    """

    def wrap(obj: Any) -> Any:
        if isinstance(obj, type):
            obj.__rft_grader__ = {  # type: ignore[attr-defined]
                "name": name or snake_case(obj.__name__),
                "batched": batched,
                "description": description,
                "range": range,
                "version": version,
                "group": group,
            }
            return obj
        if isinstance(obj, Grader):
            return obj
        return Grader(
            obj, name=name, batched=batched, description=description, range=range, version=version, group=group
        )

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
        meta = getattr(obj, "__rft_grader__", {"name": snake_case(obj.__name__)})
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
        if is_factory(obj, params):
            made = obj(**params)
            if not callable(made):
                raise TypeError(
                    f"{getattr(obj, '__name__', obj)!r} takes nothing from a sample, so it is used as a factory "
                    f"of reward functions, but it returned {type(made).__name__}, which is not callable"
                )
            return as_grader(made, name=name or getattr(obj, "__name__", None), plugin=plugin)
        g = Grader(obj, name=name, plugin=plugin)
        return g.bind(**params) if params else g
    raise TypeError(f"cannot make a grader from {type(obj).__name__}")
