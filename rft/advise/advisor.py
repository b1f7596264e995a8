"""The SFT-vs-RFT advisor: dataset statistics, grader checks, a base-model probe, decision rules.

``rft advise DATA`` answers "SFT, RFT, or SFT then RFT?" from measurements rather than
prose. Four parts feed one decision:

1. :func:`dataset_stats` — rows, reference outputs, label cardinality and entropy
   (classification), structured outputs (JSON / tool calls), exact and near-duplicate
   prompts, multi-step reasoning indicators, eval-split coverage.
2. :func:`check_verifiability` — are graders configured, do they accept the data's
   columns, do reference outputs score high, do degenerate outputs (empty, a copy of the
   prompt, long padding, a constant answer) score low. A grader that pays a degenerate
   output is *gameable*; the output and its score are reported.
3. :func:`run_probe` (optional) — K samples for N rows from the base model, graded with
   the same graders: pass@1, pass@K, mean reward, share of prompt groups with zero
   reward variance (no GRPO signal).
4. :func:`decide` — the Fireworks decision tree, refined by the grader checks and the
   probe, then by plugin signals (the ``rft_advisor_signals`` hook). Every step records
   the rule that fired and the numbers it used.

Every threshold is a named module constant, documented where it is defined.

>>> rows = [{"prompt": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no"} for i in range(2000)]
>>> advice = advise(rows)
>>> advice.recommendation, advice.branch
('sft', 'labeled/large')
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import re
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core import GraderSet, Outcome, Sample
from rft.core.errors import ConfigError, PluginError, RFTError
from rft.core.parsing import extract_json, parse_tool_calls
from rft.core.text import shorten

logger = logging.getLogger(__name__)

__all__ = [
    "RECOMMENDATIONS",
    "Advice",
    "ProbeOptions",
    "advise",
    "dataset_stats",
    "check_verifiability",
    "run_probe",
    "collect_signals",
    "decide",
    "pass_at_k",
    "reference_output",
    "prompt_of",
    "score_samples",
    "make_scorer",
    "prompt_text",
    "THRESHOLDS",
    "load_probe_model",
    "write_config",
    "build_config",
    "advice_schema",
]

#: Every value ``recommendation`` can take.
RECOMMENDATIONS = ("sft", "rft", "sft_then_rft", "rft_with_judge", "collect_labels", "none")

# ---------------------------------------------------------------------------
# thresholds (each one is reported in the advice when a rule uses it)
# ---------------------------------------------------------------------------

#: Share of rows with a reference output from which the data counts as labeled.
LABELED_MIN_SHARE = 0.8
#: Labeled rows above which SFT is the default (Fireworks: "more than 1000 examples → SFT").
SFT_MIN_ROWS = 1000
#: Labeled rows from which "does reasoning help?" decides between RFT and SFT
#: (Fireworks: 100–1000 rows). Below it, RFT: too few demonstrations for SFT.
REASONING_BAND_MIN_ROWS = 100
#: Share of rows showing a reasoning indicator from which reasoning is taken to help.
REASONING_MIN_SHARE = 0.3
#: A reference at least this many words long counts as a long (worked) answer.
LONG_REFERENCE_WORDS = 80
#: Classification: at most this many distinct labels…
CLASSIFICATION_MAX_LABELS = 50
#: …at most this many distinct labels per labeled row…
CLASSIFICATION_MAX_LABEL_RATIO = 0.2
#: …a median label of at most this many words, and at least this many labeled rows.
CLASSIFICATION_MAX_LABEL_WORDS = 5
CLASSIFICATION_MIN_ROWS = 20
#: Two prompts whose word 3-gram sets have at least this Jaccard similarity are near duplicates.
NEAR_DUP_SIMILARITY = 0.8
#: Near-duplicate search runs on at most this many prompts (a seeded sample beyond it).
NEAR_DUP_MAX_ROWS = 10_000
#: Reasoning and structured-output shares are measured on at most this many rows (a seeded sample beyond it).
STATS_SAMPLE_ROWS = 5000
#: Grader checks run on at most this many rows (a seeded sample beyond it).
VERIFY_MAX_ROWS = 100
#: References must score at least this share of the reward range for the grader to agree with the data.
REFERENCE_MIN_SCORE = 0.8
#: A degenerate output scoring at least this share of what references score flags the grader as gameable.
GAMEABLE_RELATIVE_SCORE = 0.5
#: The constant answer legitimately scores the share of rows whose reference it is; it is
#: flagged only above that share plus this margin (and above GAMEABLE_RELATIVE_SCORE).
CONSTANT_ANSWER_MARGIN = 0.25
#: Share of grader calls on references that may error before the grader counts as broken.
MAX_REFERENCE_ERROR_SHARE = 0.1
#: A probe sample passes when its reward reaches this share of the reference reward
#: (or of the maximum reward when there are no references).
PASS_FRACTION = 0.9
#: Probe pass@1 below this: the base model rarely succeeds, GRPO sees no reward → warm start first.
PROBE_LOW_PASS = 0.05
#: Probe pass@1 above this: the base model already does the task; little to gain from training.
PROBE_HIGH_PASS = 0.9
#: Share of zero-variance prompt groups from which the probe warns that GRPO gets little signal.
ZERO_SIGNAL_WARN_SHARE = 0.8
#: Unlabeled, unverifiable data with at least this many prompts → RFT with a model judge;
#: fewer → collect labels first.
JUDGE_MIN_ROWS = 100

THRESHOLDS: dict[str, float] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool)
}

#: Row fields that hold a reference output, in order of preference (after an assistant turn);
#: the first two as in :func:`rft.data.rows.to_example`, which training uses.
REFERENCE_FIELDS = ("completion", "answer", "output", "label")
#: Row fields that hold the prompt, in order of preference (after ``messages``).
PROMPT_FIELDS = ("prompt", "question", "input", "instruction", "problem", "query")

#: The long padding output used to probe length-rewarding graders (≈4000 characters).
PADDING_TEXT = "Let me think step by step. " * 150

_STEP_MARKERS = re.compile(
    r"(?im)^\s*(?:step\s*\d+|\d+[.)]\s)|\b(?:therefore|thus|hence|so the answer|first,|then,|finally,)"
    r"|<think>|\\boxed|####"
)
_EQUATION = re.compile(r"\d\s*[-+*/×÷^]\s*\(?\d[^=\n]*=")
_MATH_PROMPT = re.compile(
    r"\d\s*[-+*/×÷^]\s*\(?\d|\b(?:solve|calculate|compute|how many|how much|prove|equation|integer|probability)\b",
    re.IGNORECASE,
)


def _r(x: float | None, n: int = 4) -> float | None:
    return None if x is None else round(float(x), n)


# ---------------------------------------------------------------------------
# rows: prompts and references
# ---------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def prompt_of(row: Mapping[str, Any]) -> str | list[dict[str, Any]] | None:
    """The prompt of a row: chat messages before the last assistant turn, or a prompt field.

    >>> prompt_of({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    [{'role': 'user', 'content': 'hi'}]
    >>> prompt_of({"question": "2+2?", "answer": "4"})
    '2+2?'
    """
    msgs = row.get("messages")
    if isinstance(msgs, list) and msgs:
        last = max(
            (i for i, m in enumerate(msgs) if isinstance(m, dict) and m.get("role") == "assistant"), default=None
        )
        return list(msgs[:last]) if last is not None and last > 0 else list(msgs)
    for key in PROMPT_FIELDS:
        value = row.get(key)
        if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value):
            return list(value)
        if value is not None and not isinstance(value, (dict, list)):
            return str(value)
    return None


def prompt_text(row: Mapping[str, Any]) -> str:
    """The prompt as plain text (the last user message of a chat prompt)."""
    p = prompt_of(row)
    if isinstance(p, list):
        users = [m for m in p if m.get("role") == "user"]
        return _content_text((users or p)[-1].get("content"))
    return p or ""


def reference_output(row: Mapping[str, Any]) -> str | None:
    """The reference output of a row: its last assistant turn, else an answer field.

    Tool calls of an assistant turn are returned as their JSON text.

    >>> reference_output({"prompt": "2+2?", "answer": 4})
    '4'
    >>> reference_output({"prompt": "2+2?"}) is None
    True
    """
    return _reference_and_source(row)[0]


def _reference_and_source(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The reference and where it came from: ``"assistant"`` or the field's name."""
    import json

    msgs = row.get("messages")
    if isinstance(msgs, list) and msgs:
        last = msgs[-1]
        if isinstance(last, dict) and last.get("role") == "assistant":
            if last.get("tool_calls"):
                return json.dumps({"tool_calls": last["tool_calls"]}), "assistant"
            text = _content_text(last.get("content"))
            if text.strip():
                return text, "assistant"
    for key in REFERENCE_FIELDS:
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, (dict, list)):
            return json.dumps(value), key
        return str(value), key
    return None, None


def _normalize(text: str) -> str:
    """Lower case, words and symbols separated by single spaces ("7+7?" → "7 + 7 ?")."""
    return " ".join(re.findall(r"\w+|[^\w\s]", text.lower()))


# ---------------------------------------------------------------------------
# dataset statistics
# ---------------------------------------------------------------------------


def _distribution(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    xs = sorted(values)

    def q(p: float) -> float:
        return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]

    return {"mean": _r(statistics.fmean(xs), 2), "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": xs[-1]}


def _shingles(text: str) -> set[str]:
    """Word 3-grams of a normalized text (the whole text when it has fewer words)."""
    words = text.split()
    if len(words) < 3:
        return {text}
    return {" ".join(words[i : i + 3]) for i in range(len(words) - 2)}


def _near_duplicates(texts: Sequence[str], *, similarity: float, seed: int = 0) -> int:
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
        for i, x in enumerate(members):
            if x in dup:
                continue
            # neighbours within the bucket (capped, so a huge bucket stays linear)
            for y in members[max(0, i - 25) : i + 26]:
                pair = (min(x, y), max(x, y))
                if x == y or pair in checked:
                    continue
                checked.add(pair)
                sx, sy = sets[x], sets[y]
                if len(sx & sy) >= similarity * len(sx | sy):
                    dup.update(pair)
                    break
    return len(dup)


def dataset_stats(
    rows: Sequence[Mapping[str, Any]],
    eval_rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Statistics of a dataset that the decision rules use.

    Args:
        rows: the training rows.
        eval_rows: the eval split, when there is one (coverage and leakage are measured).
        seed: seed of the sample used for near-duplicate search on very large data.

    Returns:
        a JSON-serializable dict; see ``rft/advise/advice.schema.json`` (``stats``).

    >>> s = dataset_stats([{"prompt": "a b c", "answer": "x"}, {"prompt": "a b c", "answer": "y"}])
    >>> s["rows"], s["references"]["share"], s["duplicates"]["exact_share"]
    (2, 1.0, 0.5)
    """
    n = len(rows)
    found = [_reference_and_source(r) for r in rows]
    refs = [ref for ref, _ in found]
    sources = Counter(src for _, src in found if src is not None)
    labeled = [r for r in refs if r is not None]
    prompts = [prompt_text(r) for r in rows]
    columns = sorted(set().union(*(r.keys() for r in rows))) if rows else []

    # references and labels
    label_counts = Counter(r.strip() for r in labeled)
    cardinality = len(label_counts)
    entropy = -sum((c / len(labeled)) * math.log2(c / len(labeled)) for c in label_counts.values()) if labeled else 0.0
    words = [len(r.split()) for r in labeled]
    median_words = statistics.median(words) if words else 0
    is_classification = (
        len(labeled) >= CLASSIFICATION_MIN_ROWS
        and cardinality <= CLASSIFICATION_MAX_LABELS
        and cardinality / len(labeled) <= CLASSIFICATION_MAX_LABEL_RATIO
        and median_words <= CLASSIFICATION_MAX_LABEL_WORDS
    )
    top = label_counts.most_common(1)[0] if label_counts else None

    # structured outputs and reasoning indicators: regex/parser work, on a sample of big data
    rng = random.Random(seed)
    some_refs = labeled if len(labeled) <= STATS_SAMPLE_ROWS else rng.sample(labeled, STATS_SAMPLE_ROWS)
    some_prompts = prompts if len(prompts) <= STATS_SAMPLE_ROWS else rng.sample(prompts, STATS_SAMPLE_ROWS)
    n_json = n_tools = 0
    for r in some_refs:
        if "{" not in r and "[" not in r:  # neither a JSON object/list nor a tool call: skip the parsers
            continue
        if parse_tool_calls(r):
            n_tools += 1
        else:
            ok, value = extract_json(r)
            n_json += bool(ok and isinstance(value, (dict, list)))

    # duplicates
    norm = [_normalize(p) for p in prompts]
    counts = Counter(norm)
    exact_dups = sum(c - 1 for c in counts.values())
    distinct = list(counts)
    sample = distinct
    if len(distinct) > NEAR_DUP_MAX_ROWS:
        sample = random.Random(seed).sample(distinct, NEAR_DUP_MAX_ROWS)
    near = _near_duplicates(sample, similarity=NEAR_DUP_SIMILARITY, seed=seed) if len(sample) > 1 else 0
    near_share = near / len(sample) if sample else 0.0

    # reasoning indicators
    m = len(some_refs)
    step_share = sum(bool(_STEP_MARKERS.search(r) or _EQUATION.search(r)) for r in some_refs) / m if m else 0.0
    long_share = sum(w >= LONG_REFERENCE_WORDS for w in words) / len(labeled) if labeled else 0.0
    multiline_share = sum(r.strip().count("\n") >= 2 for r in some_refs) / m if m else 0.0
    math_share = sum(bool(_MATH_PROMPT.search(p)) for p in some_prompts) / len(some_prompts) if some_prompts else 0.0
    fired = [
        name
        for name, value in (("step_markers", step_share), ("long_references", long_share), ("math_prompts", math_share))
        if value >= REASONING_MIN_SHARE
    ]

    stats: dict[str, Any] = {
        "rows": n,
        "columns": columns,
        "format": "chat" if rows and all(isinstance(r.get("messages"), list) for r in rows) else "prompt",
        "references": {
            "rows": len(labeled),
            "share": _r(len(labeled) / n if n else 0.0),
            "sources": dict(sorted(sources.items())),
            "words": _distribution(words),
            "chars": _distribution([len(r) for r in labeled]),
        },
        "prompts": {"words": _distribution([len(p.split()) for p in prompts]), "missing": sum(not p for p in prompts)},
        "labels": {
            "cardinality": cardinality,
            "entropy_bits": _r(entropy),
            "normalized_entropy": _r(entropy / math.log2(cardinality)) if cardinality > 1 else 0.0,
            "most_common": top[0] if top else None,
            "most_common_share": _r(top[1] / len(labeled)) if top else None,
            "is_classification": is_classification,
        },
        "structured": {
            "json_share": _r(n_json / m if m else 0.0),
            "tool_call_share": _r(n_tools / m if m else 0.0),
        },
        "duplicates": {
            "exact": exact_dups,
            "exact_share": _r(exact_dups / n if n else 0.0),
            "near_share": _r(near_share),
            "near_checked_rows": len(sample),
        },
        "reasoning": {
            "step_marker_share": _r(step_share),
            "long_reference_share": _r(long_share),
            "multiline_reference_share": _r(multiline_share),
            "math_prompt_share": _r(math_share),
            "indicators": fired,
            "helps": bool(fired),
            "sampled_rows": max(m, len(some_prompts)),
        },
        "eval": _eval_coverage(rows, eval_rows, norm, label_counts) if eval_rows is not None else None,
    }
    return stats


def _eval_coverage(
    rows: Sequence[Mapping[str, Any]],
    eval_rows: Sequence[Mapping[str, Any]],
    train_norm: Sequence[str],
    train_labels: Counter,
) -> dict[str, Any]:
    train_set = set(train_norm)
    ev_prompts = [_normalize(prompt_text(r)) for r in eval_rows]
    ev_refs = [reference_output(r) for r in eval_rows]
    ev_labels = [r.strip() for r in ev_refs if r is not None]
    m = len(eval_rows)
    return {
        "rows": m,
        "ratio_to_train": _r(m / len(rows) if rows else 0.0),
        "reference_share": _r(len(ev_labels) / m if m else 0.0),
        "prompt_overlap_share": _r(sum(p in train_set for p in ev_prompts) / m if m else 0.0),
        "label_coverage": _r(sum(lbl in train_labels for lbl in ev_labels) / len(ev_labels)) if ev_labels else None,
        "labels_missing_from_train": sorted({lbl for lbl in ev_labels if lbl not in train_labels})[:10],
    }


# ---------------------------------------------------------------------------
# scoring (one function, so the engine can be swapped in one place)
# ---------------------------------------------------------------------------


def make_scorer(grader_set: GraderSet) -> Any:
    """The scoring engine's local executor for the advisor (timeouts, retries, worker
    processes), with the error budget disabled: the advisor reports grader errors
    instead of stopping at them. None when the engine is not installed."""
    if importlib.util.find_spec("rft.scoring.local") is None:
        return None
    from rft.scoring import make_executor

    return make_executor(grader_set, "local", error_budget=1.0)


def score_samples(
    grader_set: GraderSet, samples: Sequence[Sample], *, executor: Any = None
) -> tuple[list[dict[str, Outcome]], list[float | None]]:
    """Score samples with every grader of the set: per-sample outcomes and combined rewards.

    Args:
        executor: an open executor (from :func:`make_scorer`) to reuse; None opens one
            for this call (or grades in this process when the engine is not installed).
    """
    if not samples:
        return [], []
    if executor is not None:
        result = executor.score(list(samples))
        return result.outcomes, result.rewards
    own = make_scorer(grader_set)
    if own is not None:
        with own as ex:
            result = ex.score(list(samples))
        return result.outcomes, result.rewards
    outcomes: list[dict[str, Outcome]] = [{} for _ in samples]
    for entry in grader_set:
        for i, out in enumerate(entry.grader.grade(samples)):
            outcomes[i][entry.id] = entry.apply_policy(out)
    rewards = [grader_set.combine({gid: o.score for gid, o in per.items()}) for per in outcomes]
    return outcomes, rewards


def _reward_bounds(grader_set: GraderSet) -> tuple[float, float]:
    """The lowest and highest reward, from each grader's declared range (else [0, 1])."""
    lows = {e.id: (e.grader.range[0] if e.grader.range else 0.0) for e in grader_set}
    highs = {e.id: (e.grader.range[1] if e.grader.range else 1.0) for e in grader_set}
    try:
        lo, hi = grader_set.combine(lows), grader_set.combine(highs)
    except Exception as err:  # a formula that does not evaluate at the bounds
        logger.debug("reward bounds: formula failed at the range bounds: %s", err)
        lo, hi = 0.0, 1.0
    lo = 0.0 if lo is None else lo
    hi = 1.0 if hi is None else hi
    return (min(lo, hi), max(lo, hi)) if lo != hi else (lo, lo + 1.0)


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def _first_error(outcomes: Sequence[Mapping[str, Outcome]]) -> str | None:
    for per in outcomes:
        for gid, o in per.items():
            if o.kind.is_error:
                return f"{gid}: {o.error}"
    return None


def _n_errors(outcomes: Sequence[Mapping[str, Outcome]]) -> int:
    return sum(o.kind.is_error for per in outcomes for o in per.values())


# ---------------------------------------------------------------------------
# verifiability
# ---------------------------------------------------------------------------


def check_verifiability(
    rows: Sequence[Mapping[str, Any]],
    grader_set: GraderSet | None,
    *,
    max_rows: int = VERIFY_MAX_ROWS,
    seed: int = 0,
    executor: Any = None,
) -> dict[str, Any]:
    """Check that the graders can be trusted as a reward on this data.

    Grades the reference outputs (they should score high) and degenerate outputs
    (they should score low): ``empty``, ``prompt_copy`` (the prompt repeated back),
    ``padding`` (:data:`PADDING_TEXT`, ≈4000 characters) and ``constant`` (the most common
    reference, for every row). A degenerate output whose mean reward reaches
    :data:`GAMEABLE_RELATIVE_SCORE` of the references' (or of the reward range when there
    are no references) makes the grader set *gameable*.

    Args:
        rows: the data.
        grader_set: the graders; None reports "no graders configured".
        max_rows: rows checked (a seeded sample beyond it).
        seed: seed of that sample.
        executor: an open scoring executor to reuse (see :func:`make_scorer`).

    Returns:
        a JSON-serializable dict; ``verifiable`` is True when graders are configured,
        accept the columns, agree with the references and are not gameable.
    """
    out: dict[str, Any] = {
        "graders": grader_set.ids if grader_set is not None else [],
        "configured": grader_set is not None,
        "columns_ok": None,
        "columns_error": None,
        "checked_rows": 0,
        "reward_range": None,
        "reference": None,
        "degenerate": [],
        "gameable": False,
        "gameable_outputs": [],
        "problems": [],
        "verifiable": False,
    }
    if grader_set is None:
        out["problems"].append("no graders configured (pass --graders)")
        return out
    columns = set().union(*(r.keys() for r in rows)) if rows else set()
    try:
        grader_set.check_inputs(columns)
        out["columns_ok"] = True
    except ConfigError as err:
        out["columns_ok"] = False
        out["columns_error"] = str(err)
        out["problems"].append(str(err))
        return out

    picked = list(rows)
    if len(picked) > max_rows:
        picked = random.Random(seed).sample(picked, max_rows)
    out["checked_rows"] = len(picked)
    lo, hi = _reward_bounds(grader_set)
    out["reward_range"] = [lo, hi]

    refs = [reference_output(r) for r in picked]
    ref_pairs = [(row, ref) for row, ref in zip(picked, refs) if ref is not None]
    label_counts = Counter(r.strip() for r in refs if r is not None)
    constant = label_counts.most_common(1)[0][0] if label_counts else None
    constant_share = label_counts[constant] / sum(label_counts.values()) if constant is not None else 0.0
    kinds: list[tuple[str, Callable[[Mapping[str, Any]], str]]] = [
        ("empty", lambda row: ""),
        ("prompt_copy", prompt_text),
        ("padding", lambda row: PADDING_TEXT),
    ]
    if constant is not None:
        kinds.append(("constant", lambda row: constant))

    # one scoring call for the references and every degenerate output
    groups: list[tuple[str, list[str], list[Mapping[str, Any]]]] = []
    if ref_pairs:
        groups.append(("reference", [ref for _, ref in ref_pairs], [row for row, _ in ref_pairs]))
    for kind, make in kinds:
        groups.append((kind, [make(row) for row in picked], picked))
    samples = [
        Sample(completion=t, item=row, prompt=prompt_of(row)) for _, texts, rs in groups for t, row in zip(texts, rs)
    ]
    all_outcomes, all_rewards = score_samples(grader_set, samples, executor=executor)
    scored: dict[str, tuple[list[str], list[dict[str, Outcome]], list[float | None]]] = {}
    pos = 0
    for kind, texts, _ in groups:
        scored[kind] = (texts, all_outcomes[pos : pos + len(texts)], all_rewards[pos : pos + len(texts)])
        pos += len(texts)

    ref_mean: float | None = None
    if "reference" in scored:
        _, outcomes, rewards = scored["reference"]
        ref_mean = _mean(rewards)
        errors = _n_errors(outcomes)
        calls = len(outcomes) * len(grader_set)
        rel = None if ref_mean is None else (ref_mean - lo) / (hi - lo)
        out["reference"] = {
            "rows": len(outcomes),
            "mean_reward": _r(ref_mean),
            "relative": _r(rel),
            "per_grader": {gid: _r(_mean([per[gid].score for per in outcomes])) for gid in grader_set.ids},
            "errors": errors,
            "first_error": _first_error(outcomes),
            "ok": rel is not None and rel >= REFERENCE_MIN_SCORE and errors <= MAX_REFERENCE_ERROR_SHARE * calls,
        }
        if errors > MAX_REFERENCE_ERROR_SHARE * calls:
            out["problems"].append(f"graders errored on {errors} of {calls} reference calls: {_first_error(outcomes)}")
        elif rel is None or rel < REFERENCE_MIN_SCORE:
            out["problems"].append(
                f"reference outputs score {_r(ref_mean)} on average, below {REFERENCE_MIN_SCORE:.0%} of the reward "
                f"range [{lo:g}, {hi:g}]: the graders disagree with the data (wrong column or answer format?)"
            )

    # degenerate outputs, relative to what the references score (else to the reward range)
    scale_lo = lo
    scale_hi = ref_mean if ref_mean is not None and ref_mean > lo else hi
    for kind, _ in kinds:
        texts, outcomes, rewards = scored[kind]
        mean = _mean(rewards)
        rel = None if mean is None else (mean - scale_lo) / (scale_hi - scale_lo)
        threshold = GAMEABLE_RELATIVE_SCORE
        if kind == "constant":
            threshold = max(GAMEABLE_RELATIVE_SCORE, constant_share + CONSTANT_ANSWER_MARGIN)
        gameable = rel is not None and rel >= threshold
        best = max(range(len(rewards)), key=lambda i: -math.inf if rewards[i] is None else rewards[i])
        entry = {
            "kind": kind,
            "output": shorten(texts[best]),
            "mean_reward": _r(mean),
            "relative": _r(rel),
            "threshold": _r(threshold),
            "per_grader": {gid: _r(_mean([per[gid].score for per in outcomes])) for gid in grader_set.ids},
            "errors": _n_errors(outcomes),
            "first_error": _first_error(outcomes),
            "gameable": gameable,
        }
        if kind == "constant":
            entry["constant_share"] = _r(constant_share)
        out["degenerate"].append(entry)
        if gameable:
            out["gameable"] = True
            out["gameable_outputs"].append(
                {"kind": kind, "output": entry["output"], "score": entry["mean_reward"], "relative": entry["relative"]}
            )
            out["problems"].append(
                f"gameable: the {kind} output {entry['output']!r} scores {entry['mean_reward']} "
                f"({rel:.0%} of the reference reward, threshold {threshold:.0%})"
            )
        elif entry["errors"]:
            out["problems"].append(f"graders raised on the {kind} output (not a score): {entry['first_error']}")
    ref_ok = out["reference"] is None or out["reference"]["ok"]
    out["verifiable"] = bool(out["columns_ok"] and ref_ok and not out["gameable"])
    return out


# ---------------------------------------------------------------------------
# the base-model probe
# ---------------------------------------------------------------------------


@dataclass
class ProbeOptions:
    """How the base model is probed.

    Attributes:
        model: a model directory, a name :func:`load_probe_model` resolves (e.g.
            ``smollm2-135m-instruct``).
        rows: prompts to sample (a seeded sample of the data).
        samples: completions per prompt (K of pass@K); at least 2 to measure group variance.
        max_new_tokens: tokens per completion; None picks 2× the 90th percentile of the
            reference length in words, plus 16, within [16, 512].
        temperature: sampling temperature (GRPO samples at 1.0 by default).
        pass_score: reward from which a sample passes; None uses :data:`PASS_FRACTION` of
            the reference reward (or of the maximum reward).
        batch_size: sequences generated at once.
        seed: seed of the row sample and of sampling.
        dtype: ``auto`` (bf16 on a GPU that has it, else fp32), ``bfloat16``, ``float32``…
    """

    model: str
    rows: int = 16
    samples: int = 4
    max_new_tokens: int | None = None
    temperature: float = 1.0
    pass_score: float | None = None
    batch_size: int = 32
    seed: int = 0
    dtype: str = "auto"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al., 2021).

    >>> pass_at_k(4, 0, 4), pass_at_k(4, 1, 1), pass_at_k(4, 1, 4)
    (0.0, 0.25, 1.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def load_probe_model(name: str, *, dtype: str = "auto") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer for the probe.

    ``name`` is anything a run config's ``model:`` accepts (:func:`rft.models.resolve.resolve_model`):
    an HF model directory, a ``*.gguf`` file, ``tiny[:DIR]`` or ``smollm2-135m-instruct``
    (the embedded default). Models are never downloaded.

    Raises:
        ConfigError: the name resolves to nothing usable.
    """
    from rft.models.resolve import load_model, resolve_model

    return load_model(resolve_model(name), dtype=dtype)


def _default_max_tokens(rows: Sequence[Mapping[str, Any]]) -> int:
    words = sorted(len(r.split()) for r in (reference_output(x) for x in rows) if r is not None)
    if not words:
        return 256
    p90 = words[min(len(words) - 1, int(0.9 * (len(words) - 1) + 0.5))]
    return max(16, min(512, 2 * p90 + 16))


def _encode_prompt(tok: Any, prompt: str | list[dict[str, Any]] | None) -> list[int]:
    """Token ids of a prompt, rendered exactly as training and evaluation render it: a text
    prompt becomes one user message (:func:`rft.data.rows.to_example`), then the chat template
    when the tokenizer has one, else the turns' contents (:func:`rft.data.rows.render_prompt`)."""
    from rft.data.rows import render_prompt

    msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt or ""}]
    msgs = [{"role": m.get("role", "user"), "content": _content_text(m.get("content"))} for m in msgs]
    rendered = render_prompt(msgs, tok)
    if isinstance(rendered, list):
        rendered = tok.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
    return list(tok(rendered, add_special_tokens=False)["input_ids"])


def run_probe(
    rows: Sequence[Mapping[str, Any]],
    grader_set: GraderSet,
    options: ProbeOptions,
    *,
    reference_reward: float | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
) -> dict[str, Any]:
    """Sample the base model and grade its completions with the same graders.

    Prompts are rendered as training renders them (chat template when the tokenizer has
    one) and sampled as GRPO samples (``temperature``, ``top_p=1``, no top-k); generation
    is batched with left padding. A sample whose grading errors counts as a failure for
    pass@k and is reported under ``errors``.

    Args:
        rows: the dataset; ``options.rows`` of them are sampled.
        grader_set: the graders that will be the reward.
        options: model, sizes, sampling.
        reference_reward: the references' mean reward (sets the pass score).
        model, tokenizer: an already loaded model (else ``options.model`` is loaded).
        progress: called as ``progress(done, total)`` with completions generated so far.
        executor: an open scoring executor to reuse (see :func:`make_scorer`).

    Returns:
        pass@1, pass@K, mean reward, the share of zero-variance prompt groups, and a few
        example completions.
    """
    import torch

    if options.samples < 1 or options.rows < 1:
        raise ConfigError("the probe needs at least 1 row and 1 sample per row", key="probe")
    if model is None or tokenizer is None:
        model, tokenizer = load_probe_model(options.model, dtype=options.dtype)
    tok = tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()

    candidates = [r for r in rows if prompt_of(r) is not None]
    if not candidates:
        raise ConfigError("the probe needs rows with a prompt (`messages` or a prompt field)", key="probe")
    picked = (
        candidates if len(candidates) <= options.rows else random.Random(options.seed).sample(candidates, options.rows)
    )
    k = options.samples
    max_new = options.max_new_tokens or _default_max_tokens(rows)
    lo, hi = _reward_bounds(grader_set)
    pass_score = options.pass_score
    if pass_score is None:
        top = reference_reward if reference_reward is not None and reference_reward > lo else hi
        pass_score = lo + PASS_FRACTION * (top - lo)

    encoded = [_encode_prompt(tok, prompt_of(r)) for r in picked]
    per_batch = max(1, options.batch_size // k)
    completions: list[list[str]] = []
    total = len(picked) * k
    torch.manual_seed(options.seed)
    if progress:
        progress(0, total)
    for start in range(0, len(picked), per_batch):
        batch = encoded[start : start + per_batch]
        enc = tok.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=options.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new,
                num_return_sequences=k,
                pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i in range(len(batch)):
            completions.append(texts[i * k : (i + 1) * k])
        if progress:
            progress(min(total, (start + len(batch)) * k), total)

    samples = [
        Sample(completion=c, item=row, prompt=prompt_of(row)) for row, group in zip(picked, completions) for c in group
    ]
    outcomes, rewards = score_samples(grader_set, samples, executor=executor)
    groups = [rewards[i * k : (i + 1) * k] for i in range(len(picked))]
    p1 = pk = 0.0
    zero_var = 0
    measured = 0
    for g in groups:
        vals = [x for x in g if x is not None]
        c = sum(x >= pass_score for x in vals)
        p1 += pass_at_k(k, c, 1)
        pk += pass_at_k(k, c, k)
        if len(vals) >= 2:
            measured += 1
            zero_var += (max(vals) - min(vals)) <= 1e-9
    examples = [
        {"prompt": shorten(prompt_text(row), 120), "completion": shorten(group[0], 200), "reward": _r(groups[i][0])}
        for i, (row, group) in enumerate(zip(picked, completions))
    ][:3]
    return {
        "model": options.model,
        "rows": len(picked),
        "samples_per_row": k,
        "max_new_tokens": max_new,
        "temperature": options.temperature,
        "pass_score": _r(pass_score),
        "pass_at_1": _r(p1 / len(groups)),
        "pass_at_k": _r(pk / len(groups)),
        "mean_reward": _r(_mean(rewards)),
        "zero_variance_share": _r(zero_var / measured) if measured else None,
        "errors": _n_errors(outcomes),
        "first_error": _first_error(outcomes),
        "mean_completion_words": _r(_mean([len(c.split()) for g in completions for c in g]), 2),
        "examples": examples,
    }


# ---------------------------------------------------------------------------
# plugin signals
# ---------------------------------------------------------------------------


def collect_signals(
    pm: Any,
    rows: Sequence[Mapping[str, Any]],
    stats: Mapping[str, Any],
    *,
    verifiability: Mapping[str, Any] | None = None,
    probe: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Call every ``rft_advisor_signals`` implementation and validate what it returns.

    Each signal gets a ``plugin`` key naming the plugin that contributed it.

    Raises:
        PluginError: a plugin raised, or returned something that is not a list of
            ``{"name", "value", "reason"[, "vote"]}`` dicts; the message names the plugin.
    """
    import json

    kwargs = {"rows": list(rows), "stats": dict(stats), "verifiability": verifiability, "probe": probe}
    signals: list[dict[str, Any]] = []
    for impl in reversed(pm.hook.rft_advisor_signals.get_hookimpls()):
        name = impl.plugin_name
        try:
            result = impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
        except RFTError:
            raise
        except Exception as err:
            raise PluginError(f"plugin {name!r} failed in rft_advisor_signals: {type(err).__name__}: {err}") from err
        if result is None:
            continue
        if not isinstance(result, list):
            raise PluginError(
                f"plugin {name!r}: rft_advisor_signals must return a list of signals or None, got {type(result).__name__}"
            )
        for i, sig in enumerate(result):
            where = f"plugin {name!r}: rft_advisor_signals()[{i}]"
            if not isinstance(sig, Mapping) or not isinstance(sig.get("name"), str) or "value" not in sig:
                raise PluginError(f"{where} must be a dict with a `name` (str), a `value` and a `reason`; got {sig!r}")
            if not isinstance(sig.get("reason", ""), str):
                raise PluginError(f"{where}: `reason` must be a string")
            vote = sig.get("vote")
            if vote is not None and vote not in RECOMMENDATIONS:
                raise PluginError(f"{where}: vote {vote!r} is not one of {', '.join(RECOMMENDATIONS)}")
            try:
                json.dumps(sig["value"])
            except (TypeError, ValueError) as err:
                raise PluginError(f"{where}: `value` must be JSON-serializable ({err})") from err
            signals.append(
                {
                    "name": sig["name"],
                    "value": sig["value"],
                    "reason": sig.get("reason", ""),
                    "vote": vote,
                    "plugin": name,
                }
            )
    return signals


# ---------------------------------------------------------------------------
# decision rules
# ---------------------------------------------------------------------------


@dataclass
class _Step:
    rule: str
    recommendation: str
    because: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "recommendation": self.recommendation,
            "because": self.because,
            "numbers": self.numbers,
        }


def decide(
    stats: Mapping[str, Any],
    verifiability: Mapping[str, Any],
    probe: Mapping[str, Any] | None = None,
    signals: Sequence[Mapping[str, Any]] = (),
) -> list[_Step]:
    """Apply the decision rules; the last step's recommendation is the advice.

    1. The Fireworks tree. Labeled (≥ :data:`LABELED_MIN_SHARE` rows with a reference):
       more than :data:`SFT_MIN_ROWS` → ``sft``; from :data:`REASONING_BAND_MIN_ROWS` to
       :data:`SFT_MIN_ROWS` → ``rft`` if reasoning helps, else ``sft``; fewer → ``rft``.
       Unlabeled: verifiable → ``rft``; else ``rft_with_judge`` with at least
       :data:`JUDGE_MIN_ROWS` prompts, ``collect_labels`` with fewer.
    2. Grader checks: an RFT recommendation with a gameable or disagreeing grader falls
       back to ``sft`` (labeled) or the unverifiable branch (unlabeled).
    3. Probe (only with graders that passed their checks): pass@1 < :data:`PROBE_LOW_PASS`
       turns ``rft`` into ``sft_then_rft`` (labeled) or ``collect_labels`` (unlabeled:
       collect demonstrations); pass@1 > :data:`PROBE_HIGH_PASS` → ``none``; in between,
       RFT is confirmed.
    4. Plugin signals: when every vote agrees, it decides.
    """
    steps: list[_Step] = []
    n = stats["rows"]
    ref = stats["references"]
    labeled_rows, share = ref["rows"], ref["share"]
    labeled = share >= LABELED_MIN_SHARE and labeled_rows > 0
    reasoning = stats["reasoning"]
    verifiable = bool(verifiability.get("verifiable"))
    configured = bool(verifiability.get("configured"))
    common = {"rows": n, "reference_share": share, "LABELED_MIN_SHARE": LABELED_MIN_SHARE}

    def unverifiable_branch(prefix: str, why: str) -> _Step:
        nums = {**common, "JUDGE_MIN_ROWS": JUDGE_MIN_ROWS}
        if n >= JUDGE_MIN_ROWS:
            return _Step(
                f"{prefix}/judge",
                "rft_with_judge",
                f"{why}; {n} prompts ≥ {JUDGE_MIN_ROWS}: train against a model judge (score_model / label_model)",
                nums,
            )
        return _Step(
            f"{prefix}/few_rows",
            "collect_labels",
            f"{why}; only {n} prompts < {JUDGE_MIN_ROWS}: collect reference outputs first",
            nums,
        )

    # 1. the Fireworks tree
    if labeled:
        nums = {
            **common,
            "labeled_rows": labeled_rows,
            "SFT_MIN_ROWS": SFT_MIN_ROWS,
            "REASONING_BAND_MIN_ROWS": REASONING_BAND_MIN_ROWS,
        }
        if labeled_rows > SFT_MIN_ROWS:
            kind = "classification " if stats["labels"]["is_classification"] else ""
            steps.append(
                _Step(
                    "labeled/large",
                    "sft",
                    f"{labeled_rows} labeled {kind}rows > {SFT_MIN_ROWS}: supervised fine-tuning learns them directly",
                    {**nums, "label_cardinality": stats["labels"]["cardinality"]},
                )
            )
        elif labeled_rows >= REASONING_BAND_MIN_ROWS:
            rnums = {
                **nums,
                "step_marker_share": reasoning["step_marker_share"],
                "long_reference_share": reasoning["long_reference_share"],
                "math_prompt_share": reasoning["math_prompt_share"],
                "REASONING_MIN_SHARE": REASONING_MIN_SHARE,
            }
            if reasoning["helps"]:
                steps.append(
                    _Step(
                        "labeled/medium/reasoning",
                        "rft",
                        f"{labeled_rows} labeled rows in [{REASONING_BAND_MIN_ROWS}, {SFT_MIN_ROWS}] and "
                        f"reasoning helps ({', '.join(reasoning['indicators'])} ≥ {REASONING_MIN_SHARE:.0%})",
                        rnums,
                    )
                )
            else:
                steps.append(
                    _Step(
                        "labeled/medium/no_reasoning",
                        "sft",
                        f"{labeled_rows} labeled rows in [{REASONING_BAND_MIN_ROWS}, {SFT_MIN_ROWS}] and no "
                        f"reasoning indicator reaches {REASONING_MIN_SHARE:.0%}",
                        rnums,
                    )
                )
        else:
            steps.append(
                _Step(
                    "labeled/small",
                    "rft",
                    f"only {labeled_rows} labeled rows < {REASONING_BAND_MIN_ROWS}: too few demonstrations for "
                    "SFT; RFT learns from a grader instead",
                    nums,
                )
            )
    elif verifiable:
        steps.append(
            _Step(
                "unlabeled/verifiable",
                "rft",
                f"{share:.0%} of rows have a reference (< {LABELED_MIN_SHARE:.0%}) but the graders verify "
                "outputs without one",
                common,
            )
        )
    else:
        why = "no graders configured" if not configured else "the graders do not pass their checks"
        steps.append(
            unverifiable_branch(
                "unlabeled/not_verifiable",
                f"{share:.0%} of rows have a reference (< {LABELED_MIN_SHARE:.0%}) and {why}",
            )
        )

    # 2. grader checks
    current = steps[-1].recommendation
    if configured and current in ("rft", "sft_then_rft") and not verifiable:
        gameable = verifiability.get("gameable_outputs") or []
        if gameable:
            g = gameable[0]
            why = f"grader is gameable: the {g['kind']} output {g['output']!r} scores {g['score']}"
            nums = {
                "degenerate_score": g["score"],
                "relative": g["relative"],
                "GAMEABLE_RELATIVE_SCORE": GAMEABLE_RELATIVE_SCORE,
            }
        else:
            why = (verifiability.get("problems") or ["the graders failed their checks"])[0]
            ref_v = verifiability.get("reference") or {}
            nums = {"reference_relative": ref_v.get("relative"), "REFERENCE_MIN_SCORE": REFERENCE_MIN_SCORE}
        if labeled:
            steps.append(
                _Step(
                    "graders/unusable",
                    "sft",
                    f"{why}; RFT would optimize that, so SFT on the labels until the grader is fixed",
                    nums,
                )
            )
        else:
            steps.append(unverifiable_branch("graders/unusable", why))

    # 3. probe (its pass rates mean something only when the graders passed their checks)
    current = steps[-1].recommendation
    if probe is not None and probe.get("pass_at_1") is not None and verifiable:
        p1, pk, zv = probe["pass_at_1"], probe["pass_at_k"], probe.get("zero_variance_share")
        nums = {
            "pass_at_1": p1,
            "pass_at_k": pk,
            "zero_variance_share": zv,
            "probe_rows": probe["rows"],
            "samples_per_row": probe["samples_per_row"],
            "PROBE_LOW_PASS": PROBE_LOW_PASS,
            "PROBE_HIGH_PASS": PROBE_HIGH_PASS,
        }
        if p1 > PROBE_HIGH_PASS:
            steps.append(
                _Step(
                    "probe/high_pass",
                    "none",
                    f"the base model already passes {p1:.0%} > {PROBE_HIGH_PASS:.0%} of samples: little to gain "
                    "from fine-tuning (add harder prompts to learn more)",
                    nums,
                )
            )
        elif p1 < PROBE_LOW_PASS and current in ("rft", "rft_with_judge"):
            if labeled:
                steps.append(
                    _Step(
                        "probe/low_pass",
                        "sft_then_rft",
                        f"pass@1 {p1:.0%} < {PROBE_LOW_PASS:.0%} (pass@{probe['samples_per_row']} {pk:.0%}): "
                        "GRPO would see almost no reward; warm start with SFT on the references, then RFT",
                        nums,
                    )
                )
            else:
                steps.append(
                    _Step(
                        "probe/low_pass",
                        "collect_labels",
                        f"pass@1 {p1:.0%} < {PROBE_LOW_PASS:.0%} and no references to warm start from: "
                        "collect demonstrations, SFT, then RFT",
                        nums,
                    )
                )
        elif PROBE_LOW_PASS <= p1 <= PROBE_HIGH_PASS and current in ("rft", "rft_with_judge"):
            extra = ""
            if zv is not None and zv >= ZERO_SIGNAL_WARN_SHARE:
                extra = (
                    f"; but {zv:.0%} of prompt groups have zero reward variance (≥ {ZERO_SIGNAL_WARN_SHARE:.0%}): "
                    "raise num_generations or the temperature"
                )
                nums["ZERO_SIGNAL_WARN_SHARE"] = ZERO_SIGNAL_WARN_SHARE
            steps.append(
                _Step(
                    "probe/learnable",
                    current,
                    f"pass@1 {p1:.0%} is inside the learnable band [{PROBE_LOW_PASS:.0%}, {PROBE_HIGH_PASS:.0%}]"
                    + extra,
                    nums,
                )
            )

    # 4. plugin votes
    votes = Counter(s["vote"] for s in signals if s.get("vote"))
    if len(votes) == 1:
        vote, count = next(iter(votes.items()))
        names = [f"{s['plugin']}:{s['name']}" for s in signals if s.get("vote")]
        if vote != steps[-1].recommendation:
            steps.append(
                _Step("signals/vote", vote, f"plugin signals vote {vote} ({', '.join(names)})", {"votes": count})
            )
    elif len(votes) > 1:
        logger.info("plugin signals disagree (%s); votes ignored", dict(votes))
    return steps


# ---------------------------------------------------------------------------
# the whole advice
# ---------------------------------------------------------------------------


def advice_schema() -> dict[str, Any]:
    """The JSON Schema of ``rft advise --json`` (shipped as ``rft/advise/advice.schema.json``)."""
    import json

    return json.loads((Path(__file__).parent / "advice.schema.json").read_text())


@dataclass
class Advice:
    """The advisor's answer: a recommendation, the rules that led to it, and every number."""

    recommendation: str
    branch: str
    reasons: list[str]
    steps: list[dict[str, Any]]
    stats: dict[str, Any]
    verifiability: dict[str, Any]
    probe: dict[str, Any] | None
    signals: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``rft advise --json`` (schema: ``rft/advise/advice.schema.json``)."""
        return {
            "schema_version": 1,
            "recommendation": self.recommendation,
            "branch": self.branch,
            "reasons": list(self.reasons),
            "steps": list(self.steps),
            "warnings": list(self.warnings),
            "stats": self.stats,
            "verifiability": self.verifiability,
            "probe": self.probe,
            "signals": list(self.signals),
            "thresholds": dict(THRESHOLDS),
            "inputs": dict(self.inputs),
        }


def _warnings(stats: Mapping[str, Any], verif: Mapping[str, Any], probe: Mapping[str, Any] | None) -> list[str]:
    w: list[str] = []
    d = stats["duplicates"]
    if d["exact_share"] and d["exact_share"] > 0.05:
        w.append(f"{d['exact_share']:.0%} of prompts are exact duplicates: deduplicate before training")
    if d["near_share"] and d["near_share"] > 0.1:
        w.append(
            f"{d['near_share']:.0%} of distinct prompts have a near duplicate (similarity ≥ {NEAR_DUP_SIMILARITY:.0%})"
        )
    ev = stats.get("eval")
    if ev is None:
        w.append("no eval split given (--eval): hold out rows to measure the result")
    else:
        if ev["prompt_overlap_share"]:
            w.append(f"{ev['prompt_overlap_share']:.0%} of eval prompts also appear in the training data (leakage)")
        if ev["label_coverage"] is not None and ev["label_coverage"] < 1 and stats["labels"]["is_classification"]:
            w.append(f"eval labels missing from the training data: {', '.join(ev['labels_missing_from_train'])}")
    w.extend(verif.get("problems") or [])
    if probe:
        if not verif.get("verifiable"):
            w.append("probe results were not used: the graders did not pass their checks")
        if probe.get("errors"):
            w.append(f"graders errored on {probe['errors']} probe samples: {probe.get('first_error')}")
        zv = probe.get("zero_variance_share")
        if zv is not None and zv >= ZERO_SIGNAL_WARN_SHARE:
            w.append(f"{zv:.0%} of probe prompt groups score the same on every sample: no GRPO signal there")
    return w


def advise(
    rows: Sequence[Mapping[str, Any]],
    *,
    grader_set: GraderSet | None = None,
    eval_rows: Sequence[Mapping[str, Any]] | None = None,
    probe: ProbeOptions | None = None,
    pm: Any = None,
    progress: Callable[[int, int], None] | None = None,
    inputs: Mapping[str, Any] | None = None,
    probe_model: Any = None,
    probe_tokenizer: Any = None,
) -> Advice:
    """Measure the data (and optionally the base model) and recommend SFT, RFT or both.

    Args:
        rows: the training rows.
        grader_set: the graders that would be the reward (None: unverifiable unless labeled).
        eval_rows: the eval split, if any.
        probe: probe options; None skips the probe. The probe needs a grader set.
        pm: plugin manager whose ``rft_advisor_signals`` implementations are called
            (default: built-ins and installed plugins).
        progress: probe progress callback ``(done, total)``.
        inputs: what the advice was computed from (paths), recorded in the output.
        probe_model, probe_tokenizer: an already loaded model for the probe.

    Raises:
        DataError: no rows.
        ConfigError: a probe without graders.
    """
    from rft.core.errors import DataError

    if not rows:
        raise DataError("the dataset has no rows")
    if probe is not None and grader_set is None:
        raise ConfigError("the probe grades samples: pass --graders with --probe-model", key="probe")
    stats = dataset_stats(rows, eval_rows)
    scorer = make_scorer(grader_set) if grader_set is not None else None
    try:
        verif = check_verifiability(rows, grader_set, executor=scorer)
        probe_result = None
        if probe is not None and grader_set is not None:
            ref = verif.get("reference") or {}
            probe_result = run_probe(
                rows,
                grader_set,
                probe,
                reference_reward=ref.get("mean_reward"),
                progress=progress,
                model=probe_model,
                tokenizer=probe_tokenizer,
                executor=scorer,
            )
    finally:
        if scorer is not None:
            scorer.close()
    if pm is None:
        from rft.plugins import get_plugin_manager

        pm = get_plugin_manager()
    signals = collect_signals(pm, rows, stats, verifiability=verif, probe=probe_result)
    steps = decide(stats, verif, probe_result, signals)
    final = steps[-1]
    return Advice(
        recommendation=final.recommendation,
        branch=" > ".join(s.rule for s in steps),
        reasons=[f"{s.rule}: {s.because}" for s in steps]
        + [f"signal {s['plugin']}:{s['name']}: {s['reason']}" for s in signals],
        steps=[s.to_dict() for s in steps],
        stats=stats,
        verifiability=verif,
        probe=probe_result,
        signals=signals,
        warnings=_warnings(stats, verif, probe_result),
        inputs=dict(inputs or {}),
    )


#: Recommendations that lead to a training config, and the stages each one runs.
_STAGES = {"sft": ("sft",), "rft": ("rft",), "sft_then_rft": ("sft", "rft")}
#: Default model of a written config when no probe model was given (the embedded default).
DEFAULT_CONFIG_MODEL = "smollm2-135m-instruct"
#: Written SFT stage: batch size, and a cap on steps (3 epochs under 500 rows, 2 under 5000, else 1).
SFT_BATCH = 8
SFT_MAX_STEPS = 2000
#: Written RFT stage: prompts per step (batch = this × num_generations), and bounds on steps (one pass).
RFT_PROMPTS_PER_STEP = 2
RFT_MIN_STEPS, RFT_MAX_STEPS = 20, 500


def _rel(path: str | Path, base: Path) -> str:
    import os

    p = Path(path).resolve()
    try:
        return os.path.relpath(p, base)
    except ValueError:  # another drive on Windows
        return str(p)


def _num_generations(probe: Mapping[str, Any] | None) -> int:
    """Group size so that a prompt group holds a passing sample with probability ≥ 1/2."""
    if not probe or not probe.get("pass_at_1"):
        return 8
    p = min(max(probe["pass_at_1"], 1e-6), 0.999)
    g = math.ceil(math.log(0.5) / math.log(1 - p))
    return int(min(16, max(4, g)))


def build_config(
    advice: Advice, path: str | Path, *, grader_set: GraderSet | None = None, model: str | None = None
) -> dict[str, Any]:
    """A starting run config (the format of ``rft train``) for the recommendation.

    Stages follow the recommendation (``sft``, ``rft`` or both); the model is ``model``,
    else the probe model, else :data:`DEFAULT_CONFIG_MODEL`; the graders are the advised ones (a path to the grader-set file, inlined when ``--plugin`` added plugins),
    else ``exact_match`` on an ``answer`` column; sizes come from the data and the probe
    (group size from pass@1, completion length from the references or the probe).

    Raises:
        ConfigError: the recommendation has nothing to train yet (collect labels, add a
            model judge, or nothing to gain), or an RFT stage has no usable grader.
    """
    rec = advice.recommendation
    if rec not in _STAGES:
        why = {
            "collect_labels": "collect reference outputs (or demonstrations) first",
            "rft_with_judge": "add a model-judge grader (score_model / label_model) to a grader-set file and pass it "
            "with --graders",
            "none": "the base model already does the task",
        }[rec]
        raise ConfigError(f"no training config for recommendation {rec!r}: {why}", key="--write-config")
    out = Path(path)
    base = out.parent.resolve()
    inputs = advice.inputs
    stats = advice.stats
    columns = set(stats["columns"])
    stages = _STAGES[rec]

    graders: Any = None
    if inputs.get("graders"):
        if inputs.get("plugins") and grader_set is not None and grader_set.spec is not None:
            spec = dict(grader_set.spec)
            spec["plugins"] = [_rel(p, base) if Path(p).suffix == ".py" else p for p in spec.get("plugins") or []]
            graders = spec
        else:
            graders = _rel(inputs["graders"], base)
    elif "answer" in columns:
        graders = [{"name": "exact_match", "weight": 1.0}]
    if graders is None and "rft" in stages:
        raise ConfigError(
            "the rft stage needs graders: pass --graders (rows have no `answer` column for exact_match)",
            key="--write-config",
        )

    cfg: dict[str, Any] = {
        "seed": 0,
        "output_dir": f"runs/{out.stem}",
        "model": model or inputs.get("probe_model") or DEFAULT_CONFIG_MODEL,
        "data": {"train": _rel(inputs["data"], base) if inputs.get("data") else "train.jsonl"},
    }
    if inputs.get("eval"):
        cfg["data"]["eval"] = _rel(inputs["eval"], base)
    sources = stats["references"].get("sources") or {}
    if "sft" in stages and stats["format"] == "chat" and "assistant" not in sources and len(sources) == 1:
        # chat prompts whose reference is a column: read them as prompt/answer rows so SFT sees it
        cfg["data"].update(format="prompt_answer", prompt_field="messages", answer_field=next(iter(sources)))
    if graders is not None:
        cfg["graders"] = graders
    n = stats["rows"]
    labeled = stats["references"]["rows"]
    cfg["stages"] = {}
    if "sft" in stages:
        epochs = 3 if labeled < 500 else 2 if labeled < 5000 else 1
        steps = min(SFT_MAX_STEPS, max(10, math.ceil(labeled / SFT_BATCH) * epochs))
        cfg["stages"]["sft"] = {"trl": {"max_steps": int(steps), "per_device_train_batch_size": SFT_BATCH}}
    if "rft" in stages:
        g = _num_generations(advice.probe)
        max_len = (advice.probe or {}).get("max_new_tokens") or _default_max_tokens_from_stats(stats)
        cfg["stages"]["rft"] = {
            "num_generations": g,
            "temperature": 1.0,
            "max_completion_length": int(max_len),
            "trl": {
                "max_steps": int(min(RFT_MAX_STEPS, max(RFT_MIN_STEPS, math.ceil(n / RFT_PROMPTS_PER_STEP)))),
                "per_device_train_batch_size": RFT_PROMPTS_PER_STEP * g,
            },
        }
    if graders is None:
        cfg["eval"] = {"enabled": False}
    return cfg


def _default_max_tokens_from_stats(stats: Mapping[str, Any]) -> int:
    words = (stats["references"].get("words") or {}).get("p90")
    return 256 if not words else max(16, min(512, 2 * int(words) + 16))


def write_config(
    advice: Advice, path: str | Path, *, grader_set: GraderSet | None = None, model: str | None = None
) -> Path:
    """Write :func:`build_config` as YAML, validated against the run-config schema first.

    Returns:
        the path written.

    Raises:
        ConfigError: nothing to train for this recommendation, or the config would be invalid.
    """
    import yaml

    from rft.config.run import parse_config

    out = Path(path)
    cfg = build_config(advice, out, grader_set=grader_set, model=model)
    parse_config(cfg, source=str(out), base_dir=out.parent, check_trl=False)
    header = (
        f"# Starting run config written by `rft advise` — recommendation: {advice.recommendation}\n"
        f"# branch: {advice.branch}\n"
        + "".join(f"#   {r}\n" for r in advice.reasons[:6])
        + "# Check sizes (stages.*.trl) against your hardware, then: rft train "
        + f"{out.name} --dry-run\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return out
