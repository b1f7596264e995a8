"""Data: dataset readers (:mod:`rft.data.readers`) and the one row model (:mod:`rft.data.rows`)."""

from __future__ import annotations

from rft.data.readers import LoadReport, iter_jsonl, iter_jsonl_lines, load_located_rows, load_rows, validate_row
from rft.data.rows import (
    PROMPT_FIELDS,
    REFERENCE_FIELDS,
    ROW_INDEX,
    TOOLS_FIELD,
    DataSplits,
    Example,
    RowFields,
    common_columns,
    examples_from_rows,
    grpo_dataset,
    load_examples,
    load_splits,
    prompt_for_generation,
    render_prompt,
    sft_dataset,
    to_example,
)

__all__ = [
    "PROMPT_FIELDS",
    "REFERENCE_FIELDS",
    "ROW_INDEX",
    "TOOLS_FIELD",
    "DataSplits",
    "Example",
    "LoadReport",
    "RowFields",
    "common_columns",
    "examples_from_rows",
    "grpo_dataset",
    "iter_jsonl",
    "iter_jsonl_lines",
    "load_examples",
    "load_located_rows",
    "load_rows",
    "load_splits",
    "prompt_for_generation",
    "render_prompt",
    "sft_dataset",
    "to_example",
    "validate_row",
]
