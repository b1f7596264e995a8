"""The RFT stage: TRL's GRPOTrainer with LoRA, rewards from the grader set.

The trainer is :class:`rft.train.trainer.RFTGRPOTrainer` (``trl.GRPOTrainer`` plus dynamic
sampling and the pass-rate curriculum; with both off it behaves as TRL's own).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rft.data import Example, grpo_dataset
from rft.train.rewards import RewardBridge

logger = logging.getLogger(__name__)

__all__ = ["build_grpo_trainer"]


def build_grpo_trainer(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    bridge: RewardBridge,
    *,
    trl_args: dict[str, Any],
    lora: Any = None,
    callbacks: Sequence[Any] = (),
    dynamic_sampling: Any = None,
    curriculum: Any = None,
    pass_threshold: float = 1.0,
    environment: Any = None,
) -> Any:
    """A GRPO trainer with one reward function per grader.

    Args:
        model: a plain model (a fresh LoRA from ``lora`` is added) or a ``PeftModel`` whose
            adapter is trainable (the SFT adapter, continued; ``lora`` must be None).
        bridge: the :class:`RewardBridge` over the grader set and executor.
        trl_args: keyword arguments for ``trl.GRPOConfig`` (:meth:`rft.config.run.RunConfig.rft_trl_args`).
        dynamic_sampling: ``stages.rft.dynamic_sampling`` (:class:`rft.config.sections.DynamicSamplingSettings`).
        curriculum: ``stages.rft.curriculum`` (:class:`rft.config.sections.CurriculumSettings`).
        pass_threshold: a completion passes (for the curriculum) when its combined reward is
            >= this; the pipeline passes ``eval.pass_threshold``.
        environment: an :class:`rft.Environment` for multi-turn rollouts (agentic RFT): TRL's
            ``environment_factory`` runs its episodes (:mod:`rft.train.episodes`), up to its
            ``max_turns`` rounds of tool calls; the tokenizer must render tools
            (:func:`rft.train.chat_tools.ensure_tool_template`).
    """
    from trl import GRPOConfig

    from rft.train.trainer import RFTGRPOTrainer

    dataset = grpo_dataset(list(examples), tokenizer)
    extra: dict[str, Any] = {}
    env_kwargs: dict[str, Any] = {}
    if environment is not None:
        from rft.train.episodes import trl_environment_factory

        extra["max_tool_calling_iterations"] = environment.max_turns
        env_kwargs["environment_factory"] = trl_environment_factory(environment, bridge.rows)
    args = GRPOConfig(**{**trl_args, **extra, "reward_weights": bridge.reward_weights})
    bridge.use_trl_args(args)  # group size and advantage scaling, for group graders and advantage shares
    reward_funcs: list[Any] = list(bridge.reward_funcs())  # callables TRL names by ``__name__``
    return RFTGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora.to_peft() if lora is not None else None,
        callbacks=list(callbacks),
        dynamic_sampling=dynamic_sampling,
        curriculum=curriculum,
        pass_threshold=pass_threshold,
        **env_kwargs,
    )
