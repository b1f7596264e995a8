"""Grader sets: graders with weights, run policies and an optional formula.

Building a set from a config names graders through the plugin registry; that lives
in the plugins layer (:func:`rft.plugins.grader_set_from_config`). Here: the set
itself, one entry built from a config item against a registry, and the YAML reader.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rft.core.errors import ConfigError, GraderError, did_you_mean
from rft.core.formula import evaluate_formula, formula_names
from rft.core.grader import Grader, as_grader
from rft.core.outcome import Outcome, is_number
from rft.core.sample import Sample
from rft.core.text import shorten

logger = logging.getLogger(__name__)

__all__ = [
    "ENTRY_KEYS",
    "REWARD_ERROR_KINDS",
    "GraderEntry",
    "GraderSet",
    "RewardError",
    "build_entry",
    "load_yaml_or_json",
    "raise_for_errors",
]

#: Keys every grader-set entry accepts, whatever the grader.
ENTRY_KEYS = ("id", "weight", "timeout", "on_error", "retries", "range", "audit")

#: Why a grader set with a formula has no reward for a sample: ``missing_score`` (a
#: score the formula reads is None: its grader failed or does not apply) or
#: ``formula_error`` (the formula failed on the scores: a division by zero, ``log(0)``,
#: an overflow, a result that is not a finite number).
REWARD_ERROR_KINDS = ("missing_score", "formula_error")


@dataclass(frozen=True)
class RewardError:
    """Why a sample's combined reward is None although its grader set has a formula.

    Attributes:
        kind: one of :data:`REWARD_ERROR_KINDS`.
        reason: what failed, naming the formula and the graders or scores involved.
    """

    kind: str
    reason: str


@dataclass
class GraderEntry:
    """A grader in a set, with how it is weighted and run.

    Attributes:
        id: the name it is logged under and referenced by in a formula.
        weight: its weight in the reward; 0 logs it without training on it.
        timeout: seconds before a call is stopped and recorded as a timeout.
        on_error: ``"fail"`` (count as an error), ``"skip"`` (not applicable) or a fixed score.
        retries: how often infrastructure errors are retried.
        audit: an audit grader: scored and logged, never trained on (its weight is 0), and
            watched by the reward-hacking guard, which alarms when it falls while the
            trained reward rises.
    """

    id: str
    grader: Grader
    weight: float = 1.0
    timeout: float | None = None
    on_error: str | float = "fail"
    retries: int = 2
    audit: bool = False

    def __post_init__(self) -> None:
        if self.audit and self.weight != 0:
            raise ValueError(
                f"grader {self.id!r} is an audit grader (audit: true) but has weight {self.weight:g}; "
                "an audit grader is never trained on: set its weight to 0 or drop `audit`"
            )
        if isinstance(self.on_error, str) and self.on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail', 'skip' or a number, got {self.on_error!r}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")

    def apply_policy(self, outcome: Outcome) -> Outcome:
        """Apply ``on_error`` to an error outcome (the error itself stays recorded)."""
        if outcome.ok or self.on_error == "fail":
            return outcome
        if self.on_error == "skip":
            outcome.score = None
        else:
            outcome.score = float(self.on_error)
        outcome.fallback = True
        return outcome


class GraderSet:
    """Graders with weights, an optional formula, and per-grader metrics.

    Args:
        entries: the graders (``GraderEntry`` or plain graders, weight 1).
        formula: optional expression over grader ids combining their scores, evaluated
            safely (simpleeval), e.g. ``"0.7 * correct + 0.3 * format"``.
        spec: the config it was built from, so workers can rebuild it (set by loaders).
    """

    def __init__(
        self,
        entries: Iterable[GraderEntry | Grader | Callable[..., Any]],
        formula: str | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
    ):
        self.entries: list[GraderEntry] = []
        for e in entries:
            if not isinstance(e, GraderEntry):
                g = as_grader(e)
                e = GraderEntry(id=g.name, grader=g)
            self.entries.append(e)
        ids = [e.id for e in self.entries]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"grader id {dupes[0]!r} is used twice; give one of them an `id:`")
        if not self.entries:
            raise ConfigError("a grader set needs at least one grader")
        self.formula = formula
        self.spec = dict(spec) if spec is not None else None
        if formula:
            self._check_formula(formula)
            trained_audits = [i for i in self.audit_ids if i in formula_names(formula)]
            if trained_audits:
                raise ConfigError(
                    f"formula {formula!r} uses the audit grader {trained_audits[0]!r}; an audit grader is never "
                    "trained on: drop it from the formula or drop its `audit: true`",
                    key="formula",
                )

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: str) -> GraderEntry:
        for e in self.entries:
            if e.id == key:
                return e
        raise KeyError(f"no grader {key!r} in this set: {did_you_mean(key, self.ids)}")

    def __repr__(self) -> str:
        return f"GraderSet({', '.join(f'{e.id}×{e.weight:g}' for e in self.entries)})"

    @property
    def ids(self) -> list[str]:
        return [e.id for e in self.entries]

    @property
    def weights(self) -> list[float]:
        return [e.weight for e in self.entries]

    @property
    def audit_ids(self) -> list[str]:
        """The ids of the audit graders (``audit: true``): logged and watched, never trained on."""
        return [e.id for e in self.entries if e.audit]

    def check_inputs(self, columns: Collection[str], *, source: str | None = None) -> None:
        """Fail now, not at step 100, when a grader asks for a column the data lacks."""
        for e in self.entries:
            missing = e.grader.missing_columns(columns)
            if missing:
                where = f" in {source}" if source else ""
                raise ConfigError(
                    f"grader {e.id!r} needs column {missing[0]!r}, which the data{where} does not have "
                    f"(columns: {', '.join(sorted(columns)) or 'none'}); {did_you_mean(missing[0], columns)}",
                    key=f"graders.{e.id}",
                )

    def _check_formula(self, formula: str) -> None:
        try:
            evaluate_formula(formula, {i: 0.5 for i in self.ids})
        except Exception as err:
            raise ConfigError(
                f"formula {formula!r} is invalid: {err} (names available: {', '.join(self.ids)})", key="formula"
            ) from err

    def combine(self, scores: Mapping[str, float | None]) -> float | None:
        """The reward for one sample from its per-grader scores.

        Without a formula: the weighted sum of the scores that apply (None is skipped,
        like TRL's nansum); None when none applies. With a formula: its value, or None
        when a score it uses is None or it fails on the scores (:meth:`reward` says why).

        >>> from rft.core import grader
        >>> gs = GraderSet([grader(lambda completion: 1.0, name="a")])
        >>> gs.combine({"a": 0.5})
        0.5
        """
        return self.reward(scores)[0]

    def reward(
        self, scores: Mapping[str, float | None], outcomes: Mapping[str, Outcome] | None = None
    ) -> tuple[float | None, RewardError | None]:
        """The reward for one sample and, when a formula gives none, why (:class:`RewardError`).

        Args:
            scores: grader id → score (None: failed or not applicable).
            outcomes: grader id → outcome, to name the kind of a missing score in the reason.

        >>> from rft.core import grader
        >>> gs = GraderSet([grader(lambda completion: 1.0, name="a"), grader(lambda completion: 1.0, name="b")],
        ...                formula="a / b")
        >>> gs.reward({"a": 1.0, "b": 0.0})[1].kind
        'formula_error'
        """
        if not self.formula:
            total, seen = 0.0, False
            for e in self.entries:
                s = scores.get(e.id)
                if s is None or e.weight == 0:
                    continue
                total += e.weight * s
                seen = True
            return (total if seen else None), None
        used = formula_names(self.formula)
        missing = [i for i in self.ids if i in used and scores.get(i) is None]
        if missing:
            why = []
            for gid in missing:
                out = (outcomes or {}).get(gid)
                if out is None:
                    why.append(f"{gid!r} has no score")
                elif out.kind.is_error:
                    skipped = " (on_error: skip)" if out.fallback else ""
                    why.append(f"{gid!r} failed ({out.kind.value}{skipped}): {shorten(out.error or '', 160)}")
                else:
                    why.append(f"{gid!r} does not apply" + (f" ({shorten(out.reason, 80)})" if out.reason else ""))
            return None, RewardError("missing_score", f"formula {self.formula!r} has no value: {'; '.join(why)}")
        known = {k: v for k, v in scores.items() if k in used and v is not None}
        try:
            value = evaluate_formula(self.formula, known)
        except Exception as err:  # noqa: BLE001 - recorded as the sample's reward error, counted per batch
            return None, RewardError(
                "formula_error", f"formula {self.formula!r} failed on scores {known}: {type(err).__name__}: {err}"
            )
        if not math.isfinite(value):
            return None, RewardError("formula_error", f"formula {self.formula!r} gave {value} on scores {known}")
        return value, None

    def rewards(self, outcomes: Sequence[Mapping[str, Outcome]]) -> tuple[list[float | None], list[RewardError | None]]:
        """The reward of each sample of a batch (:meth:`reward`) and, per sample, why it has none.

        A formula that fails on some samples is logged once per batch, with the count
        of each kind and the first reason; the per-sample errors go into the batch
        result and its metrics (``reward/count/<kind>``).
        """
        values: list[float | None] = []
        errors: list[RewardError | None] = []
        for per in outcomes:
            value, error = self.reward({gid: o.score for gid, o in per.items()}, per)
            values.append(value)
            errors.append(error)
        failed = [e for e in errors if e is not None and e.kind == "formula_error"]
        if failed:
            counts = Counter(e.kind for e in errors if e is not None)
            logger.warning(
                "the reward formula gave no reward for %d of %d samples (%s); first: %s",
                sum(counts.values()),
                len(errors),
                ", ".join(f"{k} {c}" for k, c in counts.most_common()),
                failed[0].reason,
            )
        return values, errors


def build_entry(item: Any, registry: Any, *, file: str | None = None, key: str = "graders[?]") -> GraderEntry:
    """Build one :class:`GraderEntry` from a grader-set entry.

    An entry is a registered grader (``name:`` plus parameters) or an OpenAI grader
    object (``type:`` plus its fields, with ``name`` as its id). ``weight``, ``timeout``,
    ``on_error``, ``retries``, ``range``, ``audit`` and ``id`` are common to both. An
    ``audit: true`` entry's weight defaults to 0 and must be 0.
    """
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise ConfigError(f"a grader entry must be a mapping or a name, got {type(item).__name__}", file=file, key=key)
    item = dict(item)
    common = {k: item.pop(k) for k in ENTRY_KEYS if k in item}
    if "type" in item:
        gname = item.pop("type")
        gid = common.get("id") or item.get("name") or gname
        params = item  # OpenAI objects keep their own `name` field; factories accept it
    elif "name" in item:
        gname = item.pop("name")
        gid = common.get("id") or gname
        params = item
    else:
        raise ConfigError(
            "a grader entry needs `name:` (a registered grader) or `type:` (an OpenAI grader)", file=file, key=key
        )
    try:
        registered = registry.get(gname)
    except KeyError as err:
        raise ConfigError(str(err), file=file, key=f"{key}.{'name' if 'type' not in item else 'type'}") from None
    if "range" in common and registered.is_factory and "range" in registered.params:
        params = {**params, "range": common["range"]}  # the factory uses it too (e.g. score_model)
    try:
        g = registered.make(params)
    except (TypeError, ValueError, ConfigError) as err:
        raise ConfigError(str(err), file=file, key=key) from err
    if "range" in common:
        r = common["range"]
        if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(is_number(x) for x in r)):
            raise ConfigError(f"`range` must be [low, high], got {r!r}", file=file, key=f"{key}.range")
        g.range = (float(r[0]), float(r[1]))
    audit = common.get("audit", False)
    if not isinstance(audit, bool):
        raise ConfigError(f"`audit` must be true or false, got {audit!r}", file=file, key=f"{key}.audit")
    weight = common.get("weight", 0.0 if audit else 1.0)
    if not is_number(weight):
        raise ConfigError(f"`weight` must be a number, got {weight!r}", file=file, key=f"{key}.weight")
    if audit and weight != 0:
        raise ConfigError(
            f"grader {str(gid)!r} is an audit grader (audit: true) but has weight {weight!r}; an audit grader "
            "is logged and watched by the guard, never trained on: set `weight: 0` or drop `weight`",
            file=file,
            key=f"{key}.weight",
        )
    timeout = common.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        raise ConfigError(
            f"`timeout` must be a positive number of seconds, got {timeout!r}", file=file, key=f"{key}.timeout"
        )
    on_error = common.get("on_error", "fail")
    if not (on_error in ("fail", "skip") or is_number(on_error)):
        raise ConfigError(
            f"`on_error` must be 'fail', 'skip' or a number, got {on_error!r}", file=file, key=f"{key}.on_error"
        )
    retries = common.get("retries", 2)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"`retries` must be a non-negative integer, got {retries!r}", file=file, key=f"{key}.retries")
    return GraderEntry(
        id=str(gid),
        grader=g,
        weight=float(weight),
        timeout=timeout,
        on_error=on_error,
        retries=retries,
        audit=audit,
    )


def load_yaml_or_json(text: str, source: str) -> Any:
    """Parse YAML (a superset of JSON), naming the file and line on error."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{source}{line}: invalid YAML/JSON: {problem}") from err


def raise_for_errors(
    grader_set: GraderSet, outcomes: Sequence[Mapping[str, Outcome]], samples: Sequence[Sample]
) -> None:
    """Raise :class:`GraderError` for the first error outcome (used by strict callers)."""
    for i, per in enumerate(outcomes):
        for gid, out in per.items():
            if out.kind.is_error:
                entry = grader_set[gid]
                raise GraderError(
                    f"{out.error} (sample {i})",
                    grader=gid,
                    plugin=entry.grader.plugin,
                    kind=out.kind.value,
                    sample_index=i,
                    sample=samples[i].to_dict() if i < len(samples) else None,
                    traceback=out.traceback,
                )
