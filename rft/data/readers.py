"""Dataset readers: JSON lines, CSV, Parquet and saved HF datasets, as plain dict rows.

A malformed JSONL line is a :class:`rft.core.errors.DataError` naming the file and line,
unless ``on_bad_row="skip"``, which skips it and records why in a :class:`LoadReport`.
What a row *means* (its prompt, reference and grader inputs) is :mod:`rft.data.rows`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["LoadReport", "iter_jsonl", "iter_jsonl_lines", "load_located_rows", "load_rows", "validate_row"]

#: Roles a chat message may have.
ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass
class LoadReport:
    """What loading found: rows kept, and the lines skipped with why."""

    path: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def validate_row(row: dict[str, Any]) -> None:
    """Check the shape of a chat row: ``messages`` is a non-empty list of ``{role, content}``.

    Raises:
        ValueError: saying which message is wrong and how.
    """
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("`messages` must be a non-empty list")
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m:
                raise ValueError(f"messages[{i}] must be an object with a `role`")
            if m["role"] not in ROLES:
                raise ValueError(f"messages[{i}].role {m['role']!r} is not one of {', '.join(ROLES)}")
            if "content" not in m and "tool_calls" not in m:
                raise ValueError(f"messages[{i}] has neither `content` nor `tool_calls`")


def iter_jsonl(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; blank lines are ignored, a bad line names file:line."""
    for _, row in iter_jsonl_lines(path, on_bad_row=on_bad_row, report=report):
        yield row


def iter_jsonl_lines(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` pairs of a JSONL file (see :func:`iter_jsonl`).

    Raises:
        DataError: a line is not a JSON object or a chat row is malformed (file and line
            named), unless ``on_bad_row="skip"``.
    """
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


def load_rows(path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None) -> list[dict[str, Any]]:
    """Load every row of a dataset file or a saved HF dataset directory.

    Args:
        path: ``*.jsonl``/``*.json`` (JSON lines), ``*.csv``, ``*.parquet``, or a directory
            written by ``datasets.Dataset.save_to_disk``.
        on_bad_row: ``"error"`` (default) or ``"skip"`` (skipped lines are counted in ``report``).
        report: filled with the rows kept and the lines skipped.

    Raises:
        DataError: the file is missing, of an unknown format, or holds a bad row.
    """
    return [row for _, row in load_located_rows(path, on_bad_row=on_bad_row, report=report)]


def load_located_rows(
    path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None
) -> list[tuple[int, dict[str, Any]]]:
    """Like :func:`load_rows`, with each row's line.

    The line is the JSONL/CSV line number, or the 1-based row number for Parquet and HF
    datasets (what error messages show after ``file:``).
    """
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
