"""Datasets: JSONL (OpenAI/Fireworks chat or prompt/answer), CSV, Parquet, HF datasets on disk.

Rows come back as plain dicts. A malformed row is a :class:`rft.DataError` naming the
file and line, unless ``on_bad_row="skip"``, which skips and counts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import DataError
from rft.core.parsing import decode_arguments

logger = logging.getLogger(__name__)

__all__ = [
    "ROW_INDEX",
    "DataSplits",
    "Example",
    "LoadReport",
    "grpo_dataset",
    "iter_jsonl",
    "iter_jsonl_lines",
    "load_examples",
    "load_located_rows",
    "load_rows",
    "load_splits",
    "render_prompt",
    "sft_dataset",
    "to_example",
    "validate_row",
]


@dataclass
class LoadReport:
    """What loading found: rows kept, and the lines skipped with why."""

    path: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def iter_jsonl(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; blank lines are ignored, a bad line names file:line."""
    for _, row in iter_jsonl_lines(path, on_bad_row=on_bad_row, report=report):
        yield row


def iter_jsonl_lines(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` pairs of a JSONL file (see :func:`iter_jsonl`)."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"expected a JSON object, got {type(row).__name__}")
                validate_row(row)
            except ValueError as err:
                if on_bad_row == "skip":
                    if report is not None:
                        report.skipped.append((lineno, str(err)))
                    logger.warning("%s:%d: skipped: %s", path, lineno, err)
                    continue
                raise DataError(
                    f"{err} (set data.on_bad_row: skip to skip such rows)", file=str(path), line=lineno
                ) from None
            yield lineno, row


def validate_row(row: dict[str, Any]) -> None:
    """Check the shape of a chat row: ``messages`` is a list of ``{role, content}``."""
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("`messages` must be a non-empty list")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m:
                raise ValueError(f"messages[{i}] must be an object with a `role`")
            if m["role"] not in ("system", "user", "assistant", "tool", "developer"):
                raise ValueError(
                    f"messages[{i}].role {m['role']!r} is not one of system, user, assistant, tool, developer"
                )
            if "content" not in m and "tool_calls" not in m:
                raise ValueError(f"messages[{i}] has neither `content` nor `tool_calls`")


def load_rows(path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None) -> list[dict[str, Any]]:
    """Load every row of a dataset file or a saved HF dataset directory.

    Args:
        path: ``*.jsonl``/``*.json`` (JSON lines), ``*.csv``, ``*.parquet``, or a directory
            written by ``datasets.Dataset.save_to_disk``.
        on_bad_row: ``"error"`` (default) or ``"skip"`` (skipped lines are counted in ``report``).
    """
    return [row for _, row in load_located_rows(path, on_bad_row=on_bad_row, report=report)]


def load_located_rows(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """Like :func:`load_rows`, with each row's line: the JSONL/CSV line number, or the
    1-based row number for Parquet and HF datasets (what error messages show after ``file:``)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=str(path))
    report = report if report is not None else LoadReport(str(path))
    rows: list[tuple[int, dict[str, Any]]]
    if path.is_dir():
        try:
            import datasets

            ds = datasets.load_from_disk(str(path))
        except Exception as err:
            raise DataError(f"not a saved HF dataset: {err}", file=str(path)) from err
        if isinstance(ds, datasets.DatasetDict):
            split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
        rows = [(i, dict(r)) for i, r in enumerate(ds, 1)]
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        rows = list(iter_jsonl_lines(path, on_bad_row=on_bad_row, report=report))
    elif path.suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = []
            for r in reader:
                rows.append((reader.line_num, dict(r)))
    elif path.suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise DataError("reading Parquet needs pyarrow (pip install pyarrow)", file=str(path)) from err
        rows = list(enumerate(pq.read_table(path).to_pylist(), 1))
    else:
        raise DataError("unknown format; use .jsonl, .csv, .parquet or a saved HF dataset directory", file=str(path))
    report.rows = len(rows)
    return rows


# ---------------------------------------------------------------------------
# examples: rows in the one shape training and evaluation use
# ---------------------------------------------------------------------------


@dataclass
class Example:
    """One dataset row, normalised.

    Attributes:
        prompt: the prompt as chat messages (``{"role", "content"}``; a text prompt becomes
            one user message).
        reference: the reference output for SFT (a trailing assistant turn, or the
            ``completion``/``answer`` field), None when the row has none.
        row: the original row; its columns are the graders' inputs.
        source: ``file:line`` of the row, for messages.
    """

    prompt: list[dict[str, Any]]
    reference: str | None
    row: dict[str, Any]
    source: str = ""


@dataclass
class DataSplits:
    """Training and held-out examples, with what loading skipped."""

    train: list[Example]
    eval: list[Example]
    reports: list[LoadReport] = field(default_factory=list)

    @property
    def columns(self) -> set[str]:
        """Columns present in every training and held-out row (what graders may ask for)."""
        rows = [e.row for e in self.train + self.eval]
        if not rows:
            return set()
        cols = set(rows[0])
        for r in rows[1:]:
            cols &= set(r)
        return cols

    @property
    def skipped(self) -> int:
        return sum(len(r.skipped) for r in self.reports)


def _message_text(msg: dict[str, Any]) -> str:
    content = msg.get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    if content is None and msg.get("tool_calls"):
        calls = []
        for call in msg["tool_calls"]:
            fn = call.get("function", call)
            args = decode_arguments(fn.get("arguments", {}))
            calls.append("<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}) + "</tool_call>")
        return "\n".join(calls)
    return "" if content is None else str(content)


def _clean_messages(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": _message_text(m)} for m in msgs]


def _reference_field(row: dict[str, Any], answer_field: str | None) -> str | None:
    """The SFT reference from a field: ``answer_field``, else ``completion``, else ``answer``."""
    for f in [answer_field] if answer_field else ["completion", "answer"]:
        if f in row and row[f] is not None:
            value = row[f]
            if isinstance(value, str):
                return value
            if isinstance(value, list) and value:
                return _message_text(value[-1])
            return str(value)
    return None


def to_example(
    row: dict[str, Any],
    *,
    fmt: str = "auto",
    prompt_field: str = "prompt",
    answer_field: str | None = None,
    system_prompt: str | None = None,
    source: str = "",
) -> Example:
    """Normalise one row (raises ``ValueError`` saying what is wrong with it).

    >>> to_example({"prompt": "2+2?", "answer": "4"}).reference
    '4'
    >>> ex = to_example({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
    >>> ex.prompt, ex.reference
    ([{'role': 'user', 'content': 'hi'}], 'hello')
    >>> to_example({"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"}).reference
    '4'
    """
    if fmt == "auto":
        fmt = "chat" if "messages" in row else "prompt_answer"
    if fmt == "chat":
        if "messages" not in row:
            raise ValueError("row has no `messages` (data.format is chat)")
        validate_row(row)
        msgs = _clean_messages(row["messages"])
        reference = None
        if msgs[-1]["role"] == "assistant":
            reference = msgs[-1]["content"]
            msgs = msgs[:-1]
        if not msgs:
            raise ValueError("`messages` has no prompt turn before the assistant's answer")
        if reference is None:  # OpenAI/Fireworks RFT rows: the reference sits in a field beside `messages`
            reference = _reference_field(row, answer_field)
    else:
        if prompt_field not in row:
            cols = ", ".join(sorted(row)) or "none"
            raise ValueError(
                f"row has no {prompt_field!r} (columns: {cols}); set data.prompt_field or use chat rows with `messages`"
            )
        prompt = row[prompt_field]
        if isinstance(prompt, list):
            validate_row({"messages": prompt})
            msgs = _clean_messages(prompt)
        elif isinstance(prompt, str) and prompt.strip():
            msgs = [{"role": "user", "content": prompt}]
        else:
            raise ValueError(f"{prompt_field!r} must be a non-empty string or a list of chat messages, got {prompt!r}")
        reference = _reference_field(row, answer_field)
        if answer_field and answer_field not in row:
            raise ValueError(f"row has no {answer_field!r} (data.answer_field)")
    if system_prompt and msgs[0]["role"] != "system":
        msgs = [{"role": "system", "content": system_prompt}, *msgs]
    return Example(prompt=msgs, reference=reference, row=dict(row), source=source)


def load_examples(
    path: str | Path,
    *,
    fmt: str = "auto",
    prompt_field: str = "prompt",
    answer_field: str | None = None,
    system_prompt: str | None = None,
    on_bad_row: str = "error",
    report: LoadReport | None = None,
) -> list[Example]:
    """Load and normalise every row of a dataset; a bad row names ``file:line``."""
    report = report if report is not None else LoadReport(str(path))
    out = []
    for line, row in load_located_rows(path, on_bad_row=on_bad_row, report=report):
        try:
            out.append(
                to_example(
                    row,
                    fmt=fmt,
                    prompt_field=prompt_field,
                    answer_field=answer_field,
                    system_prompt=system_prompt,
                    source=f"{path}:{line}",
                )
            )
        except ValueError as err:
            if on_bad_row == "skip":
                report.skipped.append((line, str(err)))
                logger.warning("%s:%d: skipped: %s", path, line, err)
                continue
            raise DataError(f"{err} (set data.on_bad_row: skip to skip such rows)", file=str(path), line=line) from None
    report.rows = len(out)
    return out


def load_splits(data: Any, *, seed: int = 0) -> DataSplits:
    """Training and held-out examples for a run config's ``data:`` section.

    Without ``data.eval``, ``data.eval_size`` rows (a fraction below 1, else a count) are
    carved out of the training rows with a seeded shuffle, so the split is the same on
    every run with the same seed.
    """
    import random

    kw = {
        "fmt": data.format,
        "prompt_field": data.prompt_field,
        "answer_field": data.answer_field,
        "system_prompt": data.system_prompt,
        "on_bad_row": data.on_bad_row,
    }
    train_report = LoadReport(str(data.train))
    train = load_examples(data.train, report=train_report, **kw)
    reports = [train_report]
    if data.max_rows is not None:
        train = train[: data.max_rows]
    if not train:
        raise DataError("no usable training rows", file=str(data.train))
    if data.eval is not None:
        eval_report = LoadReport(str(data.eval))
        held = load_examples(data.eval, report=eval_report, **kw)
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
# TRL datasets
# ---------------------------------------------------------------------------

ROW_INDEX = "_rft_row"


def render_prompt(prompt: list[dict[str, Any]], tokenizer: Any = None) -> str | list[dict[str, Any]]:
    """The prompt as TRL wants it: chat messages when the tokenizer has a chat template,
    else plain text (the turns' contents, one per line)."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def sft_dataset(examples: list[Example], tokenizer: Any = None) -> Any:
    """A ``datasets.Dataset`` of prompt/completion pairs for ``trl.SFTTrainer`` (loss on the
    completion only), from the examples that have a reference output."""
    import datasets

    chat = tokenizer is not None and getattr(tokenizer, "chat_template", None)
    rows = []
    for e in examples:
        if e.reference is None:
            continue
        if chat:
            rows.append({"prompt": e.prompt, "completion": [{"role": "assistant", "content": e.reference}]})
        else:
            rows.append({"prompt": render_prompt(e.prompt), "completion": e.reference})
    if not rows:
        raise DataError(
            "the sft stage needs rows with a reference output (a final assistant turn, or a `completion`/`answer` "
            "field); none has one. Remove stages.sft or add references"
        )
    return datasets.Dataset.from_list(rows)


def grpo_dataset(examples: list[Example], tokenizer: Any = None) -> Any:
    """A ``datasets.Dataset`` for ``trl.GRPOTrainer``: the prompt and the row's index.

    Rows travel by index (column ``_rft_row``) rather than as Arrow columns, so graders get
    the original Python values whatever their types.
    """
    import datasets

    return datasets.Dataset.from_list(
        [{"prompt": render_prompt(e.prompt, tokenizer), ROW_INDEX: i} for i, e in enumerate(examples)]
    )
