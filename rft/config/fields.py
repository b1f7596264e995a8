"""One definition per config field: its type, default, help text and constraints.

A config section is a dataclass whose fields are declared with :func:`setting`: the field's
type annotation, its default, its help text and its JSON Schema constraints (``minimum``,
``enum`` …) live in one place. :mod:`rft.config.schema` turns the sections into the shipped
JSON Schema (which validates YAML files, with file and line in every error); a :class:`Section`
built in code checks the same constraints in ``__post_init__``; :func:`build_section` turns a
validated mapping into the typed object.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo(Section):
...     KEY = "demo"
...     workers: int = setting(2, help="Worker processes.", minimum=1)
>>> Demo(workers=0)
Traceback (most recent call last):
...
rft.core.errors.ConfigError: demo.workers: must be at least 1, got 0 (Worker processes.)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from rft.core.errors import ConfigError

__all__ = ["Section", "build_section", "constraint_problem", "field_help", "section_hints", "setting"]


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    required: bool = False,
    key: bool = True,
    shorthand: bool = False,
    group: str | None = None,
    **schema: Any,
) -> Any:
    """Declare a config field: default, help text and JSON Schema constraints together.

    Args:
        default: the default value (omit for a field the config must set).
        help: the help text (the schema's ``description``; editors show it).
        factory: builds a mutable default (``dict``, a nested section).
        required: the config file must name this key even though the class has no default
            for it (top-level sections such as ``model`` and ``data``).
        key: False for attributes that are not config keys (the source file, …).
        shorthand: the section may also be written as a plain string (``model: NAME``).
        group: the YAML mapping this field sits under (``stages`` for the stage fields).
        **schema: JSON Schema keywords (``minimum``, ``maximum``, ``exclusiveMinimum``,
            ``enum``, ``minLength``, ``oneOf`` …); they replace what the type would give.
    """
    metadata = {
        "help": help,
        "schema": schema,
        "required": required,
        "key": key,
        "shorthand": shorthand,
        "group": group,
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_help(f: dataclasses.Field[Any]) -> str:
    """The help text a field was declared with ("" when it has none)."""
    return str(f.metadata.get("help") or "")


_HINTS: dict[type, dict[str, Any]] = {}


def section_hints(cls: type) -> dict[str, Any]:
    """The resolved type annotations of a section class (``from __future__`` makes them strings)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def constraint_problem(value: Any, rules: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` under a field's constraints, or None.

    Checks the keywords a section can break in code (``enum``, ``minimum``, ``maximum``,
    ``exclusiveMinimum``); the types are mypy's job there, and the schema's for files.

    >>> constraint_problem(0, {"minimum": 1})
    'must be at least 1, got 0'
    >>> constraint_problem("rey", {"enum": ["local", "ray"]}) is not None
    True
    >>> constraint_problem(None, {"minimum": 1}) is None
    True
    """
    if value is None:
        return None
    if "enum" in rules and value not in rules["enum"]:
        return f"{value!r} is not one of {', '.join(map(repr, rules['enum']))}"
    if not _is_number(value):
        return None
    if "minimum" in rules and value < rules["minimum"]:
        return f"must be at least {rules['minimum']:g}, got {value!r}"
    if "exclusiveMinimum" in rules and value <= rules["exclusiveMinimum"]:
        return f"must be greater than {rules['exclusiveMinimum']:g}, got {value!r}"
    if "maximum" in rules and value > rules["maximum"]:
        return f"must be at most {rules['maximum']:g}, got {value!r}"
    return None


class Section:
    """Base of config sections: checks every field's declared constraints after construction.

    Attributes:
        KEY: the section's key path in a run config (``scoring``, ``scaling.graders``), for errors.
    """

    KEY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            problem = constraint_problem(getattr(self, f.name), f.metadata.get("schema") or {})
            if problem:
                key = f"{self.KEY}.{f.name}" if self.KEY else f.name
                help_text = field_help(f)
                raise ConfigError(problem + (f" ({help_text})" if help_text else ""), key=key)


def _strip_optional(tp: Any) -> Any:
    """``X | None`` → ``X``; other types as they are."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build_section(cls: type[Any], raw: Mapping[str, Any]) -> Any:
    """Build a section from a schema-validated mapping: nested sections and paths typed.

    Keys that are not fields of ``cls`` are left out (the schema has already refused unknown
    keys; group members such as ``enabled`` are handled by the caller).

    >>> from rft.config.sections import ScalingSettings
    >>> build_section(ScalingSettings, {"graders": {"num_actors": 4}}).graders.num_actors
    4
    """
    hints = section_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        value = raw[f.name]
        tp = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            value = build_section(tp, value)  # type: ignore[arg-type]
        elif tp is Path and isinstance(value, str):
            value = Path(value)
        elif isinstance(value, dict):
            value = dict(value)
        kwargs[f.name] = value
    return cls(**kwargs)
