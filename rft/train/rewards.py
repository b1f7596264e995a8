"""GraderSet → TRL reward functions, scored through the scoring engine.

TRL's GRPOTrainer calls each reward function with the whole batch and logs
``rewards/<function name>/mean|std``. :class:`RewardBridge` hands TRL one function per
grader (named by the grader's id) so every grader gets its own curve, and the grader
weights become ``GRPOConfig.reward_weights``. With a formula, TRL gets one combined
function (``reward``, weight 1) plus every grader at weight 0 (logged, not trained on).

The batch is scored once: the first function TRL calls scores every grader through the
executor and caches the :class:`~rft.scoring.BatchResult` keyed by the batch; the others
read their column from it. The same call logs grader latency, errors and cache hits
through TRL's ``log_metric`` and appends the batch to ``rollouts.jsonl``.

Example (with any executor)::

    bridge = RewardBridge(grader_set, executor, rows=[...], rollouts_path="run/rollouts.jsonl")
    GRPOTrainer(..., reward_funcs=bridge.reward_funcs(), args=GRPOConfig(reward_weights=bridge.reward_weights, ...))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rft.core import GraderSet, Sample
from rft.core.parsing import completion_text
from rft.data import ROW_INDEX, RowFields

logger = logging.getLogger(__name__)

__all__ = ["COMBINED_REWARD", "RewardBridge", "add_completion_ids", "row_is_conversational", "trainer_state_snapshot"]

#: Name of the combined reward function when the grader set has a formula.
COMBINED_REWARD = "reward"
_TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "completion_ids", "environments")


def row_is_conversational(row: Mapping[str, Any], fields: RowFields | None = None) -> bool | None:
    """TRL's format of a dataset row: conversational when its prompt is chat messages.

    True for a row with ``messages`` or whose prompt field holds a list of messages, False
    when the prompt is text, None when the row has no prompt column. TRL reward functions
    get prompts and completions in this format (``[{"role": "assistant", "content": …}]``
    or a string), in training, evaluation and ``rft grade`` alike.

    >>> row_is_conversational({"prompt": [{"role": "user", "content": "2+2?"}]}), row_is_conversational({"question": "2+2?"})
    (True, False)
    """
    if isinstance(row.get("messages"), list):
        return True
    for name in (fields or RowFields()).prompt_fields:
        value = row.get(name)
        if value is not None:
            return isinstance(value, list)
    return None


def add_completion_ids(samples: Sequence[Sample], tokenizer: Any) -> None:
    """Set each sample's ``completion_ids`` that is not set yet: the tokenizer's encoding of
    the completion text, without special tokens (what the model generated, less an EOS token)."""
    todo = [s for s in samples if s.completion_ids is None]
    if not todo:
        return
    encoded = tokenizer([s.completion for s in todo], add_special_tokens=False)["input_ids"]
    for s, ids in zip(todo, encoded, strict=True):
        s.completion_ids = [int(t) for t in ids]


def trainer_state_snapshot(state: Any) -> Any:
    """What a grader gets as ``trainer_state``: the trainer state's fields (``global_step``,
    ``max_steps``, ``epoch`` …) as a plain picklable object, without ``log_history``."""
    if state is None:
        return None
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        values = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    else:
        values = dict(vars(state))
    values["log_history"] = []
    values["stateful_callbacks"] = {}
    return SimpleNamespace(**values)


class _RewardFunc:
    """One TRL reward function: a column of the bridge's cached batch result."""

    def __init__(self, bridge: RewardBridge, grader_id: str | None):
        self.bridge = bridge
        self.grader_id = grader_id
        # TRL names reward functions by ``__name__`` (``rewards/<name>/mean`` in the logs).
        self.__name__ = grader_id or COMBINED_REWARD

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        result = self.bridge.score_batch(prompts, completions, **kwargs)
        if self.grader_id is None:
            return list(result.rewards)
        return result.scores(self.grader_id)

    def __repr__(self) -> str:
        return f"<reward function {self.__name__}>"


class RewardBridge:
    """Turns a :class:`~rft.GraderSet` into TRL reward functions backed by an executor.

    Args:
        grader_set: the graders.
        executor: an :class:`rft.scoring.Executor` (from :func:`rft.scoring.make_executor`).
        rows: the dataset rows the ``_rft_row`` column indexes (the graders' inputs);
            without it, the columns TRL passes are used as the row.
        rollouts_path: append every scored sample to this JSONL file.
        on_scored: called with ``(samples, result, step)`` after each batch (for tests, reports).
    """

    def __init__(
        self,
        grader_set: GraderSet,
        executor: Any,
        *,
        rows: Sequence[Mapping[str, Any]] | None = None,
        rollouts_path: str | Path | None = None,
        on_scored: Callable[[list[Sample], Any, int | None], None] | None = None,
    ):
        self.grader_set = grader_set
        self.executor = executor
        self.rows = rows
        self.rollouts_path = Path(rollouts_path) if rollouts_path else None
        self.on_scored = on_scored
        self._lock = threading.Lock()
        self._cached: tuple[Any, Any, Any] | None = None  # (prompts obj, completions obj, BatchResult)
        self.batches_scored = 0

    # -- what TRL gets -----------------------------------------------------------
    def reward_funcs(self) -> list[_RewardFunc]:
        """One function per grader (ids as names); with a formula, ``reward`` first."""
        funcs = [_RewardFunc(self, e.id) for e in self.grader_set]
        if self.grader_set.formula:
            funcs.insert(0, _RewardFunc(self, None))
        return funcs

    @property
    def reward_weights(self) -> list[float]:
        """``GRPOConfig.reward_weights`` matching :meth:`reward_funcs`."""
        if self.grader_set.formula:
            return [1.0] + [0.0] * len(self.grader_set)
        return [float(w) for w in self.grader_set.weights]

    # -- scoring -------------------------------------------------------------------
    def samples(self, prompts: Sequence[Any], completions: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Sample]:
        """The :class:`Sample` of each completion of a TRL batch.

        Each sample keeps what TRL passed: the completion as messages (conversational rows),
        its ``completion_ids`` and a snapshot of ``trainer_state``, so TRL reward functions
        among the graders get exactly that.
        """
        state = kwargs.get("trainer_state")
        step = int(state.global_step) if state is not None else None
        snapshot = trainer_state_snapshot(state)
        ids = kwargs.get("completion_ids")
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS}
        out = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            if self.rows is not None and ROW_INDEX in columns:
                item = dict(self.rows[int(columns[ROW_INDEX][i])])
                conversational = row_is_conversational(item)
            else:
                item = {k: v[i] for k, v in columns.items() if k != ROW_INDEX}
                conversational = None
            if conversational is None:
                conversational = isinstance(prompt, list)
            out.append(
                Sample(
                    completion=completion_text(completion),
                    item=item,
                    prompt=prompt,
                    step=step,
                    completion_messages=list(completion) if conversational and isinstance(completion, list) else None,
                    completion_ids=[int(t) for t in ids[i]] if ids is not None else None,
                    conversational=conversational,
                    trainer_state=snapshot,
                )
            )
        return out

    def score_batch(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        """Score a TRL batch once for every grader; later calls with the same batch hit the cache."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is prompts and cached[1] is completions:
                return cached[2]
            samples = self.samples(prompts, completions, kwargs)
            step = samples[0].step if samples else None
            # GraderError (error budget exceeded) propagates and stops training with its message.
            result = self.executor.score(samples, step=step)
            # Keep references to the batch objects: they cannot be reused by another batch while cached.
            self._cached = (prompts, completions, result)
            self.batches_scored += 1
            log_metric = kwargs.get("log_metric")
            if log_metric is not None:
                for name, value in result.metrics.items():
                    log_metric(name, float(value))
            if self.rollouts_path is not None:
                self._write_rollouts(samples, result, step)
            if self.on_scored is not None:
                self.on_scored(samples, result, step)
            return result

    def _write_rollouts(self, samples: list[Sample], result: Any, step: int | None) -> None:
        self.rollouts_path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        with self.rollouts_path.open("a", encoding="utf-8") as f:  # type: ignore[union-attr]
            for i, (sample, per) in enumerate(zip(samples, result.outcomes, strict=True)):
                rec = {
                    "step": step,
                    "index": i,
                    "prompt": sample.prompt,
                    "completion": sample.completion,
                    "reward": result.rewards[i],
                    "graders": {
                        gid: {
                            k: v
                            for k, v in (
                                ("score", o.score),
                                ("kind", o.kind.value),
                                ("reason", o.reason),
                                ("error", o.error),
                            )
                            if v is not None
                        }
                        for gid, o in per.items()
                    },
                }
                f.write(json.dumps(rec, default=str) + "\n")
