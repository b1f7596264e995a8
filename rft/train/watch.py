"""What watches a training stage besides TRL: checkpoint cadence, in-run held-out eval, the guard.

Built from the run config by :mod:`rft.train.pipeline`: :func:`cadence_callbacks` (a
checkpoint at least every ``checkpoint_minutes``), :class:`RFTWatch` (``eval.every_steps``
with ``adapter-best/``, and the ``guard:``), :func:`check_watch_plan` (what ``make_plan``
checks and notes about them).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rft.config.run import RunConfig
from rft.core.errors import ConfigError, did_you_mean

__all__ = ["RFTWatch", "cadence_callbacks", "check_watch_plan"]


def check_watch_plan(cfg: RunConfig, grader_set: Any, stages: list[str]) -> list[str]:
    """Check ``eval.best_by`` against the graders; notes on guard checks that cannot run."""
    notes: list[str] = []
    best_by = cfg.eval.best_by
    if grader_set is not None and best_by not in ("pass_rate", "mean_reward") and best_by not in grader_set.ids:
        valid = ["pass_rate", "mean_reward", *grader_set.ids]
        raise ConfigError(
            f"eval.best_by {best_by!r} is neither pass_rate, mean_reward nor a grader id; {did_you_mean(best_by, valid)}",
            file=cfg.source,
            key="eval.best_by",
        )
    if cfg.eval.every_steps is not None and "rft" not in stages:
        notes.append("eval.every_steps applies to the rft stage, which this run does not have")
    if cfg.guard is None:
        return notes
    if "rft" not in stages:
        notes.append("guard: watches the rft stage, which this run does not have")
    if "heldout" in cfg.guard.checks and cfg.eval.every_steps is None:
        notes.append("guard: the heldout check needs eval.every_steps; it is off")
    if "audit" in cfg.guard.checks and grader_set is not None and not grader_set.audit_ids:
        notes.append("guard: the audit check needs a grader with `audit: true`; it is off")
    return notes


def cadence_callbacks(cfg: RunConfig, stage: str) -> list[Any]:
    """The time-based checkpoint callback of ``stage`` (none when its cadence is off)."""
    from rft.train.callbacks import TimedCheckpoint

    minutes = cfg.stage_checkpoint_minutes(stage)
    return [TimedCheckpoint(minutes)] if minutes is not None else []


@dataclass
class RFTWatch:
    """The RFT stage's held-out evaluation (``eval.every_steps``) and guard callbacks."""

    callbacks: list[Any]
    heldout: Any = None  # rft.train.callbacks.HeldOutEval
    guard: Any = None  # rft.train.callbacks.GuardCallback
    action: str | None = None

    @classmethod
    def build(
        cls,
        cfg: RunConfig,
        paths: Any,
        grader_set: Any,
        *,
        ckpt: Path | None,
        start: dict[str, Any] | None,
        evaluate: Callable[[Any], dict[str, Any]] | None,
        tokenizer: Any,
        say: Callable[[str], None],
    ) -> RFTWatch:
        from rft.train.callbacks import GuardCallback, HeldOutEval
        from rft.train.guard import Guard

        every = cfg.eval.every_steps if evaluate is not None else None
        guard = None
        if cfg.guard is not None:
            guard = GuardCallback(
                Guard(cfg.guard, audit_ids=grader_set.audit_ids, heldout=every is not None), paths.metrics, echo=say
            )
            if ckpt is not None:
                guard.restore(ckpt)
        heldout = None
        if every is not None and evaluate is not None:
            if ckpt is None and paths.adapter_best.exists():  # a fresh stage: a best adapter of a killed start is stale
                shutil.rmtree(paths.adapter_best)
            heldout = HeldOutEval(
                every,
                evaluate,
                best_by=cfg.eval.best_by,
                best_dir=paths.adapter_best,
                metrics_path=paths.metrics,
                tokenizer=tokenizer,
                start=start,
                guard=guard,
                echo=say,
            )
        callbacks = [c for c in (guard, heldout) if c is not None]
        return cls(callbacks, heldout, guard, cfg.guard.action if cfg.guard is not None else None)

    @property
    def last_summary(self) -> dict[str, Any] | None:
        """The held-out summary of the stage's last step, when the in-run evaluation made one."""
        return self.heldout.last[1] if self.heldout is not None and self.heldout.last is not None else None

    def done_record(self, global_step: int) -> dict[str, Any]:
        """What ``rft/DONE`` records: the last step, the guard alarm that stopped the stage, the final adapter."""
        import dataclasses

        done: dict[str, Any] = {"global_step": global_step}
        stopped = self.guard.stopped if self.guard is not None else None
        if stopped is not None:
            done["stopped_by"] = dataclasses.asdict(stopped)
            if stopped.action == "rollback" and self.heldout is not None and self.heldout.best is not None:
                done["final_adapter"] = "adapter-best"
                done["best_step"] = self.heldout.best["step"]
        return done
