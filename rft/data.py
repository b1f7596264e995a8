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

from rft.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["load_rows", "LoadReport", "iter_jsonl", "validate_row"]


@dataclass
class LoadReport:
    """What loading found: rows kept, and the lines skipped with why."""

    path: str
    rows: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def iter_jsonl(path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; blank lines are ignored, a bad line names file:line."""
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
                raise DataError(f"{err} (set data.on_bad_row: skip to skip such rows)", file=str(path), line=lineno) from None
            yield row


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
                raise ValueError(f"messages[{i}].role {m['role']!r} is not one of system, user, assistant, tool, developer")
            if "content" not in m and "tool_calls" not in m:
                raise ValueError(f"messages[{i}] has neither `content` nor `tool_calls`")


def load_rows(path: str | Path, *, on_bad_row: str = "error", report: LoadReport | None = None) -> list[dict[str, Any]]:
    """Load every row of a dataset file or a saved HF dataset directory.

    Args:
        path: ``*.jsonl``/``*.json`` (JSON lines), ``*.csv``, ``*.parquet``, or a directory
            written by ``datasets.Dataset.save_to_disk``.
        on_bad_row: ``"error"`` (default) or ``"skip"`` (skipped lines are counted in ``report``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", file=str(path))
    report = report if report is not None else LoadReport(str(path))
    if path.is_dir():
        try:
            import datasets

            ds = datasets.load_from_disk(str(path))
        except Exception as err:
            raise DataError(f"not a saved HF dataset: {err}", file=str(path)) from err
        if isinstance(ds, datasets.DatasetDict):
            split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
        rows = [dict(r) for r in ds]
    elif path.suffix in (".jsonl", ".json", ".ndjson"):
        rows = list(iter_jsonl(path, on_bad_row=on_bad_row, report=report))
    elif path.suffix == ".csv":
        import csv

        with path.open(newline="", encoding="utf-8") as f:
            rows = [dict(r) for r in csv.DictReader(f)]
    elif path.suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise DataError("reading Parquet needs pyarrow (pip install pyarrow)", file=str(path)) from err
        rows = pq.read_table(path).to_pylist()
    else:
        raise DataError("unknown format; use .jsonl, .csv, .parquet or a saved HF dataset directory", file=str(path))
    report.rows = len(rows)
    return rows
