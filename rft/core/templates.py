"""OpenAI grader templates: ``{{item.x}}``, ``{{sample.output_text}}`` and friends.

OpenAI's graders (``string_check``, ``text_similarity``, ``score_model`` …) name their
inputs with templates. Two namespaces exist:

- ``item``: the dataset row; ``{{item.answer}}``, nested ``{{item.meta.city}}``, list
  elements ``{{item.choices[0]}}`` (or ``{{item.choices.0}}``), keys with other
  characters ``{{item["a key"]}}``.
- ``sample``: the model's output; ``{{sample.output_text}}`` (the completion text),
  ``{{sample.output_json.x}}`` (a field of the completion parsed as JSON: only when the
  *whole* completion is JSON, as OpenAI fills it) and ``{{sample.output_tools}}`` (its
  tool calls in Chat Completions' shape, ``function.arguments`` always the JSON *string*),
  e.g. ``{{sample.output_tools[0].function.name}}``.

A template that is exactly one placeholder gives the raw value
(:meth:`Template.value`); otherwise placeholders are replaced inside the text, with
non-string values written as JSON (:meth:`Template.render`).

>>> from rft.core import Sample
>>> t = Template("Q: {{item.question}} A: {{ sample.output_text }}")
>>> t.render(Sample("4", item={"question": "2+2?"}))
'Q: 2+2? A: 4'
>>> t.columns
('question',)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rft.core.errors import ConfigError, RFTError

if TYPE_CHECKING:  # pragma: no cover
    from rft.core import Grade, Sample

__all__ = [
    "InputReference",
    "Template",
    "TemplateError",
    "render",
    "render_inputs",
    "SAMPLE_FIELDS",
    "check_pass_threshold",
    "openai_tool_calls",
    "output_json",
    "parse_path",
    "with_pass",
]

#: Fields of the ``sample`` namespace.
SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
#: One step of a path: ``.name``, ``[0]``, ``["key"]`` or ``['key']``.
_STEP = re.compile(r"""\.([A-Za-z_0-9][\w-]*)|\[\s*(-?\d+)\s*\]|\[\s*"([^"\]]*)"\s*\]|\[\s*'([^'\]]*)'\s*\]""")
_HEAD = re.compile(r"[A-Za-z_][\w-]*")

#: One part of a parsed path: a key (``str``) or a list index (``int``, from ``[n]``).
PathPart = str | int


def parse_path(expr: str) -> tuple[PathPart, ...] | None:
    """The parts of a placeholder path, or None when it is not one.

    Dots name keys (a digit key also indexes a list, as before); ``[n]`` is a list index,
    ``["k"]`` a key with any characters. OpenAI's documented example parses:

    >>> parse_path("sample.output_tools[0].function.name")
    ('sample', 'output_tools', 0, 'function', 'name')
    >>> parse_path('item["a key"].tags.1'), parse_path("item.a[")
    (('item', 'a key', 'tags', '1'), None)
    """
    head = _HEAD.match(expr)
    if head is None:
        return None
    parts: list[PathPart] = [head.group(0)]
    pos = head.end()
    while pos < len(expr):
        m = _STEP.match(expr, pos)
        if m is None:
            return None
        name, index, dq, sq = m.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(name if name is not None else dq if dq is not None else sq)
        pos = m.end()
    return tuple(parts)


def _show(parts: Sequence[PathPart]) -> str:
    """A parsed path written back (``sample.output_tools[0].function``)."""
    out = str(parts[0])
    for p in parts[1:]:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _HEAD.fullmatch(p) or p.isdigit():
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out


def output_json(text: str) -> tuple[bool, Any]:
    """OpenAI's ``sample.output_json``: the completion parsed as JSON when the *whole*
    completion (surrounding whitespace aside) is JSON; ``(found, value)``.

    JSON inside prose or a code fence is not ``output_json`` (OpenAI fills it only for a
    valid JSON sample); the ``json_schema`` grader's ``extract: lenient`` finds that.

    >>> output_json(' {"a": 1}\\n'), output_json('Sure: {"a": 1}')
    ((True, {'a': 1}), (False, None))
    """
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def openai_tool_calls(calls: Sequence[Any]) -> list[dict[str, Any]]:
    """Tool calls in Chat Completions' shape, as OpenAI's ``sample.output_tools`` holds them:
    ``{"type": "function", "function": {"name", "arguments"}}`` (plus ``id`` when known)
    with ``arguments`` always the JSON *string*.

    Arguments that already are a string stay byte for byte what the model wrote; decoded
    ones are written back as JSON (``json.dumps`` with ``ensure_ascii=False``, as
    OpenAI-compatible servers such as vLLM do). Anything that is not a tool call is left out.

    >>> openai_tool_calls([{"name": "f", "arguments": {"x": "é"}}])
    [{'type': 'function', 'function': {'name': 'f', 'arguments': '{"x": "é"}'}}]
    >>> openai_tool_calls([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}])
    [{'id': 'c1', 'type': 'function', 'function': {'name': 'f', 'arguments': '{"x":1}'}}]
    """
    out: list[dict[str, Any]] = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function")
        if isinstance(fn, Mapping):
            name, args = fn.get("name"), fn.get("arguments")
        elif "name" in call and ("arguments" in call or "parameters" in call):
            name, args = call["name"], call.get("arguments", call.get("parameters"))
        else:
            continue
        if args is None:
            args = {}
        text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
        one: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": text}}
        if call.get("id") is not None:
            one = {"id": call["id"], **one}
        out.append(one)
    return out


def check_pass_threshold(value: Any, grader: str) -> float | None:
    """OpenAI's ``pass_threshold``, checked: None or a number.

    Raises:
        ConfigError: it is not a number (the message names the grader).

    >>> check_pass_threshold(7, "score_model")
    7.0
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(
            f"{grader}: pass_threshold must be a number (the score a sample needs to pass), got {value!r}"
        )
    return float(value)


def with_pass(grade: Grade, threshold: float | None) -> Grade:
    """``grade`` with OpenAI's pass mark: a ``passed`` metric, 1.0 when the score is at
    least ``threshold`` (else 0.0). The score itself is unchanged; a grade that does not
    apply, or no threshold, is returned as is.

    >>> from rft.core import Grade
    >>> with_pass(Grade(0.5, "ok"), 0.7).metrics, with_pass(Grade(0.7), 0.7).reason
    ({'passed': 0.0}, 'passed (score 0.7 >= pass_threshold 0.7)')
    """
    if threshold is None or grade.score is None:
        return grade
    from rft.core import Grade

    passed = grade.score >= threshold
    note = f"{'passed' if passed else 'failed'} (score {grade.score:g} {'>=' if passed else '<'} pass_threshold {threshold:g})"
    reason = f"{grade.reason}; {note}" if grade.reason else note
    return Grade(grade.score, reason, {**grade.metrics, "passed": float(passed)})


class TemplateError(RFTError, LookupError):
    """A template refers to something the row or the completion does not have.

    Attributes:
        template: the template text.
        key: the placeholder path that failed (e.g. ``item.answer``).
        source: ``"item"`` (the dataset row lacks it: a data problem) or ``"sample"``
            (the completion lacks it: the model did not produce it).
    """

    def __init__(self, message: str, *, template: str, key: str, source: str):
        self.template = template
        self.key = key
        self.source = source
        super().__init__(message)

    def __str__(self) -> str:  # LookupError subclasses would quote the message
        return str(self.args[0])


class Template:
    """A parsed template; invalid placeholders fail here, at load time.

    Args:
        text: the template, e.g. ``"{{item.answer}}"``.
        where: what the template belongs to, for error messages (e.g. ``"grader 'q' input"``).

    Raises:
        ConfigError: a placeholder is not ``item.…`` or one of ``sample.output_text``,
            ``sample.output_json[.…]``, ``sample.output_tools[.…]``.
    """

    def __init__(self, text: str, *, where: str = "template"):
        if not isinstance(text, str):
            raise ConfigError(f"{where}: a template must be a string, got {type(text).__name__} {text!r}")
        self.text = text
        self.where = where
        self.paths: list[tuple[PathPart, ...]] = []
        self._by_expr: dict[str, tuple[PathPart, ...]] = {}
        for m in _PLACEHOLDER.finditer(text):
            expr = m.group(1)
            parts = parse_path(expr)
            if parts is None:
                raise ConfigError(
                    f"{where}: placeholder {{{{{expr}}}}} in {text!r} is not a path like item.answer, "
                    "item.choices[0] or sample.output_tools[0].function.name"
                )
            if parts[0] == "item":
                if len(parts) < 2:
                    raise ConfigError(f"{where}: {{{{item}}}} in {text!r} needs a column, e.g. {{{{item.answer}}}}")
                if not isinstance(parts[1], str):
                    raise ConfigError(f"{where}: {{{{{expr}}}}} in {text!r}: the row is not a list; name a column")
            elif parts[0] == "sample":
                if len(parts) < 2 or parts[1] not in SAMPLE_FIELDS:
                    got = str(parts[1]) if len(parts) > 1 else ""
                    from rft.core.errors import did_you_mean

                    raise ConfigError(
                        f"{where}: unknown sample field {got!r} in {text!r}; {did_you_mean(got, SAMPLE_FIELDS)}"
                    )
                if parts[1] == "output_text" and len(parts) > 2:
                    raise ConfigError(f"{where}: sample.output_text has no fields ({expr} in {text!r})")
            else:
                raise ConfigError(
                    f"{where}: placeholder {{{{{expr}}}}} in {text!r} must start with `item.` (the row) "
                    "or `sample.` (the model output)"
                )
            self.paths.append(parts)
            self._by_expr[expr] = parts
        whole = _PLACEHOLDER.fullmatch(text.strip())
        self.single = whole is not None and len(self.paths) == 1

    def __repr__(self) -> str:
        return f"Template({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __getstate__(self) -> dict[str, Any]:
        return {"text": self.text, "where": self.where}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["text"], where=state["where"])  # type: ignore[misc]

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset columns the template reads (first path part after ``item``)."""
        seen: list[str] = []
        for p in self.paths:
            if p[0] == "item" and str(p[1]) not in seen:
                seen.append(str(p[1]))
        return tuple(seen)

    @property
    def is_static(self) -> bool:
        """True when the template has no placeholders."""
        return not self.paths

    def value(self, sample: Sample) -> Any:
        """The raw value of a one-placeholder template; else the rendered text."""
        if self.single:
            return self._lookup(self.paths[0], sample)
        return self.render(sample)

    def render(self, sample: Sample) -> str:
        """The template with every placeholder replaced (non-strings as JSON).

        Raises:
            TemplateError: the row or the completion lacks a referenced key.
        """

        def sub(m: re.Match[str]) -> str:
            return _to_text(self._lookup(self._by_expr[m.group(1)], sample))

        return _PLACEHOLDER.sub(sub, self.text)

    def _lookup(self, parts: tuple[PathPart, ...], sample: Sample) -> Any:
        from rft.core.parsing import completion_text

        key = _show(parts)
        if parts[0] == "item":
            obj: Any = sample.item
            rest = parts[1:]
            source = "item"
            root = "the row"
        else:
            source = "sample"
            field = parts[1]
            rest = parts[2:]
            if field == "output_text":
                return completion_text(sample.completion)
            if field == "output_tools":
                obj = openai_tool_calls(sample.get_tool_calls())
                root = "the completion's tool calls"
            else:
                found, obj = output_json(completion_text(sample.completion))
                if not found:
                    raise TemplateError(
                        f"{self.where}: {{{{{key}}}}} needs JSON in the completion, and the completion is not "
                        "JSON as a whole (OpenAI sets sample.output_json only when the whole output is JSON) "
                        f"(template {self.text!r})",
                        template=self.text,
                        key=key,
                        source=source,
                    )
                root = "the completion's JSON"
        walked: list[PathPart] = [parts[0]] if source == "item" else list(parts[:2])
        for part in rest:
            walked.append(part)
            index = part if isinstance(part, int) else int(part) if part.lstrip("-").isdigit() else None
            if isinstance(obj, Mapping) and str(part) in obj:
                obj = obj[str(part)]
            elif isinstance(obj, (list, tuple)) and index is not None and -len(obj) <= index < len(obj):
                obj = obj[index]
            else:
                if isinstance(obj, Mapping):
                    have = ", ".join(sorted(map(str, obj))) or "nothing"
                elif isinstance(obj, (list, tuple)):
                    have = f"a list of {len(obj)}" + (f", indexes 0 to {len(obj) - 1}" if obj else "")
                else:
                    have = type(obj).__name__
                raise TemplateError(
                    f"{self.where}: template {self.text!r} refers to {_show(walked)!r}, which {root} does not "
                    f"have (available: {have})",
                    template=self.text,
                    key=key,
                    source=source,
                )
        return obj


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def render(template: str, sample: Sample) -> str:
    """Render one template for one sample (parses it each call; keep a :class:`Template`
    for repeated use).

    >>> from rft.core import Sample
    >>> render("{{sample.output_json.city}}", Sample('{"city": "Paris"}'))
    'Paris'
    """
    return Template(template).render(sample)


def render_inputs(templates: Sequence[Template], sample: Sample) -> list[str] | Grade:
    """Render a grader's templates for one sample, the way OpenAI-style graders need.

    A key missing from the *completion* (``{{sample.output_json.x}}`` when the model
    gave no JSON, or no ``x``) is the model's failure: a score of 0 with the reason.
    A key missing from the *row* is a data error and raises :class:`TemplateError`.

    >>> from rft.core import Sample
    >>> render_inputs([Template("{{sample.output_json.x}}")], Sample("no JSON here")).score
    0.0
    """
    from rft.core import Grade

    try:
        return [t.render(sample) for t in templates]
    except TemplateError as err:
        if err.source == "sample":
            return Grade(0.0, reason=str(err))
        raise


class InputReference:
    """Base of graders that compare a templated ``input`` with a templated ``reference``
    (OpenAI's ``string_check`` and ``text_similarity``).

    Subclasses call :meth:`_set_templates` in ``__init__`` and :meth:`render_pair` in
    ``__call__``; ``rft_columns`` (the dataset columns read) comes with it.

    >>> from rft.core import Sample
    >>> g = InputReference()
    >>> g._set_templates("demo", "{{sample.output_text}}", "{{item.answer}}")
    >>> g.rft_columns, g.render_pair(Sample("4", item={"answer": "4"}))
    (('answer',), ('4', '4'))
    """

    input: Template
    reference: Template

    def _set_templates(self, grader: str, input: str, reference: str) -> None:  # noqa: A002 - OpenAI's field name
        self.input = Template(input, where=f"{grader} input")
        self.reference = Template(reference, where=f"{grader} reference")

    @property
    def rft_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.input.columns + self.reference.columns))

    def render_pair(self, sample: Sample) -> tuple[str, str] | Grade:
        """``(input, reference)`` rendered for ``sample``, or the low :class:`Grade` of
        :func:`render_inputs` when the completion lacks a key the templates read.

        Raises:
            TemplateError: the dataset row lacks a key the templates read.
        """
        rendered = render_inputs((self.input, self.reference), sample)
        if isinstance(rendered, list):
            return rendered[0], rendered[1]
        return rendered
