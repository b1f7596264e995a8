"""Structured-output graders: JSON against a JSON Schema (tool calls: ``graders.tool_calls``).

It validates with ``jsonschema`` (the draft is taken from the schema's ``$schema``,
default 2020-12). ``json_schema`` reads the completion as JSON the way OpenAI fills
``sample.output_json`` (the whole output must be JSON); with ``extract: lenient`` it finds
JSON with :func:`rft.core.parsing.extract_json` instead (the whole text, a fenced code
block, or the first balanced ``{…}``/``[…]``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import rft
from rft.core import Grade
from rft.core.errors import ConfigError, did_you_mean
from rft.core.parsing import extract_json
from rft.core.templates import output_json

__all__ = ["JsonSchema", "schema_checks"]

# Keywords that only route validation to sub-schemas: their sub-checks are counted.
_APPLICATORS = frozenset(
    {
        "properties",
        "patternProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "allOf",
        "$ref",
        "$dynamicRef",
        "dependentSchemas",
        "propertyNames",
        "additionalProperties",
    }
)
# Keywords whose sub-schemas are tried (a failing branch is not a failed check): one check each.
_COMBINATORS = frozenset({"anyOf", "oneOf", "not", "if", "contains", "unevaluatedProperties", "unevaluatedItems"})


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# Assertions that only apply to one JSON type: on other values they are not checks at all.
_APPLIES_TO: dict[str, Any] = {
    **dict.fromkeys(
        ("required", "minProperties", "maxProperties", "dependentRequired", "dependencies"),
        lambda x: isinstance(x, Mapping),
    ),
    **dict.fromkeys(("pattern", "minLength", "maxLength", "format"), lambda x: isinstance(x, str)),
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"), _is_num),
    **dict.fromkeys(
        ("minItems", "maxItems", "uniqueItems", "minContains", "maxContains"), lambda x: isinstance(x, list)
    ),
}

_state = threading.local()
_counting_classes: dict[type, type] = {}
_classes_lock = threading.Lock()


def _counting_validator(cls: type) -> type:
    """A subclass of a jsonschema validator class that counts the checks it makes."""
    from jsonschema import validators

    with _classes_lock:
        if cls in _counting_classes:
            return _counting_classes[cls]

        def wrap(keyword: str, fn: Any) -> Any:
            def counted(validator: Any, value: Any, instance: Any, schema: Any):
                if getattr(_state, "suppress", 0):
                    yield from fn(validator, value, instance, schema)
                    return
                if keyword in _COMBINATORS:
                    _state.suppress = 1
                    try:
                        errors = list(fn(validator, value, instance, schema))
                    finally:
                        _state.suppress = 0
                    _state.total += 1
                    _state.failed += bool(errors)
                    yield from errors
                    return
                if keyword in _APPLICATORS and not isinstance(value, bool):
                    yield from fn(validator, value, instance, schema)
                    return
                applies = _APPLIES_TO.get(keyword)
                if applies is not None and not applies(instance):  # e.g. `required` on a list: ignored
                    yield from fn(validator, value, instance, schema)
                    return
                errors = list(fn(validator, value, instance, schema))
                weight = len(value) if keyword == "required" and isinstance(value, list) and value else 1
                _state.total += weight
                _state.failed += min(len(errors), weight)
                yield from errors

            return counted

        new = validators.extend(cls, {k: wrap(k, f) for k, f in cls.VALIDATORS.items()})  # type: ignore[attr-defined]
        _counting_classes[cls] = new
        return new


def schema_checks(instance: Any, schema: Mapping[str, Any] | bool) -> tuple[int, int, list[Any]]:
    """Validate ``instance`` and count schema checks: ``(passed, total, errors)``.

    A check is one assertion keyword (``type``, ``enum``, ``minimum``, ``pattern`` …)
    applied to one value of the type it constrains (``required`` on a list is no
    check); ``required`` counts one check per required property;
    ``anyOf``/``oneOf``/``not``/``if``/``contains`` count as one check each.

    >>> schema = {"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "integer"}}}
    >>> passed, total, errors = schema_checks({"a": "x"}, schema)
    >>> passed, total, errors[0].message
    (2, 4, "'b' is a required property")
    """
    from jsonschema import validators

    cls = _counting_validator(validators.validator_for(schema))
    _state.total, _state.failed, _state.suppress = 0, 0, 0
    errors = sorted(cls(schema).iter_errors(instance), key=lambda e: (list(e.path), e.validator))
    total, failed = _state.total, _state.failed
    if errors and failed == 0:  # an error from a keyword we did not see (defensive): count it
        failed = total = max(total, 1)
    return total - failed, total, errors


def _check_schema(schema: Any, where: str) -> Mapping[str, Any] | bool:
    from jsonschema import exceptions, validators

    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as err:
            raise ConfigError(f"{where}: the schema is not valid JSON: {err}") from err
    if not isinstance(schema, (Mapping, bool)):
        raise ConfigError(f"{where}: a JSON Schema must be an object, got {type(schema).__name__}")
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as err:
        raise ConfigError(f"{where}: invalid JSON Schema at {err.json_path}: {err.message}") from err
    return schema


def _where(error: Any) -> str:
    return error.json_path if hasattr(error, "json_path") else "$" + "".join(f"[{p!r}]" for p in error.path)


@rft.grader(name="json_schema", range=(0.0, 1.0))
class JsonSchema:
    """The completion as JSON validated against a JSON Schema; partial credit optional.

    Args:
        schema: the JSON Schema (an object, or its JSON text).
        schema_column: a dataset column holding each row's schema instead.
        partial: score the share of schema checks passed instead of 1/0.
        extract: ``whole`` (default): the whole completion must be JSON, as for OpenAI's
            ``sample.output_json``; ``lenient``: also JSON inside a code fence or prose
            (the first fenced block or balanced ``{…}``/``[…]``).
        name: the grader's id in a set.

    The reason names the first failing path (``$.items[0].price``) and its message;
    ``metrics`` has ``valid`` (1/0) and ``checks_passed`` (the share).

    >>> g = JsonSchema(schema={"type": "object", "required": ["answer"]})
    >>> g('{"answer": 4}', {}).score, g('Here: ```json\\n{"answer": 4}\\n```', {}).score
    (1.0, 0.0)
    >>> JsonSchema(schema={"required": ["answer"]}, extract="lenient")('Here: {"answer": 4}', {}).score
    1.0
    >>> JsonSchema(schema={"type": "object", "required": ["answer"]})("{}", {}).reason
    "invalid at $: 'answer' is a required property"
    """

    #: How JSON is found in the completion: the whole text only, or also inside it.
    EXTRACT = ("whole", "lenient")

    def __init__(
        self,
        schema: Mapping[str, Any] | str | None = None,
        schema_column: str | None = None,
        partial: bool = False,
        extract: str = "whole",
        name: str | None = None,
    ):
        if extract not in self.EXTRACT:
            raise ConfigError(f"json_schema: unknown extract {extract!r}; {did_you_mean(str(extract), self.EXTRACT)}")
        if (schema is None) == (schema_column is None):
            raise ConfigError("json_schema: give exactly one of `schema` (inline) or `schema_column` (per row)")
        self.schema = None if schema is None else _check_schema(schema, "json_schema")
        self.schema_column = schema_column
        self.partial = bool(partial)
        self.extract = extract
        self.name = name

    @property
    def rft_columns(self) -> tuple[str, ...]:
        return (self.schema_column,) if self.schema_column else ()

    def __call__(self, completion: str, item: Mapping[str, Any]) -> Grade:
        if self.schema is not None:
            schema = self.schema
        else:
            column = str(self.schema_column)  # set whenever `schema` is not (checked in __init__)
            schema = _check_schema(item[column], f"json_schema: column {column!r}")
        found, value = output_json(completion) if self.extract == "whole" else extract_json(completion)
        if not found:
            why = (
                "no JSON found: the completion is not JSON as a whole (extract: lenient also finds JSON inside it)"
                if self.extract == "whole"
                else "no JSON found in the completion"
            )
            return Grade(0.0, reason=why, metrics={"valid": 0.0, "checks_passed": 0.0})
        passed, total, errors = schema_checks(value, schema)
        share = passed / total if total else 1.0
        if not errors:
            return Grade(1.0, reason=f"valid ({total} checks)", metrics={"valid": 1.0, "checks_passed": 1.0})
        first = errors[0]
        reason = f"invalid at {_where(first)}: {first.message}"
        if len(errors) > 1:
            reason += f" (+{len(errors) - 1} more errors)"
        score = share if self.partial else 0.0
        return Grade(score, reason=reason, metrics={"valid": 0.0, "checks_passed": share})


@rft.hookimpl
def rft_register_graders(register):
    register(JsonSchema)
