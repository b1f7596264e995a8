"""TRL arguments: CPU-safe defaults, and the checks of a stage's ``trl:`` keys at load.

A stage's ``trl:`` mapping goes to ``trl.SFTConfig`` / ``trl.GRPOConfig`` as it is; these
checks run when the run config loads (:func:`rft.config.run.parse_config`), so a typo or a key
rftkit sets itself fails there, naming the file, line and key, not at the first training step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from rft.core.errors import ConfigError, did_you_mean

__all__ = ["MANAGED_TRL_KEYS", "REWARD_OPTIONS", "check_reward_options", "check_trl_keys", "cpu_safe_defaults"]

#: TRL arguments rftkit sets itself; setting them under ``trl:`` is an error naming the right key.
MANAGED_TRL_KEYS = {
    "output_dir": "output_dir (top level)",
    "seed": "seed (top level)",
    "num_generations": "stages.rft.num_generations",
    "temperature": "stages.rft.temperature",
    "top_p": "stages.rft.top_p",
    "max_completion_length": "stages.rft.max_completion_length",
    "reward_weights": "the graders' `weight:` fields",
    "resume_from_checkpoint": "`rft train --resume RUN`",
}


#: TRL's multi-objective reward options (``stages.rft.trl``), passed through to ``GRPOConfig``
#: as they are; their values are checked here so a typo fails at load, naming the line, not
#: at the first training step. ``scale_rewards`` also takes ``true``/``false``.
REWARD_OPTIONS: dict[str, tuple[Any, ...]] = {
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
    "scale_rewards": ("group", "batch", "none", True, False),
}


def cpu_safe_defaults(*, learning_rate: float) -> dict[str, Any]:
    """TRL arguments that work on a CPU-only machine and on a GPU.

    TRL's own defaults assume a GPU (``bf16=True``, ``gradient_checkpointing=True``) and
    full fine-tuning (``learning_rate=1e-6``, far too low for LoRA). These are explicit.

    >>> cpu_safe_defaults(learning_rate=2e-4)["activation_checkpointing"]
    False
    """
    cuda = _cuda_bf16()
    return {
        "learning_rate": learning_rate,
        "bf16": cuda,
        "fp16": False,
        "activation_checkpointing": False,  # transformers 5 name of gradient_checkpointing
        "use_cpu": not _cuda_available(),
        "report_to": "none",
        "dataloader_num_workers": 0,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 50,
        "save_total_limit": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_steps": 20,
    }


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def _cuda_bf16() -> bool:
    if not _cuda_available():
        return False
    import torch

    return bool(torch.cuda.is_bf16_supported())


@functools.cache
def _trl_fields(cls_name: str) -> frozenset[str]:
    import trl

    cls = getattr(trl, cls_name)
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


def check_trl_keys(trl_map: Mapping[str, Any], cls_name: str, stage: str, where: Any) -> None:
    """Refuse keys rftkit sets itself and keys ``trl.<cls_name>`` does not have (with the close match)."""
    valid = _trl_fields(cls_name)
    for key in trl_map:
        path = f"stages.{stage}.trl.{key}"
        if key in MANAGED_TRL_KEYS and not (key in ("temperature", "top_p") and stage == "sft"):
            raise ConfigError(
                f"{key!r} is set by rftkit; set {MANAGED_TRL_KEYS[key]} instead",
                file=where("stages", stage, "trl", key),
                key=path,
            )
        if key not in valid:
            close = did_you_mean(key, valid)
            hint = (
                close.split(" (valid:")[0] if close.startswith("did you mean") else "see the fields of trl." + cls_name
            )
            raise ConfigError(
                f"unknown trl.{cls_name} argument {key!r}; {hint}", file=where("stages", stage, "trl", key), key=path
            )


def check_reward_options(trl_map: Mapping[str, Any], where: Any) -> None:
    """Check the values of TRL's multi-objective options (:data:`REWARD_OPTIONS`) in ``stages.rft.trl``."""
    if not isinstance(trl_map, Mapping):
        return
    for key, valid in REWARD_OPTIONS.items():
        if key not in trl_map:
            continue
        value = trl_map[key]
        if not any(value is v or (isinstance(v, str) and value == v) for v in valid):
            names = [str(v).lower() if isinstance(v, bool) else v for v in valid]
            raise ConfigError(
                f"stages.rft.trl.{key} must be one of {', '.join(map(str, names))}, got {value!r}"
                + (
                    f"; {did_you_mean(value, [v for v in valid if isinstance(v, str)])}"
                    if isinstance(value, str)
                    else ""
                ),
                file=where("stages", "rft", "trl", key),
                key=f"stages.rft.trl.{key}",
            )
