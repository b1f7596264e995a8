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

Groups: TRL's batch holds ``num_generations`` completions of each prompt, one after
another. The bridge hands the executor one group key per completion (consecutive
completions of the same row, ``num_generations`` at most), so a group grader
(``@rft.grader(group=True)``) gets exactly the completions TRL compares.

Advantage shares: per batch, the bridge computes how much each grader moved the
advantage — per completion, the grader's weighted deviation from its group mean, scaled
the way TRL scales (``scale_rewards``, ``multi_objective_aggregation``), summed in absolute
value and divided by the sum over all graders — and logs it as
``graders/<id>/advantage_share`` (in [0, 1]; the graders' shares sum to 1 unless no
grader moved the advantage, then all are 0). :meth:`RewardBridge.use_trl_args` reads the
settings from the ``GRPOConfig``. With a formula the reward is not a weighted sum and no
share is logged.

Example (with any executor)::

    bridge = RewardBridge(grader_set, executor, rows=[...], rollouts_path="run/rollouts.jsonl")
    GRPOTrainer(..., reward_funcs=bridge.reward_funcs(), args=GRPOConfig(reward_weights=bridge.reward_weights, ...))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rft.core import GraderSet, Sample
from rft.core.parsing import completion_text
from rft.data import ROW_INDEX, RowFields
from rft.train.episodes import episode_metrics, trajectory_sample

logger = logging.getLogger(__name__)

__all__ = [
    "ADVANTAGE_SHARE",
    "COMBINED_REWARD",
    "RewardBridge",
    "add_completion_ids",
    "advantage_shares",
    "row_is_conversational",
    "trainer_state_snapshot",
]

#: Name of the combined reward function when the grader set has a formula.
COMBINED_REWARD = "reward"
#: The metric of each grader's share of the advantage: ``graders/<id>/advantage_share``.
ADVANTAGE_SHARE = "graders/{id}/advantage_share"
#: TRL's epsilon in the advantage's denominator.
_EPS = 1e-4
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


def _nanmean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _nanstd(values: Sequence[float | None]) -> float:
    """Sample standard deviation of the known values (TRL's ``nanstd``: Bessel-corrected)."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return 0.0
    mean = sum(known) / len(known)
    return math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))


def _scale_name(value: Any) -> str:
    """TRL's ``scale_rewards`` as a name (``True`` is ``group``, ``False`` is ``none``)."""
    if value is True:
        return "group"
    if value is False:
        return "none"
    return str(value)


def advantage_shares(
    scores: Mapping[str, Sequence[float | None]],
    weights: Mapping[str, float],
    groups: Sequence[Sequence[int]],
    *,
    scale_rewards: str | bool = "group",
    aggregation: str = "sum_then_normalize",
) -> dict[str, float]:
    """Each grader's share of the batch's advantage magnitude, as TRL forms the advantage.

    Per completion ``j`` of group ``g``, grader ``i`` contributes
    ``w_i · (r_ij − mean_g r_i) / s_j`` to the advantage, where ``s_j`` is what TRL divides
    by: the std of the summed reward in the group (``scale_rewards: group``) or in the
    batch (``batch``), 1 for ``none``; with ``multi_objective_aggregation:
    normalize_then_sum`` each grader's deviation is divided by its own std in the group
    (the common batch scale cancels). A grader's share is the sum of the absolute values
    of its contributions over the sum for all graders. A None score (not applicable)
    contributes nothing; means and stds skip it, as TRL's nan-aware ones do.

    Args:
        scores: grader id → one score per completion.
        weights: grader id → weight (graders of weight 0 get share 0).
        groups: the indices of each group's completions.
        scale_rewards: TRL's ``scale_rewards`` (``group``/``batch``/``none``, or a bool).
        aggregation: TRL's ``multi_objective_aggregation``.

    Returns:
        grader id → share in [0, 1]; all 0 when no grader moved the advantage.

    >>> advantage_shares({"a": [1.0, 0.0], "b": [0.5, 0.5]}, {"a": 1.0, "b": 1.0}, [[0, 1]])
    {'a': 1.0, 'b': 0.0}
    """
    scale = _scale_name(scale_rewards)
    ids = list(scores)
    n = max((len(v) for v in scores.values()), default=0)
    totals = [
        None
        if all(scores[i][j] is None for i in ids)
        else sum(weights.get(i, 1.0) * (scores[i][j] or 0.0) for i in ids if scores[i][j] is not None)
        for j in range(n)
    ]
    denom = [1.0] * n
    if aggregation == "sum_then_normalize" and scale == "batch":
        denom = [_nanstd(totals) + _EPS] * n
    contrib = dict.fromkeys(ids, 0.0)
    for g in groups:
        if aggregation == "sum_then_normalize" and scale == "group":
            sd = _nanstd([totals[j] for j in g]) + _EPS
            for j in g:
                denom[j] = sd
        for i in ids:
            w = weights.get(i, 1.0)
            col = [scores[i][j] for j in g]
            mean = _nanmean(col)
            if w == 0 or mean is None:
                continue
            own = _nanstd(col) + _EPS if aggregation == "normalize_then_sum" else 1.0
            contrib[i] += sum(abs(w * (v - mean) / own / denom[j]) for j, v in zip(g, col) if v is not None)
    total = sum(contrib.values())
    return {i: (c / total if total > 0 else 0.0) for i, c in contrib.items()}


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
        #: TRL's settings the bridge mirrors (set by :meth:`use_trl_args`)
        self.num_generations: int | None = None
        self.scale_rewards: str = "group"
        self.multi_objective_aggregation: str = "sum_then_normalize"

    def use_trl_args(self, args: Any) -> None:
        """Read ``num_generations``, ``scale_rewards`` and ``multi_objective_aggregation``
        from the trainer's ``GRPOConfig`` (or a mapping of its arguments): the size of a
        group for group graders and how TRL forms the advantage, for the shares."""
        get = args.get if isinstance(args, Mapping) else (lambda k, d=None: getattr(args, k, d))
        n = get("num_generations", None)
        self.num_generations = int(n) if n else None
        self.scale_rewards = _scale_name(get("scale_rewards", "group"))
        self.multi_objective_aggregation = str(get("multi_objective_aggregation", "sum_then_normalize"))

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
        among the graders get exactly that. With an environment, TRL passes each
        completion's episode (``environments``): the sample is the whole trajectory, with the
        episode's state and summary (:func:`rft.train.episodes.trajectory_sample`).
        """
        state = kwargs.get("trainer_state")
        step = int(state.global_step) if state is not None else None
        snapshot = trainer_state_snapshot(state)
        ids = kwargs.get("completion_ids")
        columns = {k: v for k, v in kwargs.items() if k not in _TRL_KWARGS}
        episodes = kwargs.get("environments")  # TRL's episode per completion, with an environment
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
            if episodes is not None and isinstance(completion, list):  # a multi-turn episode (agentic RFT)
                out.append(
                    trajectory_sample(
                        list(prompt),
                        [dict(m) for m in completion],
                        episodes[i],
                        item=item,
                        step=step,
                        completion_ids=[int(t) for t in ids[i]] if ids is not None else None,
                        trainer_state=snapshot,
                    )
                )
                continue
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

    def group_keys(self, samples: Sequence[Sample], kwargs: Mapping[str, Any]) -> list[Hashable]:
        """One group key per completion: TRL puts the ``num_generations`` completions of a
        prompt one after another, so a group is a run of consecutive completions of the
        same row (by ``_rft_row``, else by prompt), cut every ``num_generations``."""
        rows = kwargs.get(ROW_INDEX)
        ident: list[Any] = (
            [int(r) for r in rows]
            if rows is not None
            else [json.dumps(s.prompt, sort_keys=True, default=str) for s in samples]
        )
        keys: list[Hashable] = []
        group, size = -1, 0
        for i, key in enumerate(ident):
            if i == 0 or key != ident[i - 1] or (self.num_generations and size >= self.num_generations):
                group, size = group + 1, 0
            size += 1
            keys.append(group)
        return keys

    def _shares(self, result: Any, keys: Sequence[Hashable]) -> dict[str, float]:
        if self.grader_set.formula or not result.outcomes:
            return {}
        members: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            members.setdefault(key, []).append(i)
        shares = advantage_shares(
            {e.id: result.scores(e.id) for e in self.grader_set},
            {e.id: e.weight for e in self.grader_set},
            list(members.values()),
            scale_rewards=self.scale_rewards,
            aggregation=self.multi_objective_aggregation,
        )
        return {ADVANTAGE_SHARE.format(id=gid): v for gid, v in shares.items()}

    def score_batch(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        """Score a TRL batch once for every grader; later calls with the same batch hit the cache."""
        with self._lock:
            cached = self._cached
            if cached is not None and cached[0] is prompts and cached[1] is completions:
                return cached[2]
            samples = self.samples(prompts, completions, kwargs)
            step = samples[0].step if samples else None
            keys = self.group_keys(samples, kwargs)
            # GraderError (error budget exceeded) propagates and stops training with its message.
            if any(e.grader.group for e in self.grader_set):
                result = self.executor.score(samples, step=step, groups=keys)
            else:  # any executor-like object keeps working without group support
                result = self.executor.score(samples, step=step)
            result.metrics.update(self._shares(result, keys))
            result.metrics.update(episode_metrics(samples))  # agentic runs: success and tool use per step
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
                episode = getattr(sample, "episode", None)
                if episode is not None:  # a multi-turn episode: the whole trajectory, its summary and state
                    rec["completion_messages"] = sample.completion_messages
                    rec["episode"] = episode
                    rec["state"] = sample.state
                failed = result.reward_errors[i] if i < len(result.reward_errors) else None
                if failed is not None:  # why the formula gave no reward: shown, not just logged
                    rec["reward_error"] = {"kind": failed.kind, "reason": failed.reason}
                f.write(json.dumps(rec, default=str) + "\n")
