"""Which prompts GRPO trains on: dynamic sampling (filter groups) and the pass-rate curriculum.

Pure bookkeeping, no torch and no TRL, unit-tested without training; the trainer subclass in
:mod:`rft.train.trainer` drives it from inside TRL's ``GRPOTrainer``.

- :func:`group_informative` and :class:`FilterGroups` — DAPO's filter-groups idea: a prompt
  group whose completions all got the same reward has zero advantage everywhere and teaches
  GRPO nothing. :class:`FilterGroups` keeps the informative groups of each generation round,
  says how many groups are still missing, and picks the groups the batch is made of.
- :class:`Curriculum` — a running pass rate per prompt (a completion passes when its combined
  reward is at least the run's ``eval.pass_threshold``). A prompt whose last ``retire_after``
  completions all passed is retired (never sampled again); a prompt tried and never passed is
  sampled with ``never_solved_weight``; every other prompt weighs 1. :meth:`Curriculum.draw`
  draws prompts by these weights; the state round-trips through :meth:`Curriculum.to_dict`.
- :func:`write_state` / :func:`read_state` — the JSON file (:data:`STATE_FILE`) each RFT
  checkpoint holds, written atomically before the checkpoint's completion marker.

>>> cur = Curriculum(3, retire_after=2, never_solved_weight=0.5, window=4)
>>> cur.record(0, [True, True]); cur.record(1, [False, False])
>>> cur.weights()
[0.0, 0.5, 1.0]
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rft.core.errors import RFTError

__all__ = [
    "STATE_FILE",
    "Curriculum",
    "FilterGroups",
    "PromptRecord",
    "SamplingTotals",
    "curriculum_batches",
    "group_informative",
    "read_state",
    "weighted_draw",
    "write_state",
]

#: The sampling state inside each RFT checkpoint directory (curriculum and dynamic-sampling totals).
STATE_FILE = "rft-sampling.json"
_STATE_VERSION = 1

#: Two rewards of one group closer than this count as equal.
EQUAL_TOL = 1e-6


def group_informative(rewards: Sequence[float | None], group_size: int, *, tol: float = EQUAL_TOL) -> list[bool]:
    """For each group of ``group_size`` consecutive completions: do their rewards differ?

    A missing reward (None or NaN: no grader applied, or the formula gave none) is left out;
    a group with fewer than two rewards left is not informative.

    >>> group_informative([1.0, 1.0, 0.0, 1.0, None, 0.5], 2)
    [False, True, False]
    """
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    out = []
    for start in range(0, len(rewards), group_size):
        scored = [float(r) for r in rewards[start : start + group_size] if r is not None and not math.isnan(r)]
        out.append(len(scored) >= 2 and max(scored) - min(scored) > tol)
    return out


@dataclass
class FilterGroups:
    """The groups of one training batch under dynamic sampling, round by round.

    Args:
        target: groups the batch holds (the generation batch's prompts).
        max_rounds: generation rounds at most, the first included.

    >>> fg = FilterGroups(target=3, max_rounds=3)
    >>> fg.add_round([True, False, False]); fg.missing, fg.needs_more
    (2, True)
    >>> fg.add_round([False, True]); fg.add_round([False])
    >>> fg.needs_more, fg.picks()
    (False, [(0, 0), (1, 1), (0, 1)])
    """

    target: int
    max_rounds: int
    rounds: list[list[bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target < 1 or self.max_rounds < 1:
            raise ValueError(f"target and max_rounds must be at least 1, got {self.target} and {self.max_rounds}")

    def add_round(self, informative: Sequence[bool]) -> None:
        """Record one generation round: for each of its groups, whether it is informative."""
        if not self.rounds and len(informative) != self.target:
            raise ValueError(
                f"the first round must hold the whole batch ({self.target} groups), got {len(informative)}"
            )
        self.rounds.append([bool(x) for x in informative])

    @property
    def informative(self) -> int:
        """Informative groups generated so far (all rounds)."""
        return sum(sum(r) for r in self.rounds)

    @property
    def groups(self) -> int:
        """Groups generated so far (all rounds)."""
        return sum(len(r) for r in self.rounds)

    @property
    def missing(self) -> int:
        """Informative groups the batch still lacks."""
        return max(0, self.target - self.informative)

    @property
    def needs_more(self) -> bool:
        """Whether another round should generate ``missing`` fresh groups."""
        return self.missing > 0 and len(self.rounds) < self.max_rounds

    def picks(self) -> list[tuple[int, int]]:
        """The ``target`` groups of the batch as (round, group) pairs.

        Informative groups first, in the order they were generated; when the rounds ran out
        before enough were found, the first round's uninformative groups fill the batch
        (they carry no signal, exactly as without dynamic sampling).
        """
        chosen = [(r, g) for r, flags in enumerate(self.rounds) for g, ok in enumerate(flags) if ok][: self.target]
        fill = [(0, g) for g, ok in enumerate(self.rounds[0]) if not ok] if self.rounds else []
        return chosen + fill[: self.target - len(chosen)]

    def metrics(self, group_size: int) -> dict[str, float]:
        """This batch's metrics (logged per step under ``dynamic_sampling/``).

        ``informative_share``: informative groups / groups generated, all rounds;
        ``generations_per_informative_group``: completions generated / informative groups
        (NaN, logged as null, when none was found); ``batch_informative_share``: share of the
        trained batch that is informative; ``rounds``: generation rounds used.
        """
        informative, groups = self.informative, self.groups
        return {
            "dynamic_sampling/informative_share": informative / groups if groups else math.nan,
            "dynamic_sampling/generations_per_informative_group": (
                groups * group_size / informative if informative else math.nan
            ),
            "dynamic_sampling/batch_informative_share": min(informative, self.target) / self.target,
            "dynamic_sampling/rounds": float(len(self.rounds)),
        }


@dataclass
class SamplingTotals:
    """Dynamic-sampling counts over the whole stage (saved in checkpoints, restored on resume)."""

    batches: int = 0
    rounds: int = 0
    groups: int = 0
    informative: int = 0
    generations: int = 0

    def add(self, fg: FilterGroups, group_size: int) -> None:
        """Count one finished batch."""
        self.batches += 1
        self.rounds += len(fg.rounds)
        self.groups += fg.groups
        self.informative += fg.informative
        self.generations += fg.groups * group_size

    def to_dict(self) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in ("batches", "rounds", "groups", "informative", "generations")}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplingTotals:
        return cls(**{k: int(raw.get(k, 0)) for k in ("batches", "rounds", "groups", "informative", "generations")})


@dataclass
class PromptRecord:
    """One prompt's history in the curriculum."""

    attempts: int = 0  #: completions scored (unscorable ones left out)
    passes: int = 0  #: of which passed
    streak: int = 0  #: passing completions in a row, up to the latest
    recent: list[bool] = field(default_factory=list)  #: the last ``window`` outcomes, oldest first
    retired: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "passes": self.passes,
            "streak": self.streak,
            "recent": "".join("1" if p else "0" for p in self.recent),
            "retired": self.retired,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PromptRecord:
        return cls(
            attempts=int(raw["attempts"]),
            passes=int(raw["passes"]),
            streak=int(raw["streak"]),
            recent=[c == "1" for c in str(raw.get("recent", ""))],
            retired=bool(raw["retired"]),
        )


class Curriculum:
    """Running pass rate per prompt and the sampling weights that follow from it.

    Args:
        num_prompts: training prompts (indices ``0 … num_prompts-1``, the ``_rft_row`` column).
        retire_after: a prompt whose last N completions in a row passed is retired (weight 0).
        never_solved_weight: weight of a prompt tried and never passed (others weigh 1).
        window: completions the running pass rate is computed over.

    When every prompt weighs 0 (all retired, or never solved with weight 0), :meth:`draw`
    falls back to the prompts that are not retired, then to all prompts, so training goes on.
    """

    def __init__(self, num_prompts: int, *, retire_after: int, never_solved_weight: float, window: int):
        if num_prompts < 1:
            raise ValueError("a curriculum needs at least one prompt")
        self.num_prompts = num_prompts
        self.retire_after = retire_after
        self.never_solved_weight = never_solved_weight
        self.window = window
        self.prompts: dict[int, PromptRecord] = {}

    @classmethod
    def from_settings(cls, num_prompts: int, settings: Any) -> Curriculum:
        """From a :class:`rft.config.sections.CurriculumSettings`."""
        return cls(
            num_prompts,
            retire_after=settings.retire_after,
            never_solved_weight=settings.never_solved_weight,
            window=settings.window,
        )

    # -- updates ----------------------------------------------------------------
    def record(self, index: int, passes: Sequence[bool | None]) -> None:
        """Record the outcomes of one prompt's completions (None: unscorable, left out)."""
        if not 0 <= index < self.num_prompts:
            raise IndexError(f"prompt index {index} is outside the curriculum's {self.num_prompts} prompts")
        rec = self.prompts.setdefault(index, PromptRecord())
        for p in passes:
            if p is None:
                continue
            rec.attempts += 1
            rec.passes += int(p)
            rec.streak = rec.streak + 1 if p else 0
            rec.recent = (rec.recent + [bool(p)])[-self.window :]
            if rec.streak >= self.retire_after:
                rec.retired = True

    # -- queries ------------------------------------------------------------------
    def weight(self, index: int) -> float:
        """Sampling weight of one prompt: 0 retired, ``never_solved_weight`` never passed, else 1."""
        rec = self.prompts.get(index)
        if rec is None:
            return 1.0
        if rec.retired:
            return 0.0
        if rec.attempts and not rec.passes:
            return float(self.never_solved_weight)
        return 1.0

    def weights(self) -> list[float]:
        """The weight of every prompt, by index."""
        return [self.weight(i) for i in range(self.num_prompts)]

    def pass_rate(self, index: int) -> float | None:
        """The running pass rate of one prompt (over its last ``window`` completions), None if untried."""
        rec = self.prompts.get(index)
        return sum(rec.recent) / len(rec.recent) if rec and rec.recent else None

    @property
    def retired(self) -> list[int]:
        return sorted(i for i, r in self.prompts.items() if r.retired)

    @property
    def never_solved(self) -> list[int]:
        return sorted(i for i, r in self.prompts.items() if r.attempts and not r.passes and not r.retired)

    def metrics(self) -> dict[str, float]:
        """Logged per step under ``curriculum/``: retired and never-solved prompt counts, the mean
        running pass rate of the prompts tried, and the prompts not tried yet."""
        rates = [r for r in (self.pass_rate(i) for i in self.prompts) if r is not None]
        return {
            "curriculum/retired": float(len(self.retired)),
            "curriculum/never_solved": float(len(self.never_solved)),
            "curriculum/untried": float(self.num_prompts - len(self.prompts)),
            "curriculum/pass_rate": sum(rates) / len(rates) if rates else math.nan,
        }

    def draw(self, k: int, rng: random.Random, *, exclude: Sequence[int] = ()) -> list[int]:
        """``k`` prompt indices drawn by weight, without repeats while enough prompts weigh > 0."""
        weights = self.weights()
        if not any(weights):  # everything retired or weighted 0: keep training on what is left
            weights = [0.0 if self.prompts.get(i, PromptRecord()).retired else 1.0 for i in range(self.num_prompts)]
            if not any(weights):
                weights = [1.0] * self.num_prompts
        return weighted_draw(weights, k, rng, exclude=exclude)

    # -- persistence ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "num_prompts": self.num_prompts,
            "retire_after": self.retire_after,
            "never_solved_weight": self.never_solved_weight,
            "window": self.window,
            "prompts": {str(i): r.to_dict() for i, r in sorted(self.prompts.items())},
        }

    def load_dict(self, raw: dict[str, Any], *, source: str = "the checkpoint") -> None:
        """Restore the per-prompt records saved by :meth:`to_dict` (the settings stay this run's)."""
        if int(raw.get("num_prompts", -1)) != self.num_prompts:
            raise RFTError(
                f"{source} holds a curriculum over {raw.get('num_prompts')} prompts, this run has "
                f"{self.num_prompts}: the training data changed since the checkpoint. Resume with the same "
                "data, or start a new run"
            )
        self.prompts = {int(i): PromptRecord.from_dict(r) for i, r in raw.get("prompts", {}).items()}
        for rec in self.prompts.values():  # settings may have changed on resume: apply the current ones
            rec.recent = rec.recent[-self.window :]
            rec.retired = rec.retired or rec.streak >= self.retire_after


def weighted_draw(weights: Sequence[float], k: int, rng: random.Random, *, exclude: Sequence[int] = ()) -> list[int]:
    """``k`` indices drawn by ``weights`` (weighted sampling without replacement, then with).

    Consumes one random number per index whatever the weights, so a run's random stream does
    not depend on how the weights evolve. Excluded indices are taken only when too few others
    weigh > 0; indices repeat only when fewer than ``k`` weigh > 0 in all.

    >>> sorted(weighted_draw([1.0, 0.0, 1.0], 2, random.Random(0)))
    [0, 2]
    """
    keys = [rng.random() for _ in weights]
    excluded = set(exclude)
    positive = [i for i, w in enumerate(weights) if w > 0]
    if not positive:
        raise ValueError("no index has a positive weight")

    def ranked(pool: list[int]) -> list[int]:
        # Efraimidis–Spirakis: the k largest u^(1/w) are a weighted sample without replacement.
        return sorted(pool, key=lambda i: keys[i] ** (1.0 / weights[i]), reverse=True)

    order = ranked([i for i in positive if i not in excluded]) + ranked([i for i in positive if i in excluded])
    picked = order[:k]
    if len(picked) < k:
        picked += rng.choices(positive, weights=[weights[i] for i in positive], k=k - len(picked))
    return picked


def curriculum_batches(curriculum: Curriculum, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """One epoch of prompt batches drawn by the curriculum's weights at the time each batch is drawn.

    As many batches as an epoch of TRL's sampler (``num_prompts // batch_size``), so the
    trainer's step and epoch counts do not change.
    """
    for _ in range(curriculum.num_prompts // batch_size):
        yield curriculum.draw(batch_size, rng)


# ---------------------------------------------------------------------------
# the checkpoint file
# ---------------------------------------------------------------------------


def write_state(
    checkpoint: str | Path, *, curriculum: Curriculum | None, totals: SamplingTotals | None, step: int
) -> Path:
    """Write :data:`STATE_FILE` into a checkpoint directory atomically (temporary file, then rename)."""
    path = Path(checkpoint) / STATE_FILE
    data: dict[str, Any] = {"version": _STATE_VERSION, "global_step": int(step)}
    if curriculum is not None:
        data["curriculum"] = curriculum.to_dict()
    if totals is not None:
        data["dynamic_sampling"] = totals.to_dict()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_state(checkpoint: str | Path) -> dict[str, Any] | None:
    """The sampling state of a checkpoint directory, or None when it has none.

    Raises:
        RFTError: the file exists but is not valid JSON of a known version (names the file).
    """
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RFTError(f"{path}: unreadable sampling state ({err}); resume from an earlier checkpoint") from err
    version = data.get("version") if isinstance(data, dict) else None
    if version != _STATE_VERSION:
        raise RFTError(f"{path}: unknown sampling state format (version {version!r}); resume from another checkpoint")
    result: dict[str, Any] = data
    return result
