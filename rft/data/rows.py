"""The one row model: how every accepted row shape becomes a prompt, a reference and grader inputs.

Data loading, the SFT and GRPO datasets, held-out evaluation, ``rft grade`` and ``rft advise``
all read rows through :func:`to_example`, so they agree on what a row's prompt and reference
are. Accepted shapes:

* chat: ``messages`` (system/user/assistant/tool turns). A trailing assistant turn is the
  reference (tool calls become ``<tool_call>`` text); without one, the first of
  :data:`REFERENCE_FIELDS` beside ``messages`` is (OpenAI/Fireworks RFT rows).
* a tool-use trace — OpenAI's function-calling fine-tuning format: ``messages`` with
  assistant ``tool_calls`` (arguments as JSON strings or objects) and ``tool`` results,
  ``tools`` and optionally ``parallel_tool_calls``, ending with the assistant's (or a tool's)
  turn (:func:`rft.data.traces.is_trace`). The messages before the first assistant
  message are the prompt; the rest is the reference trajectory
  (:attr:`Example.reference_messages`), trained on turn by turn by SFT and kept in the row
  for graders (``tool_call``'s ``reference_column: messages`` reads its calls).
* a prompt field — the first of :data:`PROMPT_FIELDS` present (``prompt``, ``question``, …),
  a string (one user turn) or a list of chat messages — with the first of
  :data:`REFERENCE_FIELDS` present as the reference (``completion``, ``answer``, ``output``,
  ``label``): prompt/completion, prompt/answer, prompt/label, question/answer.
* any extra columns, and OpenAI ``tools``: kept in :attr:`Example.row` as the graders'
  inputs; ``tools`` is also passed to the chat template (:attr:`Example.tools`).

A run config's ``data.prompt_field`` / ``data.answer_field`` replace the ordered lists with
one field each. Files are read by :mod:`rft.data.readers`.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import DataError
from rft.core.text import shorten
from rft.data.readers import LoadReport, load_located_rows, validate_row
from rft.data.traces import (
    clean_messages,
    is_trace,
    message_text,
    renders_tool_calls,
    split_trace,
    template_messages,
    trace_text,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PROMPT_FIELDS",
    "REFERENCE_FIELDS",
    "ROW_INDEX",
    "TOOLS_FIELD",
    "DataSplits",
    "Example",
    "RowFields",
    "common_columns",
    "examples_from_rows",
    "grpo_dataset",
    "load_examples",
    "load_splits",
    "prompt_for_generation",
    "render_prompt",
    "renders_tool_calls",
    "sft_dataset",
    "to_example",
]

#: Row fields that hold the prompt, in order of preference (when a row has no ``messages``).
PROMPT_FIELDS = ("prompt", "question", "instruction", "problem", "query", "input")
#: Row fields that hold the reference output, in order of preference (after a trailing
#: assistant turn). ``completion`` comes before ``answer``: an answer may be a short grader label.
REFERENCE_FIELDS = ("completion", "answer", "output", "label")
#: The row field holding OpenAI function-tool definitions.
TOOLS_FIELD = "tools"
#: Where a reference taken from the trailing assistant turn came from (:attr:`Example.reference_source`).
ASSISTANT = "assistant"
#: The default of a run config's ``data.prompt_field``: it means "the ordered list".
_DEFAULT_PROMPT_FIELD = "prompt"


@dataclass(frozen=True)
class RowFields:
    """How rows are read: the format and the fields a run config may override.

    Attributes:
        fmt: ``auto`` (chat when a row has ``messages``), ``chat`` or ``prompt_answer``.
        prompt_field: the one field holding the prompt; None tries :data:`PROMPT_FIELDS` in order.
        answer_field: the one field holding the reference; None tries :data:`REFERENCE_FIELDS`.
        system_prompt: prepended as a system turn to prompts that have none.
    """

    fmt: str = "auto"
    prompt_field: str | None = None
    answer_field: str | None = None
    system_prompt: str | None = None

    @classmethod
    def from_config(cls, data: Any) -> RowFields:
        """The fields of a run config's ``data:`` section (:class:`rft.config.run.DataConfig`).

        ``prompt_field: prompt`` is the default and the first of :data:`PROMPT_FIELDS`, so it
        means the ordered list; any other value is the one prompt field.
        """
        prompt_field = getattr(data, "prompt_field", None)
        return cls(
            fmt=getattr(data, "format", "auto") or "auto",
            prompt_field=None if prompt_field in (None, _DEFAULT_PROMPT_FIELD) else prompt_field,
            answer_field=getattr(data, "answer_field", None),
            system_prompt=getattr(data, "system_prompt", None),
        )

    @property
    def prompt_fields(self) -> tuple[str, ...]:
        """The fields tried for the prompt, in order."""
        return (self.prompt_field,) if self.prompt_field else PROMPT_FIELDS

    @property
    def reference_fields(self) -> tuple[str, ...]:
        """The fields tried for the reference, in order."""
        return (self.answer_field,) if self.answer_field else REFERENCE_FIELDS


@dataclass
class Example:
    """One dataset row, normalised.

    Attributes:
        prompt: the prompt as chat messages (``{"role", "content"}``; a text prompt becomes
            one user message).
        reference: the reference output for SFT (a trailing assistant turn, or the first
            reference field), None when the row has none.
        row: the original row; its columns are the graders' inputs.
        source: ``file:line`` of the row, for messages.
        reference_source: ``"assistant"`` or the field the reference came from; None without one.
        tools: the row's OpenAI ``tools`` (function definitions), passed to the chat template.
        reference_messages: the reference as chat messages, tool calls in OpenAI's shape with
            their arguments decoded to objects: a tool-use trace's every message from the
            first assistant message on, or a chat row's trailing assistant turn; None when
            the reference is no assistant turn.
    """

    prompt: list[dict[str, Any]]
    reference: str | None
    row: dict[str, Any]
    source: str = ""
    reference_source: str | None = None
    tools: list[Any] | None = None
    reference_messages: list[dict[str, Any]] | None = None

    @property
    def prompt_text(self) -> str:
        """The prompt as plain text: its last user message (else its last message)."""
        users = [m for m in self.prompt if m["role"] == "user"]
        return str((users or self.prompt)[-1]["content"])


@dataclass
class DataSplits:
    """Training and held-out examples, with what loading skipped."""

    train: list[Example]
    eval: list[Example]
    reports: list[LoadReport] = field(default_factory=list)

    @property
    def columns(self) -> set[str]:
        """Columns present in every training and held-out row (what graders may ask for)."""
        return common_columns(e.row for e in self.train + self.eval)

    @property
    def skipped(self) -> int:
        """Rows skipped while loading (``data.on_bad_row: skip``)."""
        return sum(len(r.skipped) for r in self.reports)


def common_columns(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """Columns present in every row (empty for no rows)."""
    cols: set[str] | None = None
    for r in rows:
        cols = set(r) if cols is None else cols & set(r)
    return cols or set()


# ---------------------------------------------------------------------------
# one row → prompt, reference, grader inputs
# ---------------------------------------------------------------------------


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _reference_value(value: Any) -> str | None:
    """A reference field's value as text; None for a missing or blank one.

    A string stays as is, chat messages give the last one's text, other JSON values
    their JSON text, numbers their ``str``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if _is_messages(value):
        text = message_text(value[-1])
        return text if text.strip() else None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False) if value else None
    return str(value)


def _field_reference(row: Mapping[str, Any], fields: RowFields) -> tuple[str | None, str | None]:
    """The first reference field with a value, and its name."""
    for name in fields.reference_fields:
        ref = _reference_value(row.get(name))
        if ref is not None:
            return ref, name
    return None, None


def _tools(row: Mapping[str, Any]) -> list[Any] | None:
    value = row.get(TOOLS_FIELD)
    if isinstance(value, str) and value.strip():  # CSV / Parquet: the JSON text
        try:
            value = json.loads(value)
        except ValueError as err:
            raise ValueError(f"`{TOOLS_FIELD}` is not valid JSON: {err}") from None
    if value is None or value == "":
        return None
    if not isinstance(value, list):
        raise ValueError(f"`{TOOLS_FIELD}` must be a list of OpenAI tool definitions, got {type(value).__name__}")
    for i, tool in enumerate(value):
        fn = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ValueError(
                f"`{TOOLS_FIELD}[{i}]` is not a tool definition: give OpenAI's "
                f"{{'type': 'function', 'function': {{'name', 'description', 'parameters'}}}}, got {shorten(tool)}"
            )
    return value or None


def _prompt_messages(row: Mapping[str, Any], fields: RowFields) -> list[dict[str, Any]]:
    """The prompt of a row without ``messages``: the first prompt field present."""
    for name in fields.prompt_fields:
        if name not in row or row[name] is None:
            continue
        prompt = row[name]
        if isinstance(prompt, list):
            validate_row({"messages": prompt})
            return clean_messages(prompt)
        if isinstance(prompt, str) and prompt.strip():
            return [{"role": "user", "content": prompt}]
        raise ValueError(f"{name!r} must be a non-empty string or a list of chat messages, got {prompt!r}")
    cols = ", ".join(sorted(row)) or "none"
    if fields.prompt_field:
        raise ValueError(f"row has no {fields.prompt_field!r} (data.prompt_field; columns: {cols})")
    raise ValueError(
        f"row has no prompt (columns: {cols}); give `messages` or one of {', '.join(PROMPT_FIELDS)}, "
        "or set data.prompt_field"
    )


def to_example(
    row: dict[str, Any],
    *,
    fmt: str = "auto",
    prompt_field: str | None = None,
    answer_field: str | None = None,
    system_prompt: str | None = None,
    source: str = "",
    fields: RowFields | None = None,
) -> Example:
    """Normalise one row (raises ``ValueError`` saying what is wrong with it).

    Args:
        row: the row as read.
        fmt, prompt_field, answer_field, system_prompt: see :class:`RowFields` (ignored
            when ``fields`` is given).
        source: ``file:line`` of the row.
        fields: how rows are read.

    >>> to_example({"prompt": "2+2?", "answer": "4"}).reference
    '4'
    >>> to_example({"question": "2+2?", "label": 4}).reference_source
    'label'
    >>> ex = to_example({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    >>> ex.prompt, ex.reference
    ([{'role': 'user', 'content': 'hi'}], 'hello')
    >>> to_example({"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}).reference
    '4'
    """
    if fields is None:
        fields = RowFields(fmt=fmt, prompt_field=prompt_field, answer_field=answer_field, system_prompt=system_prompt)
    kind = fields.fmt
    if kind == "auto":
        kind = "chat" if "messages" in row else "prompt_answer"
    reference: str | None = None
    ref_source: str | None = None
    ref_msgs: list[dict[str, Any]] | None = None
    if kind == "chat":
        if "messages" not in row:
            raise ValueError("row has no `messages` (data.format is chat)")
        validate_row(row)
        if is_trace(row["messages"]):
            msgs, ref_msgs = split_trace(row)
            if ref_msgs:
                reference, ref_source = trace_text(ref_msgs), ASSISTANT
        else:
            msgs = clean_messages(row["messages"])
            if msgs[-1]["role"] == ASSISTANT:
                text = msgs[-1]["content"]
                if text.strip():
                    reference, ref_source = text, ASSISTANT
                    ref_msgs = [{"role": ASSISTANT, "content": text}]
                msgs = msgs[:-1]
        if not msgs:
            raise ValueError("`messages` has no prompt turn before the assistant's answer")
        if reference is None:  # OpenAI/Fireworks RFT rows: the reference sits in a field beside `messages`
            reference, ref_source = _field_reference(row, fields)
    else:
        msgs = _prompt_messages(row, fields)
        if fields.answer_field and fields.answer_field not in row:
            raise ValueError(f"row has no {fields.answer_field!r} (data.answer_field)")
        reference, ref_source = _field_reference(row, fields)
    if fields.system_prompt and msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": fields.system_prompt}, *msgs]
    return Example(
        prompt=msgs,
        reference=reference,
        row=dict(row),
        source=source,
        reference_source=ref_source,
        tools=_tools(row),
        reference_messages=ref_msgs,
    )


def examples_from_rows(
    rows: Iterable[tuple[int, dict[str, Any]]],
    *,
    path: str,
    fields: RowFields | None = None,
    on_bad_row: str = "error",
    report: LoadReport | None = None,
) -> list[Example]:
    """Normalise located rows (``(line, row)`` pairs) read from ``path``.

    Raises:
        DataError: a row is not usable (naming ``path:line``), unless ``on_bad_row="skip"``.
    """
    fields = fields or RowFields()
    out = []
    for line, row in rows:
        try:
            out.append(to_example(row, fields=fields, source=f"{path}:{line}"))
        except ValueError as err:
            if on_bad_row == "skip":
                if report is not None:
                    report.skipped.append((line, str(err)))
                logger.warning("%s:%d: skipped: %s", path, line, err)
                continue
            raise DataError(f"{err} (set data.on_bad_row: skip to skip such rows)", file=path, line=line) from None
    if report is not None:
        report.rows = len(out)
    return out


def load_examples(
    path: str | Path,
    *,
    fmt: str = "auto",
    prompt_field: str | None = None,
    answer_field: str | None = None,
    system_prompt: str | None = None,
    on_bad_row: str = "error",
    report: LoadReport | None = None,
    fields: RowFields | None = None,
) -> list[Example]:
    """Load and normalise every row of a dataset; a bad row names ``file:line``.

    Args:
        path: a file :func:`rft.data.readers.load_rows` reads.
        fmt, prompt_field, answer_field, system_prompt: see :class:`RowFields` (ignored
            when ``fields`` is given).
        on_bad_row: ``"error"`` or ``"skip"``.
        report: filled with the rows kept and skipped.
        fields: how rows are read.
    """
    if fields is None:
        fields = RowFields(fmt=fmt, prompt_field=prompt_field, answer_field=answer_field, system_prompt=system_prompt)
    report = report if report is not None else LoadReport(str(path))
    located = load_located_rows(path, on_bad_row=on_bad_row, report=report)
    return examples_from_rows(located, path=str(path), fields=fields, on_bad_row=on_bad_row, report=report)


def load_splits(data: Any, *, seed: int = 0) -> DataSplits:
    """Training and held-out examples for a run config's ``data:`` section.

    Without ``data.eval``, ``data.eval_size`` rows (a fraction below 1, else a count) are
    carved out of the training rows with a seeded shuffle, so the split is the same on
    every run with the same seed.

    Raises:
        DataError: no usable rows, a bad row, or an eval size that leaves no training rows.
    """
    fields = RowFields.from_config(data)
    train_report = LoadReport(str(data.train))
    train = load_examples(data.train, report=train_report, fields=fields, on_bad_row=data.on_bad_row)
    reports = [train_report]
    if data.max_rows is not None:
        train = train[: data.max_rows]
    if not train:
        raise DataError("no usable training rows", file=str(data.train))
    if data.eval is not None:
        eval_report = LoadReport(str(data.eval))
        held = load_examples(data.eval, report=eval_report, fields=fields, on_bad_row=data.on_bad_row)
        reports.append(eval_report)
    else:
        size = data.eval_size
        n = round(size * len(train)) if size < 1 else int(size)
        if n >= len(train):
            raise DataError(
                f"data.eval_size {size} leaves no training rows ({len(train)} rows); lower it or give data.eval",
                file=str(data.train),
            )
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        held_idx = set(order[:n])
        held = [e for i, e in enumerate(train) if i in held_idx]
        train = [e for i, e in enumerate(train) if i not in held_idx]
    return DataSplits(train=train, eval=held, reports=reports)


# ---------------------------------------------------------------------------
# prompts for a tokenizer, and TRL datasets
# ---------------------------------------------------------------------------

ROW_INDEX = "_rft_row"


def render_prompt(prompt: list[dict[str, Any]], tokenizer: Any = None) -> str | list[dict[str, Any]]:
    """The prompt as TRL wants it.

    Chat messages when the tokenizer has a chat template, else plain text (the turns'
    contents, one per line).
    """
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def prompt_for_generation(
    example_prompt: list[dict[str, Any]], tokenizer: Any, tools: Sequence[Any] | None = None
) -> str:
    """The text a model generates from: the chat template with the generation prompt (and
    the row's tools) when the tokenizer has one, else :func:`render_prompt`'s plain text."""
    rendered = render_prompt(example_prompt, tokenizer)
    if isinstance(rendered, list):
        kwargs: dict[str, Any] = {"tools": list(tools)} if tools else {}
        rendered = tokenizer.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True, **kwargs)
    return str(rendered)


def _sft_rows(e: Example, structured: bool) -> list[dict[str, Any]]:
    """The conversational prompt/completion rows of one example: one per assistant turn of a
    tool-use trace (the trace before it as the prompt, so tool results are context, never
    trained on), else one."""
    ref = e.reference_messages or [{"role": ASSISTANT, "content": e.reference}]
    rows = []
    for k, m in enumerate(ref):
        if m["role"] == ASSISTANT:
            prompt = template_messages([*e.prompt, *ref[:k]], structured)
            rows.append({"prompt": prompt, "completion": template_messages([m], structured)})
    return rows


def sft_dataset(examples: list[Example], tokenizer: Any = None) -> Any:
    """A ``datasets.Dataset`` of prompt/completion pairs for ``trl.SFTTrainer``.

    Loss is on the completion only; only examples with a reference output are used. With a
    chat template, rows with OpenAI ``tools`` carry them (as JSON text) in a ``tools`` column,
    which TRL passes to the template. A tool-use trace gives one row per assistant turn — the
    prompt and the trace before that turn as the prompt, the turn as the completion — so
    every call and the final reply are trained on and the tool results never are. Tool calls
    stay structured (arguments as objects) when the template renders ``tool_calls``, else
    they are ``<tool_call>`` text; messages are stored as JSON (``datasets.Json``), so calls
    with different arguments keep exactly their own.

    Raises:
        DataError: no example has a reference.
    """
    import datasets

    chat = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    with_tools = bool(chat) and any(e.tools for e in examples if e.reference is not None)
    structured = bool(chat) and renders_tool_calls(tokenizer)
    rows = []
    for e in examples:
        if e.reference is None:
            continue
        if chat:
            made = _sft_rows(e, structured)
        else:
            made = [{"prompt": render_prompt(e.prompt), "completion": e.reference}]
        for r in made:
            if with_tools:
                r[TOOLS_FIELD] = json.dumps(e.tools) if e.tools else None
            rows.append(r)
    if not rows:
        raise DataError(
            "the sft stage needs rows with a reference output (a final assistant turn, or one of the fields "
            f"{', '.join(REFERENCE_FIELDS)}); none has one. Remove stages.sft or add references"
        )
    if not chat:
        return datasets.Dataset.from_list(rows)
    features = datasets.Features(
        {"prompt": datasets.List(datasets.Json()), "completion": datasets.List(datasets.Json())}
        | ({TOOLS_FIELD: datasets.Value("string")} if with_tools else {})
    )
    return datasets.Dataset.from_list(rows, features=features)


def grpo_dataset(examples: list[Example], tokenizer: Any = None) -> Any:
    """A ``datasets.Dataset`` for ``trl.GRPOTrainer``: the prompt and the row's index.

    Rows travel by index (column ``_rft_row``) rather than as Arrow columns, so graders get
    the original Python values whatever their types.
    """
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": render_prompt(e.prompt, tokenizer), ROW_INDEX: i} for i, e in enumerate(examples)]
    )
