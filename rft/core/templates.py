"""OpenAI grader templates: ``{{item.x}}``, ``{{sample.output_text}}`` and friends.

OpenAI's graders (``string_check``, ``text_similarity``, ``score_model`` …) name their
inputs with templates. Two namespaces exist:

- ``item``: the dataset row; ``{{item.answer}}``, nested ``{{item.meta.city}}``, list
  elements ``{{item.choices.0}}``.
- ``sample``: the model's output; ``{{sample.output_text}}`` (the completion text),
  ``{{sample.output_json.x}}`` (a field of the JSON found in the completion) and
  ``{{sample.output_tools}}`` (its tool calls, OpenAI shape).

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

__all__ = ["InputReference", "Template", "TemplateError", "render", "render_inputs", "SAMPLE_FIELDS"]

#: Fields of the ``sample`` namespace.
SAMPLE_FIELDS = ("output_text", "output_json", "output_tools")

_PLACEHOLDER = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*$")


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
            ``sample.output_json[.…]``, ``sample.output_tools``.
    """

    def __init__(self, text: str, *, where: str = "template"):
        if not isinstance(text, str):
            raise ConfigError(f"{where}: a template must be a string, got {type(text).__name__} {text!r}")
        self.text = text
        self.where = where
        self.paths: list[tuple[str, ...]] = []
        for m in _PLACEHOLDER.finditer(text):
            expr = m.group(1)
            if not _PATH.match(expr):
                raise ConfigError(
                    f"{where}: placeholder {{{{{expr}}}}} in {text!r} is not a dotted path like item.answer"
                )
            parts = tuple(expr.split("."))
            if parts[0] == "item":
                if len(parts) < 2:
                    raise ConfigError(f"{where}: {{{{item}}}} in {text!r} needs a column, e.g. {{{{item.answer}}}}")
            elif parts[0] == "sample":
                if len(parts) < 2 or parts[1] not in SAMPLE_FIELDS:
                    got = parts[1] if len(parts) > 1 else ""
                    from rft.core.errors import did_you_mean

                    raise ConfigError(
                        f"{where}: unknown sample field {got!r} in {text!r}; {did_you_mean(got, SAMPLE_FIELDS)}"
                    )
                if parts[1] != "output_json" and len(parts) > 2 and parts[1] != "output_tools":
                    raise ConfigError(f"{where}: sample.{parts[1]} has no fields ({'.'.join(parts)} in {text!r})")
            else:
                raise ConfigError(
                    f"{where}: placeholder {{{{{expr}}}}} in {text!r} must start with `item.` (the row) "
                    "or `sample.` (the model output)"
                )
            self.paths.append(parts)
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
            if p[0] == "item" and p[1] not in seen:
                seen.append(p[1])
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
            return _to_text(self._lookup(tuple(m.group(1).split(".")), sample))

        return _PLACEHOLDER.sub(sub, self.text)

    def _lookup(self, parts: tuple[str, ...], sample: Sample) -> Any:
        from rft.core.parsing import completion_text, extract_json

        key = ".".join(parts)
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
                obj = sample.get_tool_calls()
                root = "the completion's tool calls"
            else:
                found, obj = extract_json(completion_text(sample.completion))
                if not found:
                    raise TemplateError(
                        f"{self.where}: {{{{{key}}}}} needs JSON in the completion, and none was found "
                        f"(template {self.text!r})",
                        template=self.text,
                        key=key,
                        source=source,
                    )
                root = "the completion's JSON"
        walked: list[str] = [parts[0]] if source == "item" else list(parts[:2])
        for part in rest:
            walked.append(part)
            if isinstance(obj, Mapping) and part in obj:
                obj = obj[part]
            elif isinstance(obj, (list, tuple)) and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
                obj = obj[int(part)]
            else:
                have = ", ".join(sorted(map(str, obj))) if isinstance(obj, Mapping) else type(obj).__name__
                raise TemplateError(
                    f"{self.where}: template {self.text!r} refers to {'.'.join(walked)!r}, which {root} does not "
                    f"have (available: {have or 'nothing'})",
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
