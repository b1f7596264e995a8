"""Stage 4 of the advisor: plugin signals and the decision.

:func:`decide` applies the Fireworks decision tree, refined by the grader checks and the
probe, then by plugin signals (the ``rft_advisor_signals`` hook). Every step records the
rule that fired and the numbers it used.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rft.advise.checks import Verifiability
from rft.advise.probe import ProbeResult
from rft.advise.stats import DatasetStats
from rft.advise.thresholds import (
    BAND_MIN_MIXED_SHARE,
    GAMEABLE_RELATIVE_SCORE,
    JUDGE_MIN_ROWS,
    LABELED_MIN_SHARE,
    NEAR_DUP_SIMILARITY,
    PROBE_HIGH_PASS,
    PROBE_LOW_PASS,
    REASONING_BAND_MIN_ROWS,
    REASONING_MIN_SHARE,
    RECOMMENDATIONS,
    REFERENCE_MIN_SCORE,
    SFT_MIN_ROWS,
    ZERO_SIGNAL_WARN_SHARE,
)
from rft.core.errors import PluginError, RFTError
from rft.data import Example

logger = logging.getLogger(__name__)

__all__ = ["Signal", "Step", "collect_signals", "decide", "warnings"]


@dataclass
class Step:
    """One rule that fired: its name, the recommendation it leads to, why, and the numbers used."""

    rule: str
    recommendation: str
    because: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class Signal:
    """A value a plugin contributed, with an optional vote for a recommendation."""

    name: str
    value: Any
    reason: str
    vote: str | None
    plugin: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return {"name": self.name, "value": self.value, "reason": self.reason, "vote": self.vote, "plugin": self.plugin}


# ---------------------------------------------------------------------------
# plugin signals
# ---------------------------------------------------------------------------


def collect_signals(
    pm: Any,
    examples: Sequence[Example],
    stats: DatasetStats,
    *,
    verifiability: Verifiability | None = None,
    probe: ProbeResult | None = None,
) -> list[Signal]:
    """Call every ``rft_advisor_signals`` implementation and validate what it returns.

    Plugins get the raw rows and the ``--json`` dicts of the stages (their documented
    contract). Each signal names the plugin that contributed it.

    Raises:
        PluginError: a plugin raised, or returned something that is not a list of
            ``{"name", "value", "reason"[, "vote"]}`` dicts; the message names the plugin.
    """
    kwargs = {
        "rows": [e.row for e in examples],
        "stats": stats.to_dict(),
        "verifiability": verifiability.to_dict() if verifiability is not None else None,
        "probe": probe.to_dict() if probe is not None else None,
    }
    signals: list[Signal] = []
    plugins = [plugin for _, plugin in pm.list_name_plugin() if plugin is not None]
    for impl in reversed(pm.hook.rft_advisor_signals.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        name = impl.plugin_name
        # one plugin at a time through pluggy's public subset caller, so each signal names its plugin
        call = pm.subset_hook_caller("rft_advisor_signals", remove_plugins=[p for p in plugins if p is not impl.plugin])
        try:
            results = call(**kwargs)
        except RFTError:
            raise
        except Exception as err:
            raise PluginError(f"plugin {name!r} failed in rft_advisor_signals: {type(err).__name__}: {err}") from err
        for result in results:
            if not isinstance(result, list):
                raise PluginError(
                    f"plugin {name!r}: rft_advisor_signals must return a list of signals or None, "
                    f"got {type(result).__name__}"
                )
            signals.extend(_signal(name, i, sig) for i, sig in enumerate(result))
    return signals


def _signal(plugin: str, i: int, sig: Any) -> Signal:
    where = f"plugin {plugin!r}: rft_advisor_signals()[{i}]"
    if not isinstance(sig, Mapping) or not isinstance(sig.get("name"), str) or "value" not in sig:
        raise PluginError(f"{where} must be a dict with a `name` (str), a `value` and a `reason`; got {sig!r}")
    if not isinstance(sig.get("reason", ""), str):
        raise PluginError(f"{where}: `reason` must be a string")
    vote = sig.get("vote")
    if vote is not None and vote not in RECOMMENDATIONS:
        raise PluginError(f"{where}: vote {vote!r} is not one of {', '.join(RECOMMENDATIONS)}")
    try:
        json.dumps(sig["value"])
    except (TypeError, ValueError) as err:
        raise PluginError(f"{where}: `value` must be JSON-serializable ({err})") from err
    return Signal(name=sig["name"], value=sig["value"], reason=sig.get("reason", ""), vote=vote, plugin=plugin)


# ---------------------------------------------------------------------------
# decision rules
# ---------------------------------------------------------------------------


def _unverifiable(prefix: str, why: str, n: int, common: Mapping[str, Any]) -> Step:
    nums = {**common, "JUDGE_MIN_ROWS": JUDGE_MIN_ROWS}
    if n >= JUDGE_MIN_ROWS:
        return Step(
            f"{prefix}/judge",
            "rft_with_judge",
            f"{why}; {n} prompts ≥ {JUDGE_MIN_ROWS}: train against a model judge (score_model / label_model)",
            nums,
        )
    return Step(
        f"{prefix}/few_rows",
        "collect_labels",
        f"{why}; only {n} prompts < {JUDGE_MIN_ROWS}: collect reference outputs first",
        nums,
    )


def _tree(stats: DatasetStats, verifiable: bool, configured: bool, labeled: bool, common: dict[str, Any]) -> Step:
    """1. The Fireworks tree."""
    n, labeled_rows, share = stats.rows, stats.references.rows, stats.references.share
    reasoning = stats.reasoning
    if labeled:
        nums = {
            **common,
            "labeled_rows": labeled_rows,
            "SFT_MIN_ROWS": SFT_MIN_ROWS,
            "REASONING_BAND_MIN_ROWS": REASONING_BAND_MIN_ROWS,
        }
        if labeled_rows >= SFT_MIN_ROWS:
            kind = "classification " if stats.labels.is_classification else ""
            return Step(
                "labeled/large",
                "sft",
                f"{labeled_rows} labeled {kind}rows ≥ {SFT_MIN_ROWS}: supervised fine-tuning learns them directly",
                {**nums, "label_cardinality": stats.labels.cardinality},
            )
        if labeled_rows >= REASONING_BAND_MIN_ROWS:
            rnums = {
                **nums,
                "step_marker_share": reasoning.step_marker_share,
                "long_reference_share": reasoning.long_reference_share,
                "math_prompt_share": reasoning.math_prompt_share,
                "REASONING_MIN_SHARE": REASONING_MIN_SHARE,
            }
            if reasoning.helps:
                return Step(
                    "labeled/medium/reasoning",
                    "rft",
                    f"{labeled_rows} labeled rows in [{REASONING_BAND_MIN_ROWS}, {SFT_MIN_ROWS}) and "
                    f"reasoning helps ({', '.join(reasoning.indicators)} ≥ {REASONING_MIN_SHARE:.0%})",
                    rnums,
                )
            return Step(
                "labeled/medium/no_reasoning",
                "sft",
                f"{labeled_rows} labeled rows in [{REASONING_BAND_MIN_ROWS}, {SFT_MIN_ROWS}) and no "
                f"reasoning indicator reaches {REASONING_MIN_SHARE:.0%}",
                rnums,
            )
        return Step(
            "labeled/small",
            "rft",
            f"only {labeled_rows} labeled rows < {REASONING_BAND_MIN_ROWS}: too few demonstrations for "
            "SFT; RFT learns from a grader instead",
            nums,
        )
    if verifiable:
        return Step(
            "unlabeled/verifiable",
            "rft",
            f"{share:.0%} of rows have a reference (< {LABELED_MIN_SHARE:.0%}) but the graders verify "
            "outputs without one",
            common,
        )
    why = "no graders configured" if not configured else "the graders do not pass their checks"
    return _unverifiable(
        "unlabeled/not_verifiable",
        f"{share:.0%} of rows have a reference (< {LABELED_MIN_SHARE:.0%}) and {why}",
        n,
        common,
    )


def _grader_step(verif: Verifiability, labeled: bool, n: int, common: Mapping[str, Any]) -> Step:
    """2. An RFT recommendation whose graders failed their checks."""
    nums: dict[str, Any]
    if verif.gameable_outputs:
        g = verif.gameable_outputs[0]
        why = f"grader is gameable: the {g.kind} output {g.output!r} scores {g.score}"
        nums = {"degenerate_score": g.score, "relative": g.relative, "GAMEABLE_RELATIVE_SCORE": GAMEABLE_RELATIVE_SCORE}
    else:
        why = (verif.problems or ["the graders failed their checks"])[0]
        rel = verif.reference.relative if verif.reference is not None else None
        nums = {"reference_relative": rel, "REFERENCE_MIN_SCORE": REFERENCE_MIN_SCORE}
    if labeled:
        return Step(
            "graders/unusable",
            "sft",
            f"{why}; RFT would optimize that, so SFT on the labels until the grader is fixed",
            nums,
        )
    return _unverifiable("graders/unusable", why, n, common)


def _probe_step(probe: ProbeResult, current: str, labeled: bool, reference_rows: int = 0) -> Step | None:
    """3. The probe's pass rates (used only when the graders passed their checks).

    A low pass rate asks for an SFT warm start on the rows that have a reference output: on
    labeled data, and also on mostly unlabeled data that has some (a few demonstrations plus
    many prompts with a verifier — RFT's own regime, as in the flagship example). Only data
    without a single reference needs demonstrations collected first.
    """
    p1, pk, zv = probe.pass_at_1, probe.pass_at_k, probe.zero_variance_share
    if p1 is None:
        return None
    nums: dict[str, Any] = {
        "pass_at_1": p1,
        "pass_at_k": pk,
        "zero_variance_share": zv,
        "probe_rows": probe.rows,
        "samples_per_row": probe.samples_per_row,
        "PROBE_LOW_PASS": PROBE_LOW_PASS,
        "PROBE_HIGH_PASS": PROBE_HIGH_PASS,
    }
    if probe.band is not None:
        nums.update(
            band_mixed_share=probe.band.mixed_share,
            band_zero_share=probe.band.zero_share,
            band_one_share=probe.band.one_share,
            band_num_generations=probe.band.num_generations,
        )
    k = probe.samples_per_row
    if p1 > PROBE_HIGH_PASS:
        return Step(
            "probe/high_pass",
            "none",
            f"the base model already passes {p1:.0%} > {PROBE_HIGH_PASS:.0%} of samples: little to gain "
            "from fine-tuning (add harder prompts to learn more)",
            nums,
        )
    if current not in ("rft", "rft_with_judge"):
        return None
    if p1 < PROBE_LOW_PASS:
        if labeled or reference_rows > 0:
            on = "the references" if labeled else f"the {reference_rows} rows with a reference"
            return Step(
                "probe/low_pass",
                "sft_then_rft",
                f"pass@1 {p1:.0%} < {PROBE_LOW_PASS:.0%} (pass@{k} {pk or 0.0:.0%}): "
                f"GRPO would see almost no reward; warm start with SFT on {on}, then RFT on every prompt",
                {**nums, "reference_rows": reference_rows},
            )
        return Step(
            "probe/low_pass",
            "collect_labels",
            f"pass@1 {p1:.0%} < {PROBE_LOW_PASS:.0%} and no references to warm start from: "
            "collect demonstrations, SFT, then RFT",
            nums,
        )
    extra = ""
    if zv is not None and zv >= ZERO_SIGNAL_WARN_SHARE:
        extra = (
            f"; but {zv:.0%} of prompt groups have zero reward variance (≥ {ZERO_SIGNAL_WARN_SHARE:.0%}): "
            "raise num_generations or the temperature"
        )
        nums["ZERO_SIGNAL_WARN_SHARE"] = ZERO_SIGNAL_WARN_SHARE
    return Step(
        "probe/learnable",
        current,
        f"pass@1 {p1:.0%} is inside the learnable band [{PROBE_LOW_PASS:.0%}, {PROBE_HIGH_PASS:.0%}]" + extra,
        nums,
    )


def _band_step(probe: ProbeResult, current: str, labeled: bool) -> Step | None:
    """3b. The learnable band: an RFT recommendation whose prompts mostly never pass on any sample.

    pass@1 can sit inside the learnable band while GRPO still sees almost no signal: when
    prompts are all-or-nothing (every sample fails, or every sample passes), every group has
    equal rewards. Labeled data whose prompts mostly fail outright gets an SFT warm start.
    """
    band = probe.band
    if band is None or current not in ("rft", "rft_with_judge") or not labeled:
        return None
    if band.mixed_share >= BAND_MIN_MIXED_SHARE or band.zero_share <= band.one_share:
        return None
    return Step(
        "probe/band",
        "sft_then_rft",
        f"only {band.mixed_share:.0%} of probed prompts have mixed outcomes over {band.samples_per_prompt} samples "
        f"(< {BAND_MIN_MIXED_SHARE:.0%}); {band.zero_share:.0%} never pass: GRPO would see little signal, "
        "so warm start with SFT on the references, then RFT",
        {
            "band_mixed_share": band.mixed_share,
            "band_zero_share": band.zero_share,
            "band_one_share": band.one_share,
            "BAND_MIN_MIXED_SHARE": BAND_MIN_MIXED_SHARE,
        },
    )


def decide(
    stats: DatasetStats,
    verifiability: Verifiability,
    probe: ProbeResult | None = None,
    signals: Sequence[Signal] = (),
) -> list[Step]:
    """Apply the decision rules; the last step's recommendation is the advice.

    1. The Fireworks tree. Labeled (≥ :data:`LABELED_MIN_SHARE` rows with a reference):
       more than :data:`SFT_MIN_ROWS` → ``sft``; from :data:`REASONING_BAND_MIN_ROWS` to
       :data:`SFT_MIN_ROWS` → ``rft`` if reasoning helps, else ``sft``; fewer → ``rft``.
       Unlabeled: verifiable → ``rft``; else ``rft_with_judge`` with at least
       :data:`JUDGE_MIN_ROWS` prompts, ``collect_labels`` with fewer.
    2. Grader checks: an RFT recommendation with a gameable or disagreeing grader falls
       back to ``sft`` (labeled) or the unverifiable branch (unlabeled).
    3. Probe (only with graders that passed their checks): pass@1 < :data:`PROBE_LOW_PASS`
       turns ``rft`` into ``sft_then_rft`` (labeled, or unlabeled with some rows that have a
       reference: warm start on those) or ``collect_labels`` (no reference at all: collect
       demonstrations); pass@1 > :data:`PROBE_HIGH_PASS` → ``none``; in between,
       RFT is confirmed. Then the learnable band: labeled data with an RFT recommendation
       whose probed prompts have mixed outcomes less often than :data:`BAND_MIN_MIXED_SHARE`,
       mostly never passing → ``sft_then_rft``.
    4. Plugin signals: when every vote agrees, it decides.
    """
    n = stats.rows
    share = stats.references.share
    labeled = share >= LABELED_MIN_SHARE and stats.references.rows > 0
    verifiable, configured = verifiability.verifiable, verifiability.configured
    common: dict[str, Any] = {"rows": n, "reference_share": share, "LABELED_MIN_SHARE": LABELED_MIN_SHARE}

    steps = [_tree(stats, verifiable, configured, labeled, common)]
    if configured and steps[-1].recommendation in ("rft", "sft_then_rft") and not verifiable:
        steps.append(_grader_step(verifiability, labeled, n, common))
    if probe is not None and verifiable:
        step = _probe_step(probe, steps[-1].recommendation, labeled, stats.references.rows)
        if step is not None:
            steps.append(step)
        band_step = _band_step(probe, steps[-1].recommendation, labeled)
        if band_step is not None:
            steps.append(band_step)

    votes = Counter(s.vote for s in signals if s.vote)
    if len(votes) == 1:
        vote, count = next(iter(votes.items()))
        names = [f"{s.plugin}:{s.name}" for s in signals if s.vote]
        if vote != steps[-1].recommendation:
            steps.append(
                Step("signals/vote", vote, f"plugin signals vote {vote} ({', '.join(names)})", {"votes": count})
            )
    elif len(votes) > 1:
        logger.info("plugin signals disagree (%s); votes ignored", dict(votes))
    return steps


def warnings(stats: DatasetStats, verif: Verifiability, probe: ProbeResult | None) -> list[str]:
    """Things to fix in the data, the graders or the setup, whatever the recommendation."""
    w: list[str] = []
    d = stats.duplicates
    if d.exact_share and d.exact_share > 0.05:
        w.append(f"{d.exact_share:.0%} of prompts are exact duplicates: deduplicate before training")
    if d.near_share and d.near_share > 0.1:
        w.append(
            f"{d.near_share:.0%} of distinct prompts have a near duplicate (similarity ≥ {NEAR_DUP_SIMILARITY:.0%})"
        )
    ev = stats.eval
    if ev is None:
        w.append("no eval split given (--eval): hold out rows to measure the result")
    else:
        if ev.prompt_overlap_share:
            w.append(f"{ev.prompt_overlap_share:.0%} of eval prompts also appear in the training data (leakage)")
        if ev.label_coverage is not None and ev.label_coverage < 1 and stats.labels.is_classification:
            w.append(f"eval labels missing from the training data: {', '.join(ev.labels_missing_from_train)}")
    w.extend(verif.problems)
    if probe is not None:
        if not verif.verifiable:
            w.append("probe results were not used: the graders did not pass their checks")
        if probe.errors:
            w.append(f"graders errored on {probe.errors} probe samples: {probe.first_error}")
        zv = probe.zero_variance_share
        if zv is not None and zv >= ZERO_SIGNAL_WARN_SHARE:
            w.append(f"{zv:.0%} of probe prompt groups score the same on every sample: no GRPO signal there")
    return w
