"""Trainer callbacks: metrics, checkpoint markers and cadence, the hand-off check (both stages);
held-out evaluation during RFT with ``adapter-best/``, and the reward-hacking guard (RFT)."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from rft.core.errors import RFTError
from rft.train.guard import Alarm, Guard, heldout_quality

logger = logging.getLogger(__name__)

__all__ = [
    "BEST_META",
    "COMPLETE_MARKER",
    "GUARD_STATE",
    "CheckpointMarker",
    "GuardCallback",
    "HeldOutEval",
    "MetricsWriter",
    "TimedCheckpoint",
    "QuietProgress",
    "StopAfterSave",
    "TrainableCheck",
    "last_complete_checkpoint",
    "quiet_console",
]

#: File written into a checkpoint directory once everything in it is on disk.
COMPLETE_MARKER = "rft-complete.json"
#: The guard's state inside a checkpoint directory (written before :data:`COMPLETE_MARKER`).
GUARD_STATE = "rft-guard.json"
#: What ``adapter-best/`` holds: its step, its held-out quality and the evaluation's summary.
BEST_META = "rft-best.json"


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


# ---------------------------------------------------------------------------
# checkpoint cadence, held-out evaluation during RFT, the guard
# ---------------------------------------------------------------------------


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


class TimedCheckpoint(TrainerCallback):
    """Asks the Trainer for a checkpoint once ``minutes`` of training passed since the last one.

    Together with TRL's ``save_steps`` (whichever comes first), so a killed run loses at most
    a few minutes. ``clock`` is injectable for tests.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = minutes * 60.0
        self.clock = clock
        self._last = clock()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last = self.clock()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.clock() - self._last >= self.seconds:
            control.should_save = True

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last = self.clock()


class GuardCallback(TrainerCallback):
    """Feeds each RFT step's logs to a :class:`rft.train.guard.Guard` and acts on its alarms.

    Each alarm becomes a record in ``metrics.jsonl`` (``guard/alarm``, ``guard/action``,
    ``guard/message``) and a warning; ``stop`` and ``rollback`` end the stage at that step
    (``stopped`` holds the alarm; the pipeline makes ``adapter/`` the best held-out adapter on
    rollback). The guard's state goes into every checkpoint (:data:`GUARD_STATE`).
    Put it before :class:`CheckpointMarker` so the state is in place before the marker.
    """

    def __init__(self, guard: Guard, metrics_path: str | Path, echo: Callable[[str], None] | None = None):
        self.guard = guard
        self.metrics_path = Path(metrics_path)
        self.echo = echo
        self.stopped: Alarm | None = None

    def restore(self, checkpoint: str | Path) -> None:
        """Load the guard state saved in ``checkpoint`` (resume); a checkpoint without one starts fresh."""
        path = Path(checkpoint) / GUARD_STATE
        if not path.is_file():
            logger.warning("checkpoint %s has no guard state (%s); the guard starts over", checkpoint, GUARD_STATE)
            return
        step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
        self.guard.load_state_dict(json.loads(path.read_text()), upto=step)

    def handle(self, alarms: list[Alarm], control: Any) -> None:
        """Record and act on alarms (also those of held-out evaluations, see :class:`HeldOutEval`)."""
        for alarm in alarms:
            _append_jsonl(self.metrics_path, alarm.to_record())
            line = f"guard alarm ({alarm.kind}) at rft step {alarm.step}, action {alarm.action}: {alarm.message}"
            if self.echo is not None:
                self.echo(line)
            else:
                logger.warning("%s", line)
            if alarm.action in ("stop", "rollback") and self.stopped is None:
                self.stopped = alarm
            if alarm.action in ("stop", "rollback"):
                control.should_training_stop = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not logs or "train_runtime" in logs:
            return
        self.handle(self.guard.observe_train(int(state.global_step), logs), control)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            _write_json_atomic(ckpt / GUARD_STATE, self.guard.state_dict())


class SyncStop(TrainerCallback):
    """Data-parallel learners stop together: rank 0's stop decision is broadcast to the others.

    On Ray Train learners the held-out evaluation and the guard run on rank 0 only (one writer
    of the run directory); a stop they decide must end every learner at the same step, or the
    others would wait forever in the next step's gradient all-reduce. At each step end and each
    log — both reached by every rank at the same steps — rank 0's ``should_training_stop`` goes
    to every rank. Put it after the callbacks that decide. One process: nothing to do.
    """

    def _sync(self, control: Any) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        flag = [bool(control.should_training_stop)]
        dist.broadcast_object_list(flag, src=0)
        control.should_training_stop = bool(flag[0])

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync(control)

    def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._sync(control)


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without disturbing the training's random streams (python, numpy, torch)."""
    import numpy as np
    import torch

    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


class HeldOutEval(TrainerCallback):
    """Evaluates the held-out rows every ``every_steps`` RFT steps and at the last step; keeps the best adapter.

    The adapter with the highest held-out ``best_by`` (:func:`rft.train.guard.heldout_quality`)
    is saved to ``best_dir`` (``adapter-best/``) with :data:`BEST_META`; ties keep the earlier
    one. The stage's starting point counts as step 0 when its evaluation is given
    (``start``, e.g. the SFT eval): the starting adapter is saved, so an RFT stage that only
    made things worse leaves ``adapter-best/`` at the start. Each evaluation is a
    ``metrics.jsonl`` record (``eval/pass_rate``, ``eval/mean_reward``, ``eval/quality``,
    ``eval/<grader>/mean``) and goes to the guard, when there is one.

    Args:
        evaluate: runs :func:`rft.train.eval.evaluate` on a model and returns its summary.
        tokenizer: saved with the adapter.
    """

    def __init__(
        self,
        every_steps: int,
        evaluate: Callable[[Any], dict[str, Any]],
        *,
        best_by: str,
        best_dir: str | Path,
        metrics_path: str | Path,
        tokenizer: Any = None,
        start: dict[str, Any] | None = None,
        guard: GuardCallback | None = None,
        echo: Callable[[str], None] | None = None,
    ):
        self.every_steps = every_steps
        self.evaluate = evaluate
        self.best_by = best_by
        self.best_dir = Path(best_dir)
        self.metrics_path = Path(metrics_path)
        self.tokenizer = tokenizer
        self.start = start
        self.guard = guard
        self.echo = echo
        self.best: dict[str, Any] | None = None
        self.last: tuple[int, dict[str, Any]] | None = None

    def _save_best(self, model: Any, step: int, quality: float, summary: dict[str, Any]) -> None:
        tmp = self.best_dir.with_name(self.best_dir.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(str(tmp), selected_adapters=["default"])
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(tmp))
        self.best = {"step": step, "quality": quality, "best_by": self.best_by, "summary": summary}
        (tmp / BEST_META).write_text(json.dumps(self.best, indent=2, default=str))
        if self.best_dir.exists():
            shutil.rmtree(self.best_dir)
        tmp.replace(self.best_dir)

    def _consider(self, model: Any, step: int, summary: dict[str, Any], control: Any) -> None:
        quality = heldout_quality(summary, self.best_by)
        if quality is not None and (self.best is None or quality > float(self.best["quality"])):
            self._save_best(model, step, quality, summary)
        if self.guard is not None:
            self.guard.handle(self.guard.guard.observe_heldout(step, quality), control)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        meta = self.best_dir / BEST_META
        if meta.is_file():  # resumed: the best adapter so far is on disk, measured in this run
            self.best = json.loads(meta.read_text())
            return
        if self.start is not None and int(state.global_step) == 0:
            self._record(0, self.start)
            self._consider(model, 0, self.start, control)

    def _record(self, step: int, summary: dict[str, Any]) -> float | None:
        quality = heldout_quality(summary, self.best_by)
        record: dict[str, Any] = {
            "stage": "rft",
            "step": step,
            "eval/mean_reward": summary.get("mean_reward"),
            "eval/pass_rate": summary.get("pass_rate"),
            "eval/quality": quality,
            "eval/best_by": self.best_by,
        }
        for gid, g in (summary.get("graders") or {}).items():
            record[f"eval/{gid}/mean"] = g.get("mean")
        _append_jsonl(self.metrics_path, record)
        return quality

    def _run(self, state: Any, control: Any, model: Any) -> None:
        step = int(state.global_step)
        side = getattr(self.tokenizer, "padding_side", None)
        try:
            with preserved_rng():
                summary = self.evaluate(model)
        finally:
            if side is not None:
                self.tokenizer.padding_side = side
        self.last = (step, summary)
        quality = self._record(step, summary)
        if self.echo is not None:
            q = "n/a" if quality is None else f"{quality:.3f}"
            self.echo(f"rft step {step}: held-out {self.best_by} {q}")
        self._consider(model, step, summary, control)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step > 0 and state.global_step % self.every_steps == 0:
            self._run(state, control, model)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.last is None or self.last[0] != int(state.global_step):
            self._run(state, control, model)
