"""String graders: exact match, OpenAI's ``string_check``, and regular expressions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import rft
from rft.core import Grade, Sample
from rft.core.errors import ConfigError, did_you_mean
from rft.core.templates import InputReference, check_pass_threshold, with_pass

__all__ = ["exact_match", "StringCheck", "Regex"]


@rft.grader(range=(0.0, 1.0))
def exact_match(completion: str, answer: str) -> float:
    """1.0 when the completion equals the reference answer (surrounding whitespace ignored).

    >>> exact_match(" 42\\n", "42")
    1.0
    """
    return float(completion.strip() == str(answer).strip())


_VERBS = {
    "eq": ("equals", "does not equal"),
    "ne": ("differs from", "equals"),
    "like": ("contains", "does not contain"),
    "ilike": ("contains (any case)", "does not contain (any case)"),
}


@rft.grader(name="string_check", range=(0.0, 1.0))
class StringCheck(InputReference):
    """OpenAI string_check: input vs reference with eq, ne, like (contains) or ilike (any case).

    Accepts OpenAI's grader JSON as is. ``like`` is a case-sensitive *contains* and
    ``ilike`` a case-insensitive one, as in OpenAI's graders; ``eq``/``ne`` compare
    exactly. Scores 1.0 or 0.0.

    Args:
        reference: template of the reference, e.g. ``"{{item.answer}}"``.
        operation: ``eq``, ``ne`` (also ``neq``, as OpenAI's guide spells it), ``like`` or ``ilike``.
        input: template of the text checked (default: the completion).
        name: OpenAI's grader name (used as the grader's id in a set).
        pass_threshold: OpenAI's pass mark, accepted on every grader type: the grade
            carries a ``passed`` metric (1.0 when the score is at least the threshold);
            the score itself is unchanged.

    >>> check = StringCheck(reference="{{item.city}}", operation="ilike")
    >>> check(Sample("I think it is PARIS.", item={"city": "Paris"})).score
    1.0
    >>> StringCheck(reference="{{item.city}}", operation="like")(Sample("PARIS", item={"city": "Paris"})).score
    0.0
    """

    OPERATIONS = ("eq", "ne", "like", "ilike")
    #: Other spellings: OpenAI's graders guide writes ``neq`` where the API says ``ne``.
    ALIASES = {"neq": "ne"}

    def __init__(
        self,
        reference: str,
        operation: str = "eq",
        input: str = "{{sample.output_text}}",  # noqa: A002 - OpenAI's field name
        name: str | None = None,
        pass_threshold: float | None = None,
    ):
        operation = self.ALIASES.get(operation, operation)
        if operation not in self.OPERATIONS:
            raise ConfigError(
                f"string_check: unknown operation {operation!r}; {did_you_mean(operation, self.OPERATIONS)}"
            )
        self.name = name
        self.operation = operation
        self.pass_threshold = check_pass_threshold(pass_threshold, "string_check")
        self._set_templates("string_check", input, reference)

    def __call__(self, sample: Sample) -> Grade:
        rendered = self.render_pair(sample)
        if isinstance(rendered, Grade):
            return rendered
        text, ref = rendered
        op = self.operation
        if op == "eq":
            ok = text == ref
        elif op == "ne":
            ok = text != ref
        elif op == "like":
            ok = ref in text
        else:
            ok = ref.casefold() in text.casefold()
        verb = _VERBS[op][0 if ok else 1]
        return with_pass(Grade(float(ok), reason=f"input {verb} {_clip(ref)}"), self.pass_threshold)


_FLAG_NAMES = {
    "i": re.IGNORECASE,
    "ignorecase": re.IGNORECASE,
    "m": re.MULTILINE,
    "multiline": re.MULTILINE,
    "s": re.DOTALL,
    "dotall": re.DOTALL,
    "x": re.VERBOSE,
    "verbose": re.VERBOSE,
    "a": re.ASCII,
    "ascii": re.ASCII,
}


def _parse_flags(flags: str | Sequence[str] | int | None) -> int:
    if flags is None:
        return 0
    if isinstance(flags, int):
        return flags
    if isinstance(flags, str):
        letters = flags.lower()
        names = list(letters) if letters not in _FLAG_NAMES and set(letters) <= set("imsxa") else [flags]
    else:
        names = list(flags)
    value = 0
    for f in names:
        key = str(f).lower().removeprefix("re.")
        if key not in _FLAG_NAMES:
            raise ConfigError(
                f"regex: unknown flag {f!r}; {did_you_mean(key, [k for k in _FLAG_NAMES if len(k) > 1])} "
                "(or letters like 'im')"
            )
        value |= _FLAG_NAMES[key]
    return value


@rft.grader(name="regex", range=(0.0, 1.0))
class Regex:
    """1.0 when a regular expression matches the completion (optionally: its capture equals a column).

    Args:
        pattern: the regular expression (Python ``re`` syntax).
        mode: ``search`` (anywhere), ``match`` (at the start) or ``fullmatch`` (the whole text).
        flags: flag names (``["IGNORECASE", "DOTALL"]``) or letters (``"is"``).
        group: a capture group (number or name) to compare with ``column``.
        column: the dataset column the capture (or, without ``group``, the whole match)
            must equal, after stripping whitespace.
        strip: strip the completion before matching (default True).
        name: the grader's id in a set.

    >>> Regex(r"answer: (\\d+)", group=1, column="answer")("answer: 12", {"answer": 12}).score
    1.0
    """

    MODES = ("search", "match", "fullmatch")

    def __init__(
        self,
        pattern: str,
        mode: str = "search",
        flags: str | list[str] | None = None,
        group: int | str | None = None,
        column: str | None = None,
        strip: bool = True,
        name: str | None = None,
    ):
        if mode not in self.MODES:
            raise ConfigError(f"regex: unknown mode {mode!r}; {did_you_mean(mode, self.MODES)}")
        try:
            self.regex = re.compile(pattern, _parse_flags(flags))
        except re.error as err:
            raise ConfigError(f"regex: invalid pattern {pattern!r}: {err}") from err
        if isinstance(group, int) and group > self.regex.groups:
            raise ConfigError(f"regex: group {group} does not exist; {pattern!r} has {self.regex.groups} groups")
        if isinstance(group, str) and group not in self.regex.groupindex:
            raise ConfigError(
                f"regex: no group named {group!r} in {pattern!r}; {did_you_mean(group, self.regex.groupindex)}"
            )
        if group is not None and column is None:
            raise ConfigError("regex: `group` needs `column`, the dataset column the capture is compared to")
        self.pattern, self.mode, self.group, self.column, self.strip, self.name = (
            pattern,
            mode,
            group,
            column,
            strip,
            name,
        )

    @property
    def rft_columns(self) -> tuple[str, ...]:
        return (self.column,) if self.column else ()

    def __call__(self, completion: str, item: Mapping[str, Any]) -> Grade:
        text = completion.strip() if self.strip else completion
        m = getattr(self.regex, self.mode)(text)
        if m is None:
            return Grade(0.0, reason=f"no {self.mode} for /{_clip(self.pattern)}/")
        if self.column is None:
            return Grade(1.0, reason=f"{self.mode} /{_clip(self.pattern)}/: {_clip(m.group(0))}")
        got = m.group(self.group if self.group is not None else 0)
        want = item[self.column]
        ok = got is not None and got.strip() == str(want).strip()
        return Grade(float(ok), reason=f"captured {_clip(got)}, {self.column} is {_clip(str(want))}")


def _clip(text: Any, n: int = 60) -> str:
    s = repr(text)
    return s if len(s) <= n else s[: n - 1] + "…"


@rft.hookimpl
def rft_register_graders(register):
    register(exact_match)
    register(StringCheck)
    register(Regex)
