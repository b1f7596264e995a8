"""Trainer callbacks shared by the SFT and RFT stages: metrics, checkpoint markers, hand-off check."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rft.core.errors import RFTError

logger = logging.getLogger(__name__)

__all__ = [
    "COMPLETE_MARKER",
    "CheckpointMarker",
    "MetricsWriter",
    "QuietProgress",
    "StopAfterSave",
    "TrainableCheck",
    "last_complete_checkpoint",
    "quiet_console",
]

#: File written into a checkpoint directory once everything in it is on disk.
COMPLETE_MARKER = "rft-complete.json"


def last_complete_checkpoint(directory: str | Path) -> Path | None:
    """The highest-step ``checkpoint-N`` under ``directory`` that has the completion marker.

    A checkpoint without the marker was interrupted while being written and is ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for p in directory.glob("checkpoint-*"):
        suffix = p.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and (p / COMPLETE_MARKER).is_file():
            found.append((int(suffix), p))
    return max(found)[1] if found else None


class MetricsWriter(TrainerCallback):
    """Appends every log record of a stage to ``metrics.jsonl`` (one JSON object per line)."""

    def __init__(self, path: str | Path, stage: str, echo: Any = None):
        self.path = Path(path)
        self.stage = stage
        self.echo = echo
        self._t0 = time.perf_counter()
        self._last = self._t0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._step_time = now - self._last
        self._last = now

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs:
            return
        rec: dict[str, Any] = {"stage": self.stage, "step": int(state.global_step)}
        for k, v in logs.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rec[k] = None if isinstance(v, float) and math.isnan(v) else v
            elif isinstance(v, str):
                rec[k] = v
        if getattr(self, "_step_time", None) is not None and "train_runtime" not in logs:
            rec["step_time_s"] = round(self._step_time, 4)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.echo is not None:
            line = summary_line(self.stage, int(state.global_step), int(state.max_steps), logs)
            if line:
                self.echo(line)


class CheckpointMarker(TrainerCallback):
    """Writes :data:`COMPLETE_MARKER` into each checkpoint after the Trainer finished saving it.

    Transformers writes a checkpoint file by file; a run killed half-way leaves a directory
    that looks like a checkpoint. Resume only trusts directories with this marker.
    """

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not ckpt.is_dir():
            logger.warning("expected checkpoint %s after save; not marking it", ckpt)
            return
        tmp = ckpt / (COMPLETE_MARKER + ".tmp")
        tmp.write_text(json.dumps({"global_step": state.global_step, "time": time.time()}))
        tmp.replace(ckpt / COMPLETE_MARKER)


class TrainableCheck(TrainerCallback):
    """Fails fast when a stage trains nothing (the SFT → RFT adapter hand-off check).

    At the start of training the model must have trainable parameters; after the first
    optimizer step with a non-zero gradient they must have changed. An adapter loaded
    without ``is_trainable=True`` fails the first check; an adapter the optimizer does
    not update fails the second, instead of training nothing while the metrics look healthy.
    """

    def __init__(self, stage: str):
        self.stage = stage
        self._snapshot: dict[str, Any] | None = None
        self.trainable = 0
        self.verified = False

    @staticmethod
    def _trainable(model: Any) -> dict[str, Any]:
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        params = self._trainable(model)
        self.trainable = sum(p.numel() for p in params.values())
        if self.trainable == 0:
            raise RFTError(
                f"the {self.stage} stage has no trainable parameters: the LoRA adapter is frozen "
                "(an adapter loaded without is_trainable=True?). Nothing would be learned; stopping."
            )
        logger.info("%s: %d trainable parameters", self.stage, self.trainable)
        self._snapshot = {n: p.detach().clone() for n, p in params.items()}

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, model: Any = None, **kwargs: Any
    ) -> None:
        if self.verified or self._snapshot is None or not logs or "grad_norm" not in logs:
            return
        import torch

        changed = any(
            not torch.equal(p.detach(), self._snapshot[n])
            for n, p in self._trainable(model).items()
            if n in self._snapshot
        )
        grad_norm = logs.get("grad_norm") or 0.0
        if changed:
            self.verified = True
            self._snapshot = None
            return
        if isinstance(grad_norm, float) and math.isnan(grad_norm):
            return
        if grad_norm > 0:
            raise RFTError(
                f"the {self.stage} stage's trainable parameters did not change after step {state.global_step} "
                f"although the gradient norm was {grad_norm:.3g}: the optimizer is not updating the adapter "
                "(learning_rate 0, or the adapter's parameters are not the ones being optimized)."
            )
        logger.info(
            "%s step %d: zero gradient (equal rewards in every group); trainable check deferred",
            self.stage,
            state.global_step,
        )


class StopAfterSave(TrainerCallback):
    """Raises after the checkpoint of a given step is saved (simulates a kill in tests)."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"simulated kill after checkpoint {state.global_step}")


class QuietProgress(ProgressCallback):
    """Transformers' progress bar without its raw log dicts (one line per step comes from :class:`MetricsWriter`)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None


def quiet_console(trainer: Any, *, progress: bool) -> None:
    """Replace the Trainer's printing of raw log dicts by a quiet progress bar (or nothing)."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(QuietProgress())


def summary_line(stage: str, step: int, max_steps: int, logs: dict[str, Any]) -> str | None:
    """A one-line summary of a training step's logs, or None for non-step records.

    >>> summary_line("rft", 1, 2, {"loss": 0.0, "reward": 0.25, "rewards/exact/mean": 0.25, "step_time": 3.0})
    'rft step 1/2: reward 0.250 (exact 0.250), loss 0.0000, 3.0 s'
    """
    if "loss" not in logs or "train_runtime" in logs:
        return None
    parts = []
    if "reward" in logs:
        per = [
            f"{k[len('rewards/') : -len('/mean')]} {v:.3f}"
            for k, v in logs.items()
            if k.startswith("rewards/") and k.endswith("/mean") and v is not None
        ]
        parts.append(f"reward {logs['reward']:.3f}" + (f" ({', '.join(per)})" if per else ""))
    parts.append(f"loss {logs['loss']:.4f}")
    if logs.get("step_time") is not None:
        parts.append(f"{logs['step_time']:.1f} s")
    return f"{stage} step {step}/{max_steps}: " + ", ".join(parts)
