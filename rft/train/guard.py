"""The reward-hacking guard: alarms from the training and held-out curves of an RFT stage.

:class:`Guard` is a pure object (no torch, no trainer), fed one training step's logs at a
time (:meth:`Guard.observe_train`) and one held-out evaluation at a time
(:meth:`Guard.observe_heldout`); each call returns the alarms that fire. The trainer side
(:class:`rft.train.callbacks.GuardCallback`) writes them to ``metrics.jsonl`` and carries
out the action. Three checks (``guard.checks``):

- ``heldout``: the trained reward rises while held-out quality (``eval.best_by``) falls:
  the latest held-out evaluation is at least ``min_heldout_drop`` below the one ``window``
  evaluations before it, and the mean training reward since the previous evaluation is at
  least ``min_reward_rise`` above the one at the start of that window.
- ``length``: the mean completion length over the last ``train_window`` steps is more than
  ``1 + length_drift`` times (or less than ``1 / (1 + length_drift)`` times) the mean over
  the first ``train_window`` steps of the stage.
- ``audit``: an ``audit: true`` grader's mean over the last ``train_window`` steps fell by
  ``min_audit_drop`` from the first ``train_window`` steps while the trained reward rose by
  ``min_reward_rise``.

An alarm fires once when its condition becomes true and again only after the condition was
false at a later check (so a warning is not repeated every step). The state
(:meth:`Guard.state_dict`) is saved in each checkpoint and restored on ``--resume``.

>>> from rft.config.sections import GuardSettings
>>> g = Guard(GuardSettings(checks=["length"], train_window=2, length_drift=1.0))
>>> [g.observe_train(s, {"completions/mean_length": n}) for s, n in enumerate([10, 10, 30, 30], 1)][-1][0].kind
'length'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rft.config.sections import GuardSettings

__all__ = [
    "LENGTH_KEY",
    "REWARD_KEY",
    "Alarm",
    "Guard",
    "heldout_quality",
]

#: TRL's log key of the trained (weighted) reward per step.
REWARD_KEY = "reward"
#: TRL's log key of the mean completion length (tokens) per step.
LENGTH_KEY = "completions/mean_length"


def _audit_key(grader_id: str) -> str:
    return f"rewards/{grader_id}/mean"


def heldout_quality(summary: Mapping[str, Any], best_by: str) -> float | None:
    """The number a held-out evaluation is compared by: ``pass_rate``, ``mean_reward`` or a grader's mean.

    Args:
        summary: :func:`rft.train.eval.evaluate`'s result.
        best_by: ``pass_rate``, ``mean_reward`` or a grader id (``eval.best_by``).

    >>> heldout_quality({"pass_rate": 0.5, "mean_reward": 0.7, "graders": {"correct": {"mean": 0.25}}}, "correct")
    0.25
    """
    if best_by in ("pass_rate", "mean_reward"):
        value = summary.get(best_by)
    else:
        value = (summary.get("graders") or {}).get(best_by, {}).get("mean")
    return None if value is None else float(value)


@dataclass
class Alarm:
    """One alarm of the guard.

    Attributes:
        kind: the check that fired: ``heldout``, ``length`` or ``audit``.
        step: the RFT step it fired at.
        action: what the guard does about it (``warn``, ``stop``, ``rollback``).
        message: what was seen, with the numbers, and what to do.
        values: the numbers compared (early/late means, held-out values …).
    """

    kind: str
    step: int
    action: str
    message: str
    values: dict[str, float] = field(default_factory=dict)

    def to_record(self, stage: str = "rft") -> dict[str, Any]:
        """The ``metrics.jsonl`` record of this alarm."""
        rec: dict[str, Any] = {
            "stage": stage,
            "step": self.step,
            "guard/alarm": self.kind,
            "guard/action": self.action,
            "guard/message": self.message,
        }
        rec.update({f"guard/{k}": v for k, v in self.values.items()})
        return rec


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(value) else float(value)


class Guard:
    """Alarm logic of ``guard:`` over scripted or live curves (see the module docstring).

    Args:
        settings: the run's ``guard:`` section.
        audit_ids: ids of the grader set's audit graders (their ``rewards/<id>/mean`` is read).
        heldout: whether held-out evaluations will come (``eval.every_steps``); without them
            the ``heldout`` check is off.
    """

    def __init__(self, settings: GuardSettings, *, audit_ids: Sequence[str] = (), heldout: bool = True):
        self.settings = settings
        self.audit_ids = list(audit_ids)
        self.checks = [c for c in settings.checks if (c != "heldout" or heldout) and (c != "audit" or audit_ids)]
        self.train: list[dict[str, float]] = []  # per step: step, reward, length, audit ids
        self.heldout: list[tuple[int, float]] = []  # (step, quality)
        self.firing: dict[str, bool] = {}
        self.alarms: list[Alarm] = []

    # -- inputs ------------------------------------------------------------------
    def observe_train(self, step: int, logs: Mapping[str, Any]) -> list[Alarm]:
        """Record one training step's logs (TRL's ``reward``, ``completions/mean_length``,
        ``rewards/<audit id>/mean``) and return the alarms that fire at it."""
        rec: dict[str, float] = {"step": float(step)}
        for name, key in [("reward", REWARD_KEY), ("length", LENGTH_KEY)] + [
            (f"audit:{a}", _audit_key(a)) for a in self.audit_ids
        ]:
            value = _number(logs.get(key))
            if value is not None:
                rec[name] = value
        if len(rec) == 1:  # not a training-step record (e.g. the final train_runtime log)
            return []
        self.train.append(rec)
        fired: list[Alarm] = []
        if "length" in self.checks:
            fired += self._check("length", step, self._length(step))
        if "audit" in self.checks:
            for a in self.audit_ids:
                fired += self._check(f"audit:{a}", step, self._audit(step, a))
        return fired

    def observe_heldout(self, step: int, quality: float | None) -> list[Alarm]:
        """Record a held-out evaluation (its ``eval.best_by`` value) and return the alarms that fire."""
        if quality is None:
            return []
        self.heldout = [(s, q) for s, q in self.heldout if s < step] + [(step, float(quality))]
        if "heldout" not in self.checks:
            return []
        return self._check("heldout", step, self._heldout(step))

    # -- checks ------------------------------------------------------------------
    def _check(self, key: str, step: int, found: tuple[str, dict[str, float]] | None) -> list[Alarm]:
        was = self.firing.get(key, False)
        self.firing[key] = found is not None
        if found is None or was:
            return []
        message, values = found
        alarm = Alarm(key.split(":", 1)[0], step, self.settings.action, message, values)
        self.alarms.append(alarm)
        return [alarm]

    def _early_late(self, name: str) -> tuple[float, float] | None:
        w = self.settings.train_window
        values = [r[name] for r in self.train if name in r]
        if len(values) < 2 * w:
            return None
        return _mean(values[:w]), _mean(values[-w:])

    def _length(self, step: int) -> tuple[str, dict[str, float]] | None:
        el = self._early_late("length")
        if el is None or el[0] <= 0:
            return None
        early, late = el
        bound = 1.0 + self.settings.length_drift
        if late / early <= bound and late / early >= 1.0 / bound:
            return None
        way = "grew" if late > early else "shrank"
        w = self.settings.train_window
        return (
            f"mean completion length {way} from {early:.1f} tokens (first {w} steps) to {late:.1f} (last {w} steps), "
            f"beyond the bound of x{bound:g} (guard.length_drift); a grader that pays for length, or for brevity, "
            "is being gamed. Read rollouts.jsonl around this step",
            {"length_early": early, "length_late": late},
        )

    def _audit(self, step: int, grader_id: str) -> tuple[str, dict[str, float]] | None:
        reward, audit = self._early_late("reward"), self._early_late(f"audit:{grader_id}")
        if reward is None or audit is None:
            return None
        rise, drop = reward[1] - reward[0], audit[0] - audit[1]
        if rise < self.settings.min_reward_rise or drop < self.settings.min_audit_drop:
            return None
        return (
            f"the trained reward rose {reward[0]:.3f} → {reward[1]:.3f} while the audit grader {grader_id!r} fell "
            f"{audit[0]:.3f} → {audit[1]:.3f} (means of the first and last {self.settings.train_window} steps): "
            "the trained graders reward something the audit grader says is worse",
            {
                "reward_early": reward[0],
                "reward_late": reward[1],
                "audit_early": audit[0],
                "audit_late": audit[1],
            },
        )

    def _train_reward_between(self, after: int, upto: int) -> float | None:
        xs = [r["reward"] for r in self.train if "reward" in r and after < r["step"] <= upto]
        return _mean(xs) if xs else None

    def _heldout(self, step: int) -> tuple[str, dict[str, float]] | None:
        w = self.settings.window
        if len(self.heldout) < w + 1:
            return None
        window = self.heldout[-(w + 1) :]
        (first_step, first_q), (_, last_q) = window[0], window[-1]
        if first_q - last_q < self.settings.min_heldout_drop:
            return None
        # the training reward around each evaluation of the window: its mean since the evaluation before
        steps = [s for s, _ in self.heldout]
        train: list[tuple[int, float]] = []
        for s, _ in window:
            i = steps.index(s)
            before = steps[i - 1] if i > 0 else -1
            value = self._train_reward_between(before, s)
            if value is not None:
                train.append((s, value))
        if len(train) < 2:
            return None
        rise = train[-1][1] - train[0][1]
        if rise < self.settings.min_reward_rise:
            return None
        return (
            f"the training reward rose {train[0][1]:.3f} → {train[-1][1]:.3f} while held-out quality fell "
            f"{first_q:.3f} → {last_q:.3f} (steps {first_step} → {step}): the policy learns to please the graders "
            "on the training prompts, not the task",
            {
                "reward_early": train[0][1],
                "reward_late": train[-1][1],
                "heldout_early": first_q,
                "heldout_late": last_q,
            },
        )

    # -- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The guard's state as JSON-able data (saved in each checkpoint)."""
        return {
            "train": self.train,
            "heldout": [list(p) for p in self.heldout],
            "firing": self.firing,
            "alarms": [asdict(a) for a in self.alarms],
        }

    def load_state_dict(self, state: Mapping[str, Any], *, upto: int | None = None) -> None:
        """Restore :meth:`state_dict`, dropping anything after step ``upto`` (the checkpoint's step)."""

        def keep(step: float) -> bool:
            return upto is None or step <= upto

        self.train = [dict(r) for r in state.get("train", []) if keep(r["step"])]
        self.heldout = [(int(s), float(q)) for s, q in state.get("heldout", []) if keep(s)]
        self.firing = {str(k): bool(v) for k, v in (state.get("firing") or {}).items()}
        self.alarms = [Alarm(**a) for a in state.get("alarms", []) if keep(a["step"])]
