"""The ``tool_call`` grader: function calls against a reference, at BFCL's level.

A reference lists the expected calls in OpenAI's shape (one value per argument) or in
BFCL's ``possible_answer`` shape ``{"func": {"arg": [allowed, …]}}`` (several allowed
values per argument, ``""`` among them for an argument that may be omitted); a whole
BFCL entry ``{"id": …, "ground_truth": [...]}`` is taken as is. The tools a row offers
may be OpenAI tools or BFCL's function descriptions (their ``dict``/``float``/``tuple``/
``any`` types are read as JSON Schema's ``object``/``number``/``array``/any).

``benchmarks/bfcl_agreement.py`` compares the verdicts with BFCL's own ``ast_checker``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rft
from rft.core import Grade
from rft.core.errors import ConfigError
from rft.core.parsing import bfcl_call, normalize_tool_call, reference_tool_calls
from rft.core.text import shorten

__all__ = ["ToolCall", "bfcl_standardize"]

_BFCL_PUNCTUATION = re.compile(r"[ \,\.\/\-\_\*\^]")


def bfcl_standardize(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, ``'`` → ``"``.

    >>> bfcl_standardize("April 1, 2024") == bfcl_standardize("april 1 2024")
    True
    """
    return _BFCL_PUNCTUATION.sub("", text).lower().replace("'", '"')


_STRINGS: dict[str, Callable[[str], str]] = {"strip": str.strip, "exact": lambda s: s, "bfcl": bfcl_standardize}
_EXTRA = ("reject", "allow")
_MATCH = ("all", "any")
#: BFCL's parameter types that are not JSON Schema's, and what they mean there.
_BFCL_TYPES: dict[str, str | None] = {"dict": "object", "float": "number", "tuple": "array", "any": None}


@dataclass(frozen=True)
class _Expected:
    """One expected call: the allowed values of each argument, and which may be omitted."""

    name: str
    args: dict[str, tuple[Any, ...]]
    optional: frozenset[str] = frozenset()
    bfcl: bool = False  # BFCL's shape: a dict among the allowed values is a pattern of allowed values


@dataclass
class _Pair:
    """How one made call compares with one expected call."""

    name: bool
    schema: bool
    arguments: float
    problem: str = ""

    @property
    def perfect(self) -> bool:
        return self.name and self.schema and self.arguments == 1

    def score(self, partial: bool) -> float:
        if partial:
            return (float(self.name) + float(self.schema) + self.arguments) / 3
        return float(self.perfect)


def _expected_calls(value: Any, column: str) -> list[_Expected]:
    try:
        items = reference_tool_calls(value)
    except ValueError as err:
        raise ValueError(f"column {column!r} is not valid JSON: {err}") from err
    out = []
    for i, item in enumerate(items):
        bfcl = bfcl_call(item)
        if bfcl is not None:
            name, allowed = bfcl
            args = {k: tuple(v) for k, v in allowed.items()}
            optional = frozenset(k for k, v in allowed.items() if "" in v)
            out.append(_Expected(name, args, optional, bfcl=True))
            continue
        call = normalize_tool_call(item)
        if call is None:
            raise ValueError(
                f"column {column!r}[{i}] is not a tool call: give {{'name', 'arguments'}}, OpenAI's "
                f"{{'type': 'function', 'function': {{...}}}} or BFCL's {{'func': {{'arg': [allowed, ...]}}}}; "
                f"got {shorten(item)}"
            )
        fn = call["function"]
        ref_args = fn.get("arguments") or {}
        if not isinstance(ref_args, Mapping):
            raise ValueError(f"column {column!r}[{i}]: the arguments must be an object, got {shorten(ref_args)}")
        out.append(_Expected(str(fn["name"]), {k: (v,) for k, v in ref_args.items()}))
    return out


def _to_json_schema(schema: Any) -> Any:
    """BFCL's parameter types read as JSON Schema (``dict`` → ``object`` …), recursively."""
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: _to_json_schema(v) for k, v in schema.items() if k != "type"}
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _BFCL_TYPES:
        mapped = _BFCL_TYPES[kind]
        if mapped is not None:
            out["type"] = mapped
    elif "type" in schema:
        out["type"] = kind
    if isinstance(schema.get("properties"), Mapping):  # property names are not schemas
        out["properties"] = {k: _to_json_schema(v) for k, v in schema["properties"].items()}
    return out


def _tool_schemas(tools: Any, column: str) -> dict[str, Any]:
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError as err:
            raise ValueError(f"column {column!r} is not valid JSON: {err}") from err
    if isinstance(tools, Mapping):  # one BFCL function description
        tools = [tools]
    out: dict[str, Any] = {}
    for i, t in enumerate(tools or []):
        fn = t.get("function", t) if isinstance(t, Mapping) else None
        if not isinstance(fn, Mapping) or "name" not in fn:
            raise ValueError(
                f"column {column!r}[{i}] is not a tool: give OpenAI's "
                "{'type': 'function', 'function': {'name', 'parameters'}} or BFCL's {'name', 'parameters'}"
            )
        out[fn["name"]] = _to_json_schema(fn.get("parameters") or {"type": "object"})
    return out


_validators: dict[type, type] = {}
_validators_lock = threading.Lock()


def _strict_validator(schema: Any) -> Any:
    """A validator for ``schema`` whose ``integer`` is an int (not 5.0, not a bool), as a call site sees it."""
    from jsonschema import validators

    cls = validators.validator_for(schema)
    with _validators_lock:
        if cls not in _validators:
            checker = cls.TYPE_CHECKER.redefine(
                "integer", lambda _checker, x: isinstance(x, int) and not isinstance(x, bool)
            )
            _validators[cls] = validators.extend(cls, type_checker=checker)
        return _validators[cls](schema)


def _where(error: Any) -> str:
    return str(error.json_path) if hasattr(error, "json_path") else "$" + "".join(f"[{p!r}]" for p in error.path)


def _same(a: Any, b: Any, norm: Callable[[str], str]) -> bool:
    """Values equal as arguments: numbers by value, a bool only a bool, strings through ``norm``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return norm(a) == norm(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k], norm) for k in a)
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str) and not isinstance(b, str):
        return len(a) == len(b) and all(_same(x, y, norm) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _fits_pattern(value: Any, pattern: Mapping[str, Any], norm: Callable[[str], str]) -> bool:
    """A dict against BFCL's dict pattern: each key's value among its allowed ones, ``""`` = may be omitted."""
    if not isinstance(value, Mapping) or any(k not in pattern for k in value):
        return False
    for key, allowed in pattern.items():
        options = allowed if isinstance(allowed, list) else [allowed]
        if key not in value:
            if "" not in options:
                return False
        elif not any(_same(value[key], o, norm) for o in options):
            return False
    return True


def _allowed(value: Any, option: Any, exp: _Expected, norm: Callable[[str], str]) -> bool:
    if exp.bfcl and isinstance(option, Mapping):
        return _fits_pattern(value, option, norm)
    if exp.bfcl and isinstance(option, list) and any(isinstance(o, Mapping) for o in option):
        if not isinstance(value, list) or len(value) != len(option):
            return False
        return all(
            _fits_pattern(v, o, norm) if isinstance(o, Mapping) else _same(v, o, norm)
            for v, o in zip(value, option, strict=True)
        )
    return _same(value, option, norm)


def _literal(value: Any, options: tuple[Any, ...]) -> bool:
    """The value is one of the reference's own values, of the same type (``""`` = omitted excluded)."""
    return any(type(value) is type(o) and value == o and o != "" for o in options)


def _show(value: Any) -> str:
    """A value as it reads in Python, strings quoted (so " Paris" and "Paris" differ), on one line."""
    return shorten(repr(value))


def _describe(options: tuple[Any, ...], optional: bool) -> str:
    shown = [_show(o) for o in options if o != ""]
    text = shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
    return text + (" (or omitted)" if optional else "")


def _kuhn(edges: list[list[int]], n_right: int) -> dict[int, int]:
    """A maximum matching of left → right (Kuhn's augmenting paths); returns left → right."""
    owner: list[int | None] = [None] * n_right

    def augment(left: int, seen: set[int]) -> bool:
        for right in edges[left]:
            if right in seen:
                continue
            seen.add(right)
            holder = owner[right]
            if holder is None or augment(holder, seen):
                owner[right] = left
                return True
        return False

    for left in range(len(edges)):
        augment(left, set())
    return {left: right for right, left in enumerate(owner) if left is not None}


@rft.grader(name="tool_call", range=(0.0, 1.0))
class ToolCall:
    """Function calling: the tool, its arguments' types and values vs a reference (OpenAI or BFCL shape).

    Reads the completion's tool calls (OpenAI ``tool_calls`` shape, or parsed from
    ``<tool_call>`` tags / JSON in the text), the row's expected call(s) from
    ``reference_column`` and the row's tools from ``tools_column`` (OpenAI tools or
    BFCL function descriptions). Parallel calls are paired regardless of order: the
    pairing maximises the calls that are fully right, then pairs the rest by best score.
    Per expected call three components score 0 or 1 (``arguments`` is a share):

    - ``name``: the called tool is the expected one;
    - ``schema``: the arguments are an object valid against the tool's ``parameters``
      (``integer`` means an int, not 5.0), every argument is declared by the tool, and
      the tool is among the row's tools when the row has them; a value that is literally
      one of the reference's allowed values passes even if the tool declares another type
      (BFCL's rule for references that name a variable);
    - ``arguments``: the share of reference arguments given one of their allowed values
      (an optional one may be omitted), counting an argument the reference does not list
      as a miss (``extra_arguments: reject``, the default).

    The score is the mean of the components (``partial: true``, the default) or 1 only
    when all are right (``partial: false``), averaged over calls and scaled down when
    the model made more or fewer calls than expected. Components are in ``metrics``.

    In a multi-turn trajectory (an agent's rollout, a saved conversation with tool
    messages) the calls are every call of the trajectory, in order, across its assistant
    turns. ``match: all`` (the default) compares all of them with the reference, so a
    repeated or needless call lowers the score as an extra call; ``match: any`` pairs each
    expected call with its best made call and ignores the others (retries, lookups on the
    way). ``reference_column: messages`` takes the expected calls from the row's reference
    trajectory: the tool calls of the assistant messages in the row's ``messages`` (an
    OpenAI function-calling fine-tuning row used as an RFT prompt).

    Args:
        reference_column: column with the expected call(s): a call, a list, OpenAI's
            ``{"tool_calls": [...]}``, BFCL's ``[{"func": {"arg": [allowed, ...]}}]`` or a whole
            BFCL possible-answer entry; ``arguments`` may be JSON text.
        tools_column: column with the tools (optional in the data).
        partial: partial credit per component (default True).
        strings: how strings compare: ``strip`` (surrounding whitespace ignored, the
            default), ``exact``, or ``bfcl`` (BFCL's normalisation: spaces and ``,./-_*^``
            dropped, case ignored).
        extra_arguments: ``reject`` (default) an argument the reference does not list,
            or ``allow`` it when the tool's schema accepts it.
        ordered: compare the i-th call with the i-th expected one (default False).
        match: ``all`` (default): every call made counts, extra ones lower the score;
            ``any``: only the calls paired with an expected one count (extra calls of a
            trajectory are not penalised).
        name: the grader's id in a set.

    >>> g = ToolCall()
    >>> row = {"expected_tool_calls": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    >>> g([{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}], row).score
    1.0
    >>> row = {"expected_tool_calls": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["c", ""]}}]}
    >>> g([{"name": "get_weather", "arguments": {"city": "Paris, France"}}], row).score
    1.0
    """

    def __init__(
        self,
        reference_column: str = "expected_tool_calls",
        tools_column: str = "tools",
        partial: bool = True,
        strings: str = "strip",
        extra_arguments: str = "reject",
        ordered: bool = False,
        match: str = "all",
        name: str | None = None,
    ):
        if strings not in _STRINGS:
            raise ConfigError(f"tool_call: `strings: {strings}` is not one of {', '.join(_STRINGS)}")
        if extra_arguments not in _EXTRA:
            raise ConfigError(f"tool_call: `extra_arguments: {extra_arguments}` is not one of {', '.join(_EXTRA)}")
        if match not in _MATCH:
            raise ConfigError(f"tool_call: `match: {match}` is not one of {', '.join(_MATCH)}")
        self.match = match
        self.reference_column = reference_column
        self.tools_column = tools_column
        self.partial = bool(partial)
        self.strings = strings
        self.extra_arguments = extra_arguments
        self.ordered = bool(ordered)
        self.name = name

    @property
    def rft_columns(self) -> tuple[str, ...]:
        return (self.reference_column,)

    def __call__(self, tool_calls: list[dict[str, Any]], item: Mapping[str, Any]) -> Grade:
        expected = _expected_calls(item[self.reference_column], self.reference_column)
        actual = [c["function"] for c in (normalize_tool_call(c) for c in tool_calls or []) if c is not None]
        tools = item.get(self.tools_column)
        schemas = _tool_schemas(tools, self.tools_column) if tools is not None else None
        if not expected:
            ok = not actual
            return Grade(
                float(ok),
                reason="no call expected" + ("" if ok else f", but {len(actual)} made"),
                metrics={"calls_matched": float(ok)},
            )
        if not actual:
            return Grade(
                0.0,
                reason=f"no tool call found; expected {expected[0].name!r}",
                metrics={"name": 0.0, "schema": 0.0, "arguments": 0.0, "calls_matched": 0.0},
            )
        pairs = [[self._compare(got, exp, schemas) for got in actual] for exp in expected]
        chosen = self._pairing(pairs, len(actual))
        comps = {"name": 0.0, "schema": 0.0, "arguments": 0.0}
        total, problems = 0.0, []
        for i, exp in enumerate(expected):
            j = chosen.get(i)
            if j is None:
                problems.append(f"call {i}: missing (expected {exp.name!r})")
                continue
            pair = pairs[i][j]
            if pair.problem:
                where = f"call {i}" if j == i else f"call {i} (made as call {j})"
                problems.append(f"{where}: {pair.problem}")
            comps["name"] += pair.name
            comps["schema"] += pair.schema
            comps["arguments"] += pair.arguments
            total += pair.score(self.partial)
        n = len(expected)
        if self.match == "any":  # calls paired with no expected one are ignored
            score = total / n
            matched = len(chosen) == n
        else:
            score = total / max(n, len(actual))
            matched = len(actual) == n
            if len(actual) > n:
                problems.append(f"{len(actual) - n} extra call(s)")
        metrics = {k: v / n for k, v in comps.items()}
        metrics["calls_matched"] = float(matched)
        return Grade(score, reason="; ".join(problems) or f"{n} call(s) correct", metrics=metrics)

    def _pairing(self, pairs: list[list[_Pair]], n_actual: int) -> dict[int, int]:
        """Expected index → made index: in order, or the most fully right calls, then the best scores."""
        if self.ordered:
            return {i: i for i in range(min(len(pairs), n_actual))}
        chosen = _kuhn([[j for j, p in enumerate(row) if p.perfect] for row in pairs], n_actual)
        free = [j for j in range(n_actual) if j not in chosen.values()]
        for i, row in enumerate(pairs):
            if i in chosen or not free:
                continue
            best = max(free, key=lambda j: (row[j].score(True), -j))
            chosen[i] = best
            free.remove(best)
        return chosen

    def _compare(self, got: Mapping[str, Any], exp: _Expected, schemas: dict[str, Any] | None) -> _Pair:
        name, args = got.get("name"), got.get("arguments")
        if name != exp.name:
            return _Pair(False, False, 0.0, f"called {name!r}, expected {exp.name!r}")
        if not isinstance(args, Mapping):
            return _Pair(True, False, 0.0, f"arguments are not a JSON object: {shorten(args)}")
        norm = _STRINGS[self.strings]
        hits, problems = 0, []
        for key, options in exp.args.items():
            optional = key in exp.optional
            if key not in args:
                hits += optional
                if not optional:
                    problems.append(f"argument {key!r} is missing, expected {_describe(options, False)}")
            elif any(_allowed(args[key], o, exp, norm) for o in options):
                hits += 1
            else:
                problems.append(f"argument {key!r} is {_show(args[key])}, expected {_describe(options, optional)}")
        extra = [k for k in args if k not in exp.args] if self.extra_arguments == "reject" else []
        problems += [f"argument {k!r} is not in the reference" for k in extra]
        n_args = len(exp.args) + len(extra)
        share = hits / n_args if n_args else 1.0
        schema_ok, why = self._schema_ok(str(name), args, exp, schemas)
        return _Pair(True, schema_ok, share, why or (problems[0] if problems else ""))

    def _schema_ok(
        self, name: str, args: Mapping[str, Any], exp: _Expected, schemas: dict[str, Any] | None
    ) -> tuple[bool, str]:
        if schemas is None:
            return True, ""
        if name not in schemas:
            return False, f"tool {name!r} is not among the row's tools ({', '.join(schemas) or 'none'})"
        schema = schemas[name]
        declared = schema.get("properties") if isinstance(schema, Mapping) else None
        if self.extra_arguments == "reject" and isinstance(declared, Mapping):
            undeclared = [k for k in args if k not in declared]
            if undeclared:
                return False, f"argument {undeclared[0]!r} is not declared by tool {name!r}"
        from jsonschema import exceptions

        try:
            errors = list(_strict_validator(schema).iter_errors(dict(args)))
        except exceptions.UnknownType as err:
            raise ValueError(
                f"column {self.tools_column!r}: tool {name!r} uses the unknown type {err.type!r}; "
                "use a JSON Schema type (or BFCL's dict/float/tuple/any)"
            ) from err
        errors = [e for e in errors if not self._excused(e, args, exp)]
        if errors:
            first = min(errors, key=lambda e: (list(map(str, e.path)), e.validator))
            return False, f"arguments invalid at {_where(first)}: {first.message}"
        return True, ""

    def _excused(self, error: Any, args: Mapping[str, Any], exp: _Expected) -> bool:
        """A schema error that does not count: a string in an ``enum`` under the chosen string
        comparison or allowed by the reference, or (BFCL's rule for references that name a
        variable) a value that is literally one of the reference's allowed values."""
        key = error.path[0] if error.path else None
        if error.validator == "enum" and isinstance(error.instance, str) and isinstance(error.validator_value, list):
            norm = _STRINGS[self.strings]
            if any(isinstance(v, str) and norm(v) == norm(error.instance) for v in error.validator_value):
                return True
            if len(error.path) == 1 and key in exp.args:  # the reference allows a value outside the enum
                return any(_allowed(error.instance, o, exp, norm) for o in exp.args[key] if o != "")
        return key in exp.args and key in args and _literal(args[key], exp.args[key])


@rft.hookimpl
def rft_register_graders(register: Callable[[Any], None]) -> None:
    register(ToolCall)
