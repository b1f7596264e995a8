"""The SFT stage: TRL's SFTTrainer with a peft LoRA adapter on rows with reference outputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rft.data import Example, sft_dataset

logger = logging.getLogger(__name__)

__all__ = ["build_sft_trainer"]


def build_sft_trainer(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    trl_args: dict[str, Any],
    lora: Any,
    callbacks: Sequence[Any] = (),
) -> Any:
    """A ``trl.SFTTrainer`` training a fresh LoRA adapter on ``model``.

    Args:
        trl_args: keyword arguments for ``trl.SFTConfig`` (:meth:`rft.config.run.RunConfig.sft_trl_args`).
        lora: the run's :class:`rft.config.run.LoraSettings`.
    """
    from trl import SFTConfig, SFTTrainer

    dataset = sft_dataset(list(examples), tokenizer)
    logger.info("sft: %d rows with a reference output", len(dataset))
    args = SFTConfig(**trl_args)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora.to_peft(),
        callbacks=list(callbacks),
    )
