"""Stage 6 of the advisor (``--pilot``): short training pilots at an equal budget, measured.

The rules guess; a pilot measures. Each arm — ``sft`` only, ``rft`` only, ``sft_then_rft`` —
is the config ``--write-config`` would write for it (:func:`rft.advise.writer.build_config`),
run by ``rft train``'s own pipeline (:func:`rft.train.pipeline.run_training`) on the same base
model, and stopped by a callback once the arm's budget is spent (wall-clock seconds, tokens
or optimizer steps). Every arm is then evaluated by that pipeline on the same held-out rows
with the same graders and decoding; the best held-out pass rate (then mean reward) wins, and
the recommendation follows it.

In ``sft_then_rft`` the SFT warm start gets :data:`SFT_SHARE` of the arm's budget and RFT the
rest. Model loading and evaluation are outside the budget (they are the same for every arm).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rft.advise.rules import Step
from rft.advise.thresholds import r
from rft.advise.writer import build_config
from rft.core import GraderSet
from rft.core.errors import ConfigError, RFTError

if TYPE_CHECKING:
    from rft.advise.advisor import Advice

__all__ = [
    "ARMS",
    "SFT_SHARE",
    "PilotArm",
    "PilotBudget",
    "PilotResult",
    "apply_pilots",
    "budget_warning",
    "full_run_estimates",
    "parse_budget",
    "pilot_arms",
    "run_pilots",
]

#: The arms, in the order they run (and win ties: the simpler, cheaper one first).
ARMS = ("sft", "rft", "sft_then_rft")
#: Share of an ``sft_then_rft`` arm's budget that goes to the SFT warm start.
SFT_SHARE = 0.25
#: With a time or token budget, each stage's ``max_steps`` is at least this, so the budget — not
#: the written config's step count — ends it: SFT alone may use its whole budget for more
#: epochs (the fair comparison). The default schedule is constant (rft.config.trl), so the
#: large cap changes no learning rate.
PILOT_STEP_CAP = 100_000
#: An arm with RFT whose full run is estimated at more than this many times the pilots' training
#: time gets a warning: RFT pays off later than SFT, so a much shorter pilot measures another regime.
FULL_RUN_OVER_PILOT = 3.0
#: Held-out rows each arm is evaluated on, unless told otherwise.
DEFAULT_EVAL_ROWS = 100

_UNITS = {
    "": "seconds",
    "s": "seconds",
    "sec": "seconds",
    "secs": "seconds",
    "second": "seconds",
    "seconds": "seconds",
    "m": "minutes",
    "min": "minutes",
    "mins": "minutes",
    "minute": "minutes",
    "minutes": "minutes",
    "tok": "tokens",
    "token": "tokens",
    "tokens": "tokens",
    "step": "steps",
    "steps": "steps",
}


@dataclass
class PilotBudget:
    """What every arm may spend: ``amount`` of ``kind`` (``seconds``, ``tokens`` or ``steps``)."""

    kind: str
    amount: float

    def describe(self) -> str:
        """``120 s``, ``20000 tokens``, ``10 steps``."""
        if self.kind == "seconds":
            return f"{self.amount:g} s"
        return f"{int(self.amount)} {self.kind}"

    def share(self, stage: str, stages: tuple[str, ...]) -> float:
        """The part of the budget ``stage`` gets in an arm running ``stages``."""
        if len(stages) == 1:
            return self.amount
        if self.kind == "steps":  # whole steps that add up to the budget, at least one per stage
            sft = max(1, round(self.amount * SFT_SHARE))
            return float(sft if stage == "sft" else max(1, int(self.amount) - sft))
        return self.amount * (SFT_SHARE if stage == "sft" else 1 - SFT_SHARE)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {"kind": self.kind, "amount": self.amount}


def parse_budget(text: str) -> PilotBudget:
    """Parse ``--pilot-budget``: seconds (``120``, ``120s``, ``2m``), ``N tokens`` or ``N steps``.

    >>> parse_budget("2m"), parse_budget("20000 tokens").kind, parse_budget("4 steps").amount
    (PilotBudget(kind='seconds', amount=120.0), 'tokens', 4.0)

    Raises:
        ConfigError: not a positive number with one of those units.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None or float(m.group(1)) <= 0:
        raise ConfigError(
            f"--pilot-budget {text!r} is not a budget; give seconds (120, 120s, 2m), tokens (20000 tokens) "
            "or optimizer steps (10 steps)",
            key="--pilot-budget",
        )
    amount = float(m.group(1))
    if unit == "minutes":
        return PilotBudget("seconds", amount * 60)
    if unit in ("tokens", "steps") and amount != int(amount):
        raise ConfigError(f"--pilot-budget {text!r}: {unit} are counted in whole numbers", key="--pilot-budget")
    return PilotBudget(unit, amount)


@dataclass
class PilotArm:
    """One arm's measurement (an entry of ``pilot.arms`` in ``rft advise --json``).

    Attributes:
        arm: ``sft``, ``rft`` or ``sft_then_rft``.
        pass_rate: held-out pass rate after the arm.
        mean_reward: held-out mean reward after the arm.
        steps: optimizer steps per stage.
        step_s: median seconds per optimizer step, per stage.
        tokens: tokens trained on per stage (as TRL counts them), where logged.
        train_s: seconds spent training (what the budget limits).
        wall_s: seconds for the whole arm, model loading and evaluation included.
        stopped_by_budget: the budget (not the full run's step count) ended training.
        run_dir: the arm's run directory (kept with ``--pilot-dir``).
    """

    arm: str
    pass_rate: float | None
    mean_reward: float | None
    steps: dict[str, int]
    step_s: dict[str, float | None]
    tokens: dict[str, int | None]
    train_s: float
    wall_s: float
    stopped_by_budget: bool
    run_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class PilotResult:
    """All arms, the winner and how it compares with the rules (``pilot`` of ``rft advise --json``)."""

    model: str
    budget: PilotBudget
    eval_rows: int
    arms: dict[str, PilotArm]
    winner: str
    rule_recommendation: str
    agrees: bool
    base: dict[str, float | None] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {
            "model": self.model,
            "budget": self.budget.to_dict(),
            "eval_rows": self.eval_rows,
            "arms": {name: arm.to_dict() for name, arm in self.arms.items()},
            "winner": self.winner,
            "rule_recommendation": self.rule_recommendation,
            "agrees": self.agrees,
            "base": self.base,
            "skipped": dict(self.skipped),
            "wall_s": self.wall_s,
        }


def pilot_arms(advice: Advice, grader_set: GraderSet | None) -> tuple[list[str], dict[str, str]]:
    """The arms the data allows, and why each other one is skipped.

    SFT needs rows with a reference output; RFT needs graders.
    """
    has_refs = advice.stats.references.rows > 0
    skipped: dict[str, str] = {}
    if not has_refs:
        skipped["sft"] = skipped["sft_then_rft"] = "no training row has a reference output"
    if grader_set is None:
        skipped["rft"] = "no graders (--graders)"
        skipped.setdefault("sft_then_rft", "no graders (--graders)")
    return [a for a in ARMS if a not in skipped], skipped


def _budget_callback(
    budget: PilotBudget, limit: float, on_step: Callable[[float], None] | None
) -> Any:  # a transformers.TrainerCallback
    """A TrainerCallback that stops training once ``limit`` of the budget is spent (and measures)."""
    from transformers import TrainerCallback

    class BudgetStop(TrainerCallback):
        def __init__(self) -> None:
            self.t0: float | None = None
            self.last = 0.0
            self.elapsed = 0.0
            self.step_times: list[float] = []
            self.tokens: int | None = None
            self.steps = 0
            self.stopped = False

        def _spent(self) -> float:
            if budget.kind == "seconds":
                return self.elapsed
            if budget.kind == "tokens":
                return float(self.tokens or 0)
            return float(self.steps)

        def _check(self, control: Any) -> None:
            if budget.kind != "steps" and self._spent() >= limit and not control.should_training_stop:
                control.should_training_stop = True
                self.stopped = True
            if on_step is not None:
                on_step(min(1.0, self._spent() / limit))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0 = self.last = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            now = time.perf_counter()
            self.step_times.append(now - self.last)
            self.last = now
            self.elapsed = now - (self.t0 if self.t0 is not None else now)
            self.steps = int(state.global_step)
            self._check(control)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if logs and isinstance(logs.get("num_tokens"), (int, float)):
                self.tokens = int(logs["num_tokens"])
                self._check(control)

        def median_step(self) -> float | None:
            # the first step also pays for warm-up (allocations, compilation); skip it when there are others
            times = self.step_times[1:] or self.step_times
            return round(statistics.median(times), 4) if times else None

    return BudgetStop()


def _arm_config(
    advice: Advice,
    arm: str,
    directory: Path,
    *,
    grader_set: GraderSet,
    model: str,
    budget: PilotBudget,
    eval_rows: int,
) -> Any:  # rft.config.run.RunConfig
    """The arm's run config: what ``--write-config`` writes for it, with the pilot's eval and no checkpoints."""
    import yaml

    from rft.advise.writer import _max_tokens
    from rft.config.run import parse_config

    path = directory / f"{arm}.yaml"
    cfg = build_config(advice, path, grader_set=grader_set, model=model, recommendation=arm)
    stages = tuple(cfg["stages"])
    for stage, section in cfg["stages"].items():
        trl = section.setdefault("trl", {})
        trl["save_strategy"] = "no"
        if budget.kind == "steps":
            trl["max_steps"] = int(budget.share(stage, stages))
        else:  # the budget ends the stage: an arm may not stop early at the written config's steps
            trl["max_steps"] = max(int(trl.get("max_steps", 0) or 0), PILOT_STEP_CAP)
    probe = advice.probe
    cfg["eval"] = {
        "max_rows": eval_rows,
        "max_new_tokens": int(_max_tokens(advice.stats, probe)),
        "batch_size": 32,
    }
    if probe is not None and probe.pass_score is not None:
        cfg["eval"]["pass_threshold"] = probe.pass_score
    cfg["output_dir"] = str(directory / arm)
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return parse_config(cfg, source=str(path), base_dir=directory, output_dir=directory / arm)


def run_pilots(
    advice: Advice,
    grader_set: GraderSet,
    *,
    budget: PilotBudget,
    model: str,
    directory: str | Path,
    eval_rows: int = DEFAULT_EVAL_ROWS,
    progress: Callable[[str, float, str], None] | None = None,
) -> PilotResult:
    """Run every arm the data allows at the same budget and evaluate each on the same held-out rows.

    Args:
        advice: the rule-based advice (its data, probe and inputs shape each arm's config).
        grader_set: the graders (the RFT reward and the evaluation of every arm).
        budget: what each arm may spend.
        model: the base model of every arm (anything a run config's ``model:`` accepts).
        directory: where the arms' configs and run directories go.
        eval_rows: held-out rows each arm is evaluated on (at most).
        progress: called as ``progress(arm, fraction_of_budget_spent, status)``.

    Raises:
        ConfigError: no arm can run, or the data has no held-out rows.
        RFTError: an arm failed (config, data, grader errors), naming the arm.
    """
    from rft.train.pipeline import run_training

    arms, skipped = pilot_arms(advice, grader_set)
    if not arms:
        raise ConfigError(f"no pilot can run: {'; '.join(f'{a}: {w}' for a, w in skipped.items())}", key="--pilot")
    directory = Path(directory)
    t_all = time.perf_counter()
    measured: dict[str, PilotArm] = {}
    base: dict[str, float | None] | None = None
    held_out = 0
    for arm in arms:
        cfg = _arm_config(
            advice, arm, directory, grader_set=grader_set, model=model, budget=budget, eval_rows=eval_rows
        )
        stages = tuple(s for s in ("sft", "rft") if getattr(cfg, s) is not None)
        done_before = {"sft": 0.0, "rft": SFT_SHARE if len(stages) == 2 else 0.0}
        callbacks = {}
        for stage in stages:
            part = budget.share(stage, stages) / budget.amount

            def on_step(
                frac: float, stage: str = stage, part: float = part, arm: str = arm, start: float = done_before[stage]
            ) -> None:
                if progress is not None:
                    progress(arm, start + part * frac, f"{arm}: training {stage}")

            callbacks[stage] = _budget_callback(budget, budget.share(stage, stages), on_step)

        def log(msg: str, arm: str = arm) -> None:
            if progress is not None and msg.startswith("evaluating"):
                progress(arm, -1.0, f"{arm}: {msg}")

        t0 = time.perf_counter()
        try:
            results = run_training(
                cfg, progress=False, extra_callbacks={s: [cb] for s, cb in callbacks.items()}, log=log
            )
        except RFTError as err:
            raise RFTError(f"pilot arm {arm!r} failed ({directory / arm}): {err}") from err
        wall = time.perf_counter() - t0
        final = stages[-1]
        if final not in results:
            raise ConfigError(
                f"pilot arm {arm!r} has no held-out evaluation: the data has no held-out rows; pass --eval "
                "(or more training rows, 10% of which are held out)",
                key="--eval",
            )
        if base is None and "base" in results:
            base = {"pass_rate": results["base"].get("pass_rate"), "mean_reward": results["base"].get("mean_reward")}
        held_out = int(results[final].get("n") or 0)
        measured[arm] = PilotArm(
            arm=arm,
            pass_rate=r(results[final].get("pass_rate")),
            mean_reward=r(results[final].get("mean_reward")),
            steps={s: callbacks[s].steps for s in stages},
            step_s={s: callbacks[s].median_step() for s in stages},
            tokens={s: callbacks[s].tokens for s in stages},
            train_s=round(sum(callbacks[s].elapsed for s in stages), 2),
            wall_s=round(wall, 2),
            stopped_by_budget=any(callbacks[s].stopped for s in stages),
            run_dir=str(directory / arm),
        )
        if progress is not None:
            progress(arm, 1.0, f"{arm}: done")
    winner = max(
        measured.values(),
        key=lambda a: (
            a.pass_rate if a.pass_rate is not None else -1.0,
            a.mean_reward if a.mean_reward is not None else float("-inf"),
            -ARMS.index(a.arm),
        ),
    ).arm
    rule = advice.recommendation
    return PilotResult(
        model=model,
        budget=budget,
        eval_rows=held_out,
        arms=measured,
        winner=winner,
        rule_recommendation=rule,
        agrees=winner == rule,
        base=base,
        skipped=skipped,
        wall_s=round(time.perf_counter() - t_all, 2),
    )


def _score(a: PilotArm) -> str:
    pr = "n/a" if a.pass_rate is None else f"{a.pass_rate:.2f}"
    mr = "n/a" if a.mean_reward is None else f"{a.mean_reward:.3f}"
    return f"{a.arm} pass rate {pr} (mean reward {mr}, {sum(a.steps.values())} steps)"


def _lead(pilots: PilotResult) -> tuple[float, float] | None:
    """The winner's pass-rate lead over the next arm, and two standard errors of that difference.

    The noise bound is at least one row's worth (``1 / eval_rows``); None with one arm or no rows.
    """
    rates = sorted(((a.pass_rate, name) for name, a in pilots.arms.items() if a.pass_rate is not None), reverse=True)
    n = pilots.eval_rows
    if len(rates) < 2 or n <= 0 or pilots.arms[pilots.winner].pass_rate is None:
        return None
    p1 = pilots.arms[pilots.winner].pass_rate or 0.0
    p2 = next(rate for rate, name in rates if name != pilots.winner)
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    return p1 - p2, max(2 * se, 1 / n)


def apply_pilots(advice: Advice, pilots: PilotResult) -> None:
    """Make the measured winner the recommendation: a ``pilot/measured`` step, reasons, warnings."""
    win = pilots.arms[pilots.winner]
    others = "; ".join(_score(a) for name, a in pilots.arms.items() if name != pilots.winner)
    measured = f"pilots at an equal budget ({pilots.budget.describe()} each): {_score(win)}" + (
        f" beats {others}" if others else ""
    )
    if pilots.agrees:
        because = f"{measured}; this agrees with the rules"
    else:
        because = (
            f"{measured}; the rules recommended {pilots.rule_recommendation}, the measurement disagrees "
            f"and wins: {pilots.winner}"
        )
    numbers: dict[str, Any] = {
        f"{name}_{k}": getattr(a, k) for name, a in pilots.arms.items() for k in ("pass_rate", "mean_reward")
    }
    numbers["budget"] = pilots.budget.describe()
    advice.steps.append(Step("pilot/measured", pilots.winner, because, numbers))
    advice.recommendation = pilots.winner
    advice.branch = " > ".join(s.rule for s in advice.steps)
    advice.reasons.append(f"pilot/measured: {because}")
    advice.pilot = pilots
    if not pilots.agrees:
        advice.warnings.append(
            f"the rules recommended {pilots.rule_recommendation} but the pilots measured {pilots.winner} best "
            "at an equal budget; the recommendation follows the measurement"
        )
    lead = _lead(pilots)
    if lead is not None and lead[0] <= lead[1]:
        advice.warnings.append(
            f"the winner {pilots.winner} leads the next arm by {lead[0]:.2f} in held-out pass rate, within the noise "
            f"of {pilots.eval_rows} rows (±{lead[1]:.2f}, two standard errors): the pilots do not separate the arms; "
            "raise --pilot-budget or --pilot-eval-rows before trusting the winner"
        )
    base = pilots.base or {}
    if base.get("pass_rate") is not None and win.pass_rate is not None and win.pass_rate <= (base["pass_rate"] or 0):
        advice.warnings.append(
            f"no pilot arm beat the base model's held-out pass rate ({base['pass_rate']:.2f}) within "
            f"{pilots.budget.describe()}: try a larger --pilot-budget before trusting the winner"
        )


def full_run_estimates(advice: Advice, grader_set: GraderSet | None) -> dict[str, float | None]:
    """Each piloted arm's full run (the config ``--write-config`` writes for it), estimated in
    training seconds from the pilots' measured step times (:func:`rft.advise.cost.estimate_cost`)."""
    import dataclasses

    from rft.advise.cost import estimate_cost

    out: dict[str, float | None] = {}
    for arm in advice.pilot.arms if advice.pilot is not None else ():
        cost = estimate_cost(dataclasses.replace(advice, recommendation=arm), grader_set=grader_set)
        out[arm] = cost.total_s if cost is not None else None
    return out


def budget_warning(pilots: PilotResult, full_runs: dict[str, float | None]) -> str | None:
    """A warning when an arm with an RFT stage would train much longer in full than in its pilot.

    Measured on the flagship example: pilots of 2 and 3 minutes put SFT alone first, while at
    the quickstart's 6 minutes SFT → RFT won (and on every seed of its benchmark). RFT pays off
    later than SFT, so a short pilot under-measures it; the pilots speak for a full RFT run only
    at a comparable budget. ``full_runs``: each arm's estimated full-run training seconds
    (:func:`full_run_estimates`).

    >>> arm = lambda name: PilotArm(name, 0.5, 0.5, {}, {}, {}, 120.0, 150.0, stopped_by_budget=True)
    >>> arms = {"sft": arm("sft"), "sft_then_rft": arm("sft_then_rft")}
    >>> result = PilotResult("m", PilotBudget("seconds", 120), 100, arms, "sft", "sft", True)
    >>> print(budget_warning(result, {"sft": 60.0, "sft_then_rft": 600.0}))  # doctest: +ELLIPSIS
    the pilots trained 120 s per arm; a full sft_then_rft run is estimated at 600 s of training (5.0× longer)...about 600s
    >>> budget_warning(result, {"sft": 6000.0, "sft_then_rft": 240.0}) is None  # only RFT arms pay off late
    True
    """
    if not pilots.arms:
        return None
    trained = max(a.train_s for a in pilots.arms.values())
    late = [(t, name) for name, t in full_runs.items() if "rft" in name and t is not None]
    if trained <= 0 or not late:
        return None
    total, name = max(late)
    if total <= FULL_RUN_OVER_PILOT * trained:
        return None
    return (
        f"the pilots trained {trained:.0f} s per arm; a full {name} run is estimated at {total:.0f} s of training "
        f"({total / trained:.1f}× longer). RFT pays off later than SFT, so a short pilot under-measures the arms "
        f"with RFT: to compare the arms at the regime you would run, give --pilot-budget about {total:.0f}s"
    )
