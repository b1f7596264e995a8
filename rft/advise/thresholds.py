"""Every threshold the advisor's stages use, and the recommendations it can make.

Each threshold is a named constant, documented where it is defined; the ones a rule uses
are reported with the advice (``thresholds`` of ``rft advise --json``).
"""

from __future__ import annotations

__all__ = ["RECOMMENDATIONS", "THRESHOLDS"]

#: Every value ``recommendation`` can take.
RECOMMENDATIONS = ("sft", "rft", "sft_then_rft", "rft_with_judge", "collect_labels", "none")

#: Share of rows with a reference output from which the data counts as labeled.
LABELED_MIN_SHARE = 0.8
#: Labeled rows from which SFT is the default (Fireworks: "a sizable dataset (~1000+ examples) with
#: high-quality, ground-truth outputs" → SFT), whatever else holds.
SFT_MIN_ROWS = 1000
#: Labeled rows from which "does reasoning help?" decides between RFT and SFT
#: (Fireworks: 100 up to 1000 rows). Below it, RFT: too few demonstrations for SFT.
REASONING_BAND_MIN_ROWS = 100
#: Share of rows showing a reasoning indicator from which reasoning is taken to help.
REASONING_MIN_SHARE = 0.3
#: A reference at least this many words long counts as a long (worked) answer.
LONG_REFERENCE_WORDS = 80
#: Classification: at most this many distinct labels…
CLASSIFICATION_MAX_LABELS = 50
#: …at most this many distinct labels per labeled row…
CLASSIFICATION_MAX_LABEL_RATIO = 0.2
#: …a median label of at most this many words, and at least this many labeled rows.
CLASSIFICATION_MAX_LABEL_WORDS = 5
CLASSIFICATION_MIN_ROWS = 20
#: Two prompts whose word 3-gram sets have at least this Jaccard similarity are near duplicates.
NEAR_DUP_SIMILARITY = 0.8
#: Near-duplicate search runs on at most this many prompts (a seeded sample beyond it).
NEAR_DUP_MAX_ROWS = 10_000
#: Reasoning and structured-output shares are measured on at most this many rows (a seeded sample beyond it).
STATS_SAMPLE_ROWS = 5000
#: Grader checks run on at most this many rows (a seeded sample beyond it).
VERIFY_MAX_ROWS = 100
#: References must score at least this share of the reward range for the grader to agree with the data.
REFERENCE_MIN_SCORE = 0.8
#: A degenerate output scoring at least this share of what references score flags the grader as gameable.
GAMEABLE_RELATIVE_SCORE = 0.5
#: The constant answer legitimately scores the share of rows whose reference it is; it is
#: flagged only above that share plus this margin (and above GAMEABLE_RELATIVE_SCORE).
CONSTANT_ANSWER_MARGIN = 0.25
#: Share of grader calls on references that may error before the grader counts as broken.
MAX_REFERENCE_ERROR_SHARE = 0.1
#: A probe sample passes when its reward reaches this share of the reference reward
#: (or of the maximum reward when there are no references).
PASS_FRACTION = 0.9
#: Probe pass@1 below this: the base model rarely succeeds, GRPO sees no reward → warm start first.
PROBE_LOW_PASS = 0.05
#: Probe pass@1 above this: the base model already does the task; little to gain from training.
PROBE_HIGH_PASS = 0.9
#: Share of zero-variance prompt groups from which the probe warns that GRPO gets little signal.
ZERO_SIGNAL_WARN_SHARE = 0.8
#: Group sizes (num_generations) the learnable band compares.
BAND_GROUP_SIZES = (2, 4, 8, 16)
#: The band's num_generations is the smallest group size whose expected share of prompts
#: with mixed outcomes reaches this fraction of the best one's (beyond it, more samples
#: per prompt buy little).
BAND_SIGNAL_FRACTION = 0.9
#: Labeled data whose probed prompts have mixed outcomes (0 < pass rate < 1) less often than
#: this, mostly because they never pass: GRPO would see almost no signal → SFT warm start first.
BAND_MIN_MIXED_SHARE = 0.25
#: Unlabeled, unverifiable data with at least this many prompts → RFT with a model judge;
#: fewer → collect labels first.
JUDGE_MIN_ROWS = 100

#: Every threshold above by name (reported in ``rft advise --json``).
THRESHOLDS: dict[str, float] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool)
}


def r(x: float | None, n: int = 4) -> float | None:
    """``x`` rounded to ``n`` places for the report (None stays None)."""
    return None if x is None else round(float(x), n)
