"""TRL's ``GRPOTrainer`` with dynamic sampling and the pass-rate curriculum, through its extension points.

:class:`RFTGRPOTrainer` subclasses ``trl.GRPOTrainer`` and overrides only hooks a subclass
is meant to override; TRL itself is not patched:

- ``_get_train_sampler`` — with the curriculum, a sampler in the format of TRL's
  ``RepeatSampler`` (each prompt ``num_generations`` times, each generation batch repeated for
  its optimisation steps) that draws every batch by the curriculum's weights at that moment.
- ``_calculate_rewards`` — keeps the batch's per-function rewards (TRL's own tensor), so the
  combined reward of each completion is exactly the one TRL trains on.
- ``_generate_and_score_completions`` — after TRL generated and scored a batch: records the
  curriculum outcomes and, with dynamic sampling, replaces zero-variance groups by groups for
  fresh prompts (more calls of TRL's own method), then merges the kept groups into one batch
  of the original size (:func:`merge_generation_outputs`).
- ``_tool_call_loop`` (agentic runs) — an environment's feedback rounds after TRL's tool
  loop (:class:`rft.train.feedback.FeedbackRounds`).
- ``_save_checkpoint`` / ``train`` — write :data:`rft.train.sampling.STATE_FILE` into each
  checkpoint directory (before :class:`rft.train.callbacks.CheckpointMarker` marks it complete)
  and read it back when training resumes from a checkpoint.

Metrics (``dynamic_sampling/*``, ``curriculum/*``) go into TRL's metrics of the step, so they
reach ``metrics.jsonl`` through the same ``on_log`` path as TRL's own.

Both features need one training process (world size 1): the groups of a batch must all be on it
(locally, or one Ray Train learner; :func:`rft.config.run.check_learner_features` refuses more).
Advantages stay TRL's, computed per generation round: with ``scale_rewards: group`` (TRL's
default) a group's advantages do not depend on the other groups, so merging rounds changes
nothing; with ``scale_rewards: batch`` or ``multi_objective_aggregation: normalize_then_sum``
each round is normalised over its own groups. TRL's per-step ``reward`` and
``frac_reward_zero_std`` average every round's completions, the dropped groups included.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Sampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint
from trl import GRPOTrainer

from rft.core.errors import RFTError
from rft.data import ROW_INDEX
from rft.train.feedback import FeedbackRounds
from rft.train.sampling import (
    Curriculum,
    FilterGroups,
    SamplingTotals,
    curriculum_batches,
    group_informative,
    read_state,
    weighted_draw,
    write_state,
)

logger = logging.getLogger(__name__)

__all__ = ["CurriculumSampler", "RFTGRPOTrainer", "merge_generation_outputs"]

#: Per-row outputs of ``GRPOTrainer._generate_and_score_completions`` padded on the left (prompt side)
#: or the right (completion side), with their padding value ("pad": the tokenizer's pad token).
_LEFT_PADDED: dict[str, Any] = {"prompt_ids": "pad", "prompt_mask": 0}
_RIGHT_PADDED: dict[str, Any] = {
    "completion_ids": "pad",
    "completion_mask": 0,
    "tool_mask": 1,
    "old_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "importance_sampling_ratio": 0.0,
}
_PER_ROW = ("advantages",)


def merge_generation_outputs(
    outputs: Sequence[dict[str, Any]], picks: Sequence[tuple[int, int]], group_size: int, pad_token_id: int
) -> dict[str, Any]:
    """One generation batch made of the picked groups of several rounds' outputs.

    Args:
        outputs: what ``GRPOTrainer._generate_and_score_completions`` returned, one per round.
        picks: (round, group) of each group to keep, in order (:meth:`FilterGroups.picks`).
        group_size: completions per group (``num_generations``).
        pad_token_id: the tokenizer's pad token, for token-id tensors.

    Token tensors are re-padded to the widest round (prompts on the left, completions on the
    right, as TRL pads them). ``num_items_in_batch`` is recomputed from the merged masks for
    one process.

    Raises:
        RFTError: an output this merge does not know (multimodal batches), naming it.
    """
    keys = set(outputs[0])
    for out in outputs[1:]:
        if set(out) != keys:
            raise RFTError(
                f"dynamic sampling: generation rounds returned different fields ({sorted(keys ^ set(out))}); "
                "set stages.rft.dynamic_sampling.enabled: false"
            )
    merged: dict[str, Any] = {}
    for key in sorted(keys):
        if key == "num_items_in_batch" or outputs[0][key] is None:
            continue
        if key not in _LEFT_PADDED and key not in _RIGHT_PADDED and key not in _PER_ROW:
            raise RFTError(
                f"dynamic sampling cannot merge the generation output {key!r} (multimodal batches are not "
                "supported); set stages.rft.dynamic_sampling.enabled: false"
            )
        parts = [outputs[r][key][g * group_size : (g + 1) * group_size] for r, g in picks]
        if key in _PER_ROW:
            merged[key] = torch.cat(parts, dim=0)
            continue
        left = key in _LEFT_PADDED
        value = (_LEFT_PADDED if left else _RIGHT_PADDED)[key]
        value = pad_token_id if value == "pad" else value
        width = max(p.size(1) for p in parts)
        padded = [F.pad(p, (width - p.size(1), 0) if left else (0, width - p.size(1)), value=value) for p in parts]
        merged[key] = torch.cat(padded, dim=0)
    loss_mask = merged["completion_mask"]
    if "tool_mask" in merged:
        loss_mask = loss_mask * merged["tool_mask"]
    merged["num_items_in_batch"] = loss_mask.sum()
    return merged


class CurriculumSampler(Sampler[int]):
    """TRL's ``RepeatSampler`` order, with each batch's prompts drawn by the curriculum.

    Yields ``batch_size`` prompts per generation batch, each ``mini_repeat_count`` times in a
    row, the batch ``repeat_count`` times; an epoch has as many batches as TRL's sampler, so
    step and epoch counts are unchanged. Each batch is drawn when the data loader asks for it,
    with the weights of that moment.
    """

    def __init__(
        self, curriculum: Curriculum, *, mini_repeat_count: int, batch_size: int, repeat_count: int, seed: int
    ):
        self.curriculum = curriculum
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.rng = random.Random(seed)

    def __iter__(self) -> Any:
        for batch in curriculum_batches(self.curriculum, self.batch_size, self.rng):
            for _ in range(self.repeat_count):
                for index in batch:
                    for _ in range(self.mini_repeat_count):
                        yield index

    def __len__(self) -> int:
        n = self.curriculum.num_prompts
        return (n // self.batch_size) * self.batch_size * self.mini_repeat_count * self.repeat_count


class RFTGRPOTrainer(FeedbackRounds, GRPOTrainer):
    """``trl.GRPOTrainer`` plus dynamic sampling and the pass-rate curriculum (see the module docs).

    Args:
        dynamic_sampling: a :class:`rft.config.sections.DynamicSamplingSettings` (None or not
            enabled: off).
        curriculum: a :class:`rft.config.sections.CurriculumSettings` (None or not enabled: off).
        pass_threshold: a completion passes when its combined reward is >= this (the run's
            ``eval.pass_threshold``).
        *args, **kwargs: for ``trl.GRPOTrainer``; ``train_dataset`` must have the ``_rft_row``
            column (:func:`rft.data.grpo_dataset`) when either feature is on.
    """

    def __init__(
        self,
        *args: Any,
        dynamic_sampling: Any = None,
        curriculum: Any = None,
        pass_threshold: float = 1.0,
        **kwargs: Any,
    ):
        self.rft_dynamic = dynamic_sampling if dynamic_sampling is not None and dynamic_sampling.enabled else None
        dataset = kwargs.get("train_dataset")
        self.rft_curriculum: Curriculum | None = None
        if curriculum is not None and curriculum.enabled:
            if dataset is None:
                raise RFTError("the curriculum needs the train_dataset")
            self.rft_curriculum = Curriculum.from_settings(len(dataset), curriculum)
        self.rft_pass_threshold = float(pass_threshold)
        self.rft_totals: SamplingTotals | None = SamplingTotals() if self.rft_dynamic is not None else None
        self._rft_rewards_per_func: torch.Tensor | None = None
        super().__init__(*args, **kwargs)
        #: TRL types these loosely (Optional); after __init__ they are set.
        self._group: int = int(self.num_generations or 1)
        self._dataset: Any = self.train_dataset
        if self.rft_dynamic is not None or self.rft_curriculum is not None:
            if self.accelerator.num_processes > 1:
                raise RFTError(
                    "stages.rft.dynamic_sampling and stages.rft.curriculum need a single training process "
                    f"(this run has {self.accelerator.num_processes}); disable them or train with one learner"
                )
            if ROW_INDEX not in (getattr(self._dataset, "column_names", None) or ()):
                raise RFTError(f"dynamic sampling and the curriculum need the {ROW_INDEX!r} column in train_dataset")

    # -- sampling ---------------------------------------------------------------
    def _get_train_sampler(self, dataset: Any = None) -> Any:
        if self.rft_curriculum is None:
            return super()._get_train_sampler(dataset)
        args: Any = self.args
        return CurriculumSampler(
            self.rft_curriculum,
            mini_repeat_count=self._group,
            batch_size=args.generation_batch_size // self._group,
            repeat_count=self.num_iterations * args.steps_per_generation,
            seed=self.args.seed,
        )

    # -- rewards ----------------------------------------------------------------------
    def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rft_rewards_per_func = rewards_per_func
        return rewards_per_func

    def _combined_rewards(self) -> list[float | None]:
        """The last scored batch's combined reward per completion (TRL's weighted sum; None: unscorable)."""
        rpf = self._rft_rewards_per_func
        if rpf is None:
            raise RFTError("internal: no rewards were computed for the generation batch")
        weights = self.reward_weights.to(rpf.device).unsqueeze(0)
        combined = (rpf * weights).nansum(dim=1)
        unscorable = torch.isnan(rpf).all(dim=1)
        return [None if bad else float(v) for v, bad in zip(combined.tolist(), unscorable.tolist(), strict=True)]

    def _record_curriculum(self, inputs: Sequence[dict[str, Any]], rewards: Sequence[float | None]) -> None:
        if self.rft_curriculum is None:
            return
        g = self._group
        for start in range(0, len(inputs), g):
            passes = [None if r is None else r >= self.rft_pass_threshold for r in rewards[start : start + g]]
            self.rft_curriculum.record(int(inputs[start][ROW_INDEX]), passes)

    def _fresh_inputs(self, groups: int, exclude: Sequence[int], round_index: int) -> list[dict[str, Any]]:
        """Rows for ``groups`` fresh prompts, each ``num_generations`` times (seeded by step and round)."""
        n = len(self._dataset)
        rng = random.Random(f"{self.args.seed}:{self.state.global_step}:{round_index}")
        if self.rft_curriculum is not None:
            indices = self.rft_curriculum.draw(groups, rng, exclude=exclude)
        else:
            indices = weighted_draw([1.0] * n, groups, rng, exclude=exclude)
        rows = []
        for i in indices:
            row = dict(self._dataset[int(i)])
            rows += [dict(row) for _ in range(self._group)]
        return rows

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        model: Any = self.model
        if not model.training or (self.rft_dynamic is None and self.rft_curriculum is None):
            return super()._generate_and_score_completions(inputs)
        output = super()._generate_and_score_completions(inputs)
        rewards = self._combined_rewards()
        self._record_curriculum(inputs, rewards)
        if self.rft_dynamic is not None:
            output = self._filter_groups(inputs, output, rewards)
        if self.rft_curriculum is not None:
            for name, value in self.rft_curriculum.metrics().items():
                self._metrics["train"][name].append(value)
        return output

    def _filter_groups(self, inputs: Any, output: dict[str, Any], rewards: list[float | None]) -> dict[str, Any]:
        """Dynamic sampling: more rounds for fresh prompts until the batch's groups are informative."""
        g = self._group
        settings: Any = self.rft_dynamic
        fg = FilterGroups(target=len(inputs) // g, max_rounds=int(settings.max_rounds))
        fg.add_round(group_informative(rewards, g))
        outputs = [output]
        seen = [int(x[ROW_INDEX]) for x in inputs[::g]]
        while fg.needs_more:
            fresh = self._fresh_inputs(fg.missing, seen, len(fg.rounds))
            outputs.append(super()._generate_and_score_completions(fresh))
            fresh_rewards = self._combined_rewards()
            self._record_curriculum(fresh, fresh_rewards)
            fg.add_round(group_informative(fresh_rewards, g))
            seen += [int(x[ROW_INDEX]) for x in fresh[::g]]
        if self.rft_totals is not None:
            self.rft_totals.add(fg, g)
        for name, value in fg.metrics(g).items():
            self._metrics["train"][name].append(value)
        if len(outputs) == 1:
            return output
        merged = merge_generation_outputs(outputs, fg.picks(), g, self._tokenizer.pad_token_id)
        merged["num_items_in_batch"] = self.accelerator.gather(merged["num_items_in_batch"]).sum()
        logger.debug(
            "dynamic sampling: %d rounds, %d of %d groups informative",
            len(fg.rounds),
            fg.informative,
            fg.groups,
        )
        return merged

    # -- checkpoints ------------------------------------------------------------------------
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if (self.rft_curriculum is None and self.rft_totals is None) or not self.args.should_save:
            return
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        write_state(folder, curriculum=self.rft_curriculum, totals=self.rft_totals, step=self.state.global_step)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """``Trainer.train``; resuming from a checkpoint also restores the sampling state it holds."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            checkpoint = get_last_checkpoint(self.args.output_dir)
        if isinstance(checkpoint, str) and (self.rft_curriculum is not None or self.rft_totals is not None):
            self.load_sampling_state(checkpoint)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def load_sampling_state(self, checkpoint: str | Path) -> None:
        """Restore the curriculum and dynamic-sampling totals saved in ``checkpoint``.

        A checkpoint without them (saved before the feature was enabled) starts them fresh,
        with a warning.
        """
        state = read_state(checkpoint)
        source = f"{Path(checkpoint)}"
        if self.rft_curriculum is not None:
            if state is None or "curriculum" not in state:
                logger.warning("%s has no curriculum state; the curriculum starts fresh", source)
            else:
                self.rft_curriculum.load_dict(state["curriculum"], source=source)
                logger.info(
                    "curriculum restored from %s: %d prompts tried, %d retired",
                    source,
                    len(self.rft_curriculum.prompts),
                    len(self.rft_curriculum.retired),
                )
        if self.rft_totals is not None and state is not None and "dynamic_sampling" in state:
            self.rft_totals = SamplingTotals.from_dict(state["dynamic_sampling"])
