"""Stage 1 of the advisor: dataset statistics the decision rules use.

Rows are read through the one row model (:func:`rft.data.to_example`), so the prompts and
references counted here are the ones ``rft train`` trains on: rows with a reference,
label cardinality and entropy (classification), structured outputs (JSON / tool calls),
exact and near-duplicate prompts, multi-step reasoning indicators, eval-split coverage.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rft.advise.thresholds import (
    CLASSIFICATION_MAX_LABEL_RATIO,
    CLASSIFICATION_MAX_LABEL_WORDS,
    CLASSIFICATION_MAX_LABELS,
    CLASSIFICATION_MIN_ROWS,
    LONG_REFERENCE_WORDS,
    NEAR_DUP_MAX_ROWS,
    NEAR_DUP_SIMILARITY,
    REASONING_MIN_SHARE,
    STATS_SAMPLE_ROWS,
    r,
)
from rft.core.errors import DataError
from rft.core.parsing import extract_json, parse_tool_calls
from rft.core.text import percentile
from rft.data import Example, to_example

__all__ = [
    "DatasetStats",
    "Distribution",
    "DuplicateStats",
    "EvalCoverage",
    "LabelStats",
    "PromptStats",
    "ReasoningStats",
    "ReferenceStats",
    "StructuredStats",
    "as_examples",
    "dataset_stats",
    "normalize",
]

_STEP_MARKERS = re.compile(
    r"(?im)^\s*(?:step\s*\d+|\d+[.)]\s)|\b(?:therefore|thus|hence|so the answer|first,|then,|finally,)"
    r"|<think>|\\boxed|####"
)
_EQUATION = re.compile(r"\d\s*[-+*/×÷^]\s*\(?\d[^=\n]*=")
_MATH_PROMPT = re.compile(
    r"\d\s*[-+*/×÷^]\s*\(?\d|\b(?:solve|calculate|compute|how many|how much|prove|equation|integer|probability)\b",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------
# typed results (``to_dict`` gives the ``stats`` object of ``rft advise --json``)
# ---------------------------------------------------------------------------


@dataclass
class Distribution:
    """Mean, 10th/50th/90th percentile and maximum of some lengths."""

    mean: float | None
    p10: float
    p50: float
    p90: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        """The distribution of ``values`` (None for none); percentiles are :func:`rft.core.text.percentile`."""
        if not values:
            return None
        return cls(
            mean=r(statistics.fmean(values), 2),
            p10=percentile(values, 10),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            max=max(values),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class ReferenceStats:
    """Rows with a reference output, where the references came from, and their lengths."""

    rows: int = 0
    share: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    words: Distribution | None = None
    chars: Distribution | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "rows": self.rows,
            "share": self.share,
            "sources": dict(self.sources),
            "words": self.words.to_dict() if self.words else None,
            "chars": self.chars.to_dict() if self.chars else None,
        }


@dataclass
class PromptStats:
    """Prompt lengths, and how many prompts are empty."""

    words: Distribution | None = None
    missing: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {"words": self.words.to_dict() if self.words else None, "missing": self.missing}


@dataclass
class LabelStats:
    """References seen as labels: how many distinct, how spread, whether it is classification."""

    cardinality: int = 0
    entropy_bits: float | None = 0.0
    normalized_entropy: float | None = 0.0
    most_common: str | None = None
    most_common_share: float | None = None
    is_classification: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class StructuredStats:
    """Shares of references that are JSON objects/lists or tool calls."""

    json_share: float | None = 0.0
    tool_call_share: float | None = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class DuplicateStats:
    """Exact duplicate prompts (after normalization) and the share with a near duplicate."""

    exact: int = 0
    exact_share: float | None = 0.0
    near_share: float | None = 0.0
    near_checked_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class ReasoningStats:
    """Multi-step reasoning indicators, and which reached :data:`REASONING_MIN_SHARE`."""

    step_marker_share: float | None = 0.0
    long_reference_share: float | None = 0.0
    multiline_reference_share: float | None = 0.0
    math_prompt_share: float | None = 0.0
    indicators: list[str] = field(default_factory=list)
    helps: bool = False
    sampled_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class EvalCoverage:
    """How the eval split relates to the training rows (size, leakage, label coverage)."""

    rows: int
    ratio_to_train: float | None
    reference_share: float | None
    prompt_overlap_share: float | None
    label_coverage: float | None
    labels_missing_from_train: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class DatasetStats:
    """Everything the advisor measured about the data."""

    rows: int
    columns: list[str]
    format: str
    references: ReferenceStats
    prompts: PromptStats
    labels: LabelStats
    structured: StructuredStats
    duplicates: DuplicateStats
    reasoning: ReasoningStats
    eval: EvalCoverage | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``stats`` object of ``rft advise --json`` (``rft/advise/advice.schema.json``)."""
        return {
            "rows": self.rows,
            "columns": list(self.columns),
            "format": self.format,
            "references": self.references.to_dict(),
            "prompts": self.prompts.to_dict(),
            "labels": self.labels.to_dict(),
            "structured": self.structured.to_dict(),
            "duplicates": self.duplicates.to_dict(),
            "reasoning": self.reasoning.to_dict(),
            "eval": self.eval.to_dict() if self.eval else None,
        }


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def as_examples(rows: Sequence[Example | Mapping[str, Any]], *, source: str = "row") -> list[Example]:
    """Rows as :class:`rft.data.Example` (already normalised ones are kept).

    Raises:
        DataError: a row the row model rejects, named by its 1-based position.
    """
    out: list[Example] = []
    for i, row in enumerate(rows, 1):
        if isinstance(row, Example):
            out.append(row)
            continue
        try:
            out.append(to_example(dict(row), source=f"{source} {i}"))
        except ValueError as err:
            raise DataError(f"{source} {i}: {err}") from None
    return out


def normalize(text: str) -> str:
    """Lower case, words and symbols separated by single spaces ("7+7?" → "7 + 7 ?")."""
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


def _shingles(text: str) -> set[str]:
    """Word 3-grams of a normalized text (the whole text when it has fewer words)."""
    words = text.split()
    if len(words) < 3:
        return {text}
    return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def near_duplicates(texts: Sequence[str], *, similarity: float, seed: int = 0) -> int:
    """How many of ``texts`` (distinct, normalized) have a near duplicate among them.

    Near duplicates have a Jaccard similarity of word 3-gram sets of at least
    ``similarity`` (the usual definition in corpus deduplication, so "What is 7 + 7?"
    and "What is 1 + 5?" are *not* near duplicates). Candidates come from MinHash (32
    hashes) with locality-sensitive hashing in 8 bands of 4, and are checked exactly:
    about linear in rows.
    """
    import numpy as np

    n_hash, bands = 32, 8
    rows_per_band = n_hash // bands
    prime = np.uint64((1 << 61) - 1)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 31, size=n_hash, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=n_hash, dtype=np.uint64)
    sets = [_shingles(t) for t in texts]
    buckets: dict[tuple[int, bytes], list[int]] = {}
    chunk = 2000  # rows hashed per vectorized step (bounds memory)
    for start in range(0, len(sets), chunk):
        part = sets[start : start + chunk]
        lengths = np.fromiter((len(sh) for sh in part), dtype=np.int64, count=len(part))
        x = np.fromiter((zlib.crc32(s.encode()) for sh in part for s in sh), dtype=np.uint64, count=int(lengths.sum()))
        hashed = (x[:, None] * a[None, :] + b[None, :]) % prime
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        sigs = np.minimum.reduceat(hashed, offsets, axis=0)
        keys = sigs.reshape(len(part), bands, rows_per_band)
        for k, row in enumerate(keys):
            for band in range(bands):
                buckets.setdefault((band, row[band].tobytes()), []).append(start + k)
    dup: set[int] = set()
    checked: set[tuple[int, int]] = set()
    for members in buckets.values():
        if len(members) < 2:
            continue
        for i, m in enumerate(members):
            if m in dup:
                continue
            # neighbours within the bucket (capped, so a huge bucket stays linear)
            for other in members[max(0, i - 25) : i + 26]:
                pair = (min(m, other), max(m, other))
                if m == other or pair in checked:
                    continue
                checked.add(pair)
                sx, sy = sets[m], sets[other]
                if len(sx & sy) >= similarity * len(sx | sy):
                    dup.update(pair)
                    break
    return len(dup)


# ---------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------


def _labels(labeled: Sequence[str], words: Sequence[int]) -> tuple[LabelStats, Counter[str]]:
    label_counts = Counter(x.strip() for x in labeled)
    cardinality = len(label_counts)
    n = len(labeled)
    entropy = -sum((c / n) * math.log2(c / n) for c in label_counts.values()) if labeled else 0.0
    median_words = statistics.median(words) if words else 0
    top = label_counts.most_common(1)[0] if label_counts else None
    stats = LabelStats(
        cardinality=cardinality,
        entropy_bits=r(entropy),
        normalized_entropy=r(entropy / math.log2(cardinality)) if cardinality > 1 else 0.0,
        most_common=top[0] if top else None,
        most_common_share=r(top[1] / n) if top else None,
        is_classification=(
            n >= CLASSIFICATION_MIN_ROWS
            and cardinality <= CLASSIFICATION_MAX_LABELS
            and cardinality / n <= CLASSIFICATION_MAX_LABEL_RATIO
            and median_words <= CLASSIFICATION_MAX_LABEL_WORDS
        ),
    )
    return stats, label_counts


def _structured(refs: Sequence[str]) -> StructuredStats:
    n_json = n_tools = 0
    for ref in refs:
        if "{" not in ref and "[" not in ref:  # neither a JSON object/list nor a tool call: skip the parsers
            continue
        if parse_tool_calls(ref):
            n_tools += 1
        else:
            ok, value = extract_json(ref)
            n_json += bool(ok and isinstance(value, (dict, list)))
    m = len(refs)
    return StructuredStats(json_share=r(n_json / m if m else 0.0), tool_call_share=r(n_tools / m if m else 0.0))


def _duplicates(norm: Sequence[str], n: int, seed: int) -> DuplicateStats:
    counts = Counter(norm)
    exact = sum(c - 1 for c in counts.values())
    sample = list(counts)
    if len(sample) > NEAR_DUP_MAX_ROWS:
        sample = random.Random(seed).sample(sample, NEAR_DUP_MAX_ROWS)
    near = near_duplicates(sample, similarity=NEAR_DUP_SIMILARITY, seed=seed) if len(sample) > 1 else 0
    return DuplicateStats(
        exact=exact,
        exact_share=r(exact / n if n else 0.0),
        near_share=r(near / len(sample) if sample else 0.0),
        near_checked_rows=len(sample),
    )


def _reasoning(
    some_refs: Sequence[str], some_prompts: Sequence[str], words: Sequence[int], n_labeled: int
) -> ReasoningStats:
    m = len(some_refs)
    step_share = sum(bool(_STEP_MARKERS.search(x) or _EQUATION.search(x)) for x in some_refs) / m if m else 0.0
    long_share = sum(w >= LONG_REFERENCE_WORDS for w in words) / n_labeled if n_labeled else 0.0
    multiline_share = sum(x.strip().count("\n") >= 2 for x in some_refs) / m if m else 0.0
    math_share = sum(bool(_MATH_PROMPT.search(p)) for p in some_prompts) / len(some_prompts) if some_prompts else 0.0
    fired = [
        name
        for name, value in (("step_markers", step_share), ("long_references", long_share), ("math_prompts", math_share))
        if value >= REASONING_MIN_SHARE
    ]
    return ReasoningStats(
        step_marker_share=r(step_share),
        long_reference_share=r(long_share),
        multiline_reference_share=r(multiline_share),
        math_prompt_share=r(math_share),
        indicators=fired,
        helps=bool(fired),
        sampled_rows=max(m, len(some_prompts)),
    )


def dataset_stats(
    rows: Sequence[Example | Mapping[str, Any]],
    eval_rows: Sequence[Example | Mapping[str, Any]] | None = None,
    *,
    seed: int = 0,
) -> DatasetStats:
    """Statistics of a dataset that the decision rules use.

    Args:
        rows: the training rows (:class:`rft.data.Example` or raw rows, read by the row model).
        eval_rows: the eval split, when there is one (coverage and leakage are measured).
        seed: seed of the sample used for near-duplicate search on very large data.

    Raises:
        DataError: a raw row the row model rejects.

    >>> s = dataset_stats([{"prompt": "a b c", "answer": "x"}, {"prompt": "a b c", "label": "y"}])
    >>> s.rows, s.references.share, s.references.sources, s.duplicates.exact_share
    (2, 1.0, {'answer': 1, 'label': 1}, 0.5)
    """
    examples = as_examples(rows)
    n = len(examples)
    labeled = [e.reference for e in examples if e.reference is not None]
    sources = Counter(e.reference_source for e in examples if e.reference_source is not None)
    prompts = [e.prompt_text for e in examples]
    columns = sorted(set().union(*(e.row.keys() for e in examples))) if examples else []
    words = [len(x.split()) for x in labeled]
    labels, label_counts = _labels(labeled, words)

    # structured outputs and reasoning indicators: regex/parser work, on a sample of big data
    rng = random.Random(seed)
    some_refs = labeled if len(labeled) <= STATS_SAMPLE_ROWS else rng.sample(labeled, STATS_SAMPLE_ROWS)
    some_prompts = prompts if len(prompts) <= STATS_SAMPLE_ROWS else rng.sample(prompts, STATS_SAMPLE_ROWS)
    norm = [normalize(p) for p in prompts]
    coverage = None
    if eval_rows is not None:
        coverage = _eval_coverage(n, as_examples(eval_rows, source="eval row"), norm, label_counts)
    return DatasetStats(
        rows=n,
        columns=columns,
        format="chat" if examples and all(isinstance(e.row.get("messages"), list) for e in examples) else "prompt",
        references=ReferenceStats(
            rows=len(labeled),
            share=r(len(labeled) / n if n else 0.0) or 0.0,
            sources=dict(sorted(sources.items())),
            words=Distribution.of(words),
            chars=Distribution.of([len(x) for x in labeled]),
        ),
        prompts=PromptStats(
            words=Distribution.of([len(p.split()) for p in prompts]), missing=sum(not p for p in prompts)
        ),
        labels=labels,
        structured=_structured(some_refs),
        duplicates=_duplicates(norm, n, seed),
        reasoning=_reasoning(some_refs, some_prompts, words, len(labeled)),
        eval=coverage,
    )


def _eval_coverage(
    n_train: int, eval_examples: Sequence[Example], train_norm: Sequence[str], train_labels: Counter[str]
) -> EvalCoverage:
    train_set = set(train_norm)
    ev_prompts = [normalize(e.prompt_text) for e in eval_examples]
    ev_labels = [e.reference.strip() for e in eval_examples if e.reference is not None]
    m = len(eval_examples)
    return EvalCoverage(
        rows=m,
        ratio_to_train=r(m / n_train if n_train else 0.0),
        reference_share=r(len(ev_labels) / m if m else 0.0),
        prompt_overlap_share=r(sum(p in train_set for p in ev_prompts) / m if m else 0.0),
        label_coverage=r(sum(lbl in train_labels for lbl in ev_labels) / len(ev_labels)) if ev_labels else None,
        labels_missing_from_train=sorted({lbl for lbl in ev_labels if lbl not in train_labels})[:10],
    )
