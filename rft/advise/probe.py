"""Stage 3 of the advisor (optional): sample the base model and grade it with the same graders.

K samples for N rows, rendered as training renders prompts and sampled as GRPO samples:
pass@1, pass@K, mean reward, the share of prompt groups with zero reward variance
(no GRPO signal there), the learnable band (per prompt, the pass rate over K samples:
the shares of prompts between 0 and 1, at 0 and at 1, and the group size that gives most
prompts a signal) and the measured generation time (the cost estimate's basis without pilots).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rft.advise.checks import first_error, mean, n_errors, reward_bounds, score_samples
from rft.advise.stats import as_examples
from rft.advise.thresholds import BAND_GROUP_SIZES, BAND_SIGNAL_FRACTION, PASS_FRACTION, r
from rft.core import GraderSet, Sample
from rft.core.errors import ConfigError
from rft.core.text import percentile, shorten
from rft.data import Example, prompt_for_generation

__all__ = [
    "LearnableBand",
    "ProbeExample",
    "ProbeOptions",
    "ProbeResult",
    "learnable_band",
    "load_probe_model",
    "pass_at_k",
    "run_probe",
]


@dataclass
class ProbeOptions:
    """How the base model is probed.

    Attributes:
        model: a model directory, a name :func:`load_probe_model` resolves (e.g.
            ``smollm2-135m-instruct``).
        rows: prompts to sample (a seeded sample of the data).
        samples: completions per prompt (K of pass@K); at least 2 to measure group variance.
        max_new_tokens: tokens per completion; None picks 2× the 90th percentile of the
            reference length in words, plus 16, within [16, 512].
        temperature: sampling temperature (GRPO samples at 1.0 by default).
        pass_score: reward from which a sample passes; None uses :data:`PASS_FRACTION` of
            the reference reward (or of the maximum reward).
        batch_size: sequences generated at once.
        seed: seed of the row sample and of sampling.
        dtype: ``auto`` (bf16 on a GPU that has it, else fp32), ``bfloat16``, ``float32``…
    """

    model: str
    rows: int = 16
    samples: int = 4
    max_new_tokens: int | None = None
    temperature: float = 1.0
    pass_score: float | None = None
    batch_size: int = 32
    seed: int = 0
    dtype: str = "auto"


@dataclass
class ProbeExample:
    """One probed prompt with its first completion and that completion's reward."""

    prompt: str
    completion: str
    reward: float | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


@dataclass
class LearnableBand:
    """Where the probed prompts sit for GRPO (the ``probe.band`` object of ``rft advise --json``).

    A prompt whose K samples all fail (pass rate 0) or all pass (1) gives GRPO no signal:
    every completion in its group gets the same advantage. Prompts in between do.

    Attributes:
        prompts: probed prompts.
        samples_per_prompt: K.
        pass_rates: per prompt, the share of its K samples that passed.
        mixed_share: share of prompts with 0 < pass rate < 1 (GRPO has a signal).
        zero_share: share at 0 (needs SFT or easier prompts).
        one_share: share at 1 (nothing to learn).
        signal_by_group_size: per group size G, the expected share of prompts whose group
            of G samples has mixed outcomes, ``mean(1 - p^G - (1-p)^G)``.
        num_generations: the smallest G reaching :data:`BAND_SIGNAL_FRACTION` of the best
            expected share; None when no prompt has mixed outcomes (no G helps).
    """

    prompts: int
    samples_per_prompt: int
    pass_rates: list[float]
    mixed_share: float
    zero_share: float
    one_share: float
    signal_by_group_size: dict[str, float]
    num_generations: int | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        return asdict(self)


def learnable_band(pass_counts: Sequence[int], k: int) -> LearnableBand:
    """The learnable band from per-prompt pass counts out of ``k`` samples each.

    >>> b = learnable_band([0, 0, 2, 4], 4)
    >>> b.mixed_share, b.zero_share, b.one_share, b.num_generations
    (0.25, 0.5, 0.25, 8)

    Raises:
        ConfigError: ``k`` < 1, no prompts, or a count outside [0, k].
    """
    if k < 1 or not pass_counts:
        raise ConfigError("the learnable band needs at least 1 prompt and 1 sample per prompt", key="probe")
    if any(c < 0 or c > k for c in pass_counts):
        raise ConfigError(f"pass counts must lie in [0, {k}], got {list(pass_counts)}", key="probe")
    n = len(pass_counts)
    rates = [c / k for c in pass_counts]
    signal = {g: sum(1.0 - p**g - (1.0 - p) ** g for p in rates) / n for g in BAND_GROUP_SIZES}
    best = max(signal.values())
    group = next((g for g in BAND_GROUP_SIZES if signal[g] >= BAND_SIGNAL_FRACTION * best), None) if best > 0 else None
    return LearnableBand(
        prompts=n,
        samples_per_prompt=k,
        pass_rates=[round(x, 4) for x in rates],
        mixed_share=round(sum(0 < c < k for c in pass_counts) / n, 4),
        zero_share=round(sum(c == 0 for c in pass_counts) / n, 4),
        one_share=round(sum(c == k for c in pass_counts) / n, 4),
        signal_by_group_size={str(g): round(v, 4) for g, v in signal.items()},
        num_generations=group,
    )


@dataclass
class ProbeResult:
    """What the probe measured (the ``probe`` object of ``rft advise --json``)."""

    model: str = ""
    rows: int = 0
    samples_per_row: int = 0
    max_new_tokens: int = 0
    temperature: float = 1.0
    pass_score: float | None = None
    pass_at_1: float | None = None
    pass_at_k: float | None = None
    mean_reward: float | None = None
    zero_variance_share: float | None = None
    errors: int = 0
    first_error: str | None = None
    mean_completion_words: float | None = None
    examples: list[ProbeExample] = field(default_factory=list)
    band: LearnableBand | None = None
    generation_s: float | None = None
    seconds_per_completion: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object."""
        d = asdict(self)
        d["examples"] = [e.to_dict() for e in self.examples]
        d["band"] = self.band.to_dict() if self.band is not None else None
        return d


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed (Chen et al., 2021).

    >>> pass_at_k(4, 0, 4), pass_at_k(4, 1, 1), pass_at_k(4, 1, 4)
    (0.0, 0.25, 1.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def load_probe_model(name: str, *, dtype: str = "auto") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer for the probe.

    ``name`` is anything a run config's ``model:`` accepts (:func:`rft.models.resolve.resolve_model`):
    an HF model directory, a ``*.gguf`` file, ``tiny[:DIR]`` or ``smollm2-135m-instruct``
    (the embedded default). Models are never downloaded.

    Raises:
        ConfigError: the name resolves to nothing usable.
    """
    from rft.models.resolve import load_model, resolve_model

    return load_model(resolve_model(name), dtype=dtype)


def default_max_tokens(examples: Sequence[Example]) -> int:
    """2× the 90th percentile of the reference length in words, plus 16, within [16, 512] (256 without references)."""
    words = [len(e.reference.split()) for e in examples if e.reference is not None]
    if not words:
        return 256
    return max(16, min(512, 2 * round(percentile(words, 90)) + 16))


def _encode_prompt(tok: Any, example: Example) -> list[int]:
    """Token ids of a prompt, rendered exactly as training and evaluation render it
    (:func:`rft.data.prompt_for_generation`)."""
    return list(tok(prompt_for_generation(example.prompt, tok, example.tools), add_special_tokens=False)["input_ids"])


def run_probe(
    rows: Sequence[Example | Mapping[str, Any]],
    grader_set: GraderSet,
    options: ProbeOptions,
    *,
    reference_reward: float | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Any = None,
) -> ProbeResult:
    """Sample the base model and grade its completions with the same graders.

    Prompts are sampled as GRPO samples (``temperature``, ``top_p=1``, no top-k);
    generation is batched with left padding. A sample whose grading errors counts as a
    failure for pass@k and is reported under ``errors``.

    Args:
        rows: the dataset; ``options.rows`` of them are sampled.
        grader_set: the graders that will be the reward.
        options: model, sizes, sampling.
        reference_reward: the references' mean reward (sets the pass score).
        model, tokenizer: an already loaded model (else ``options.model`` is loaded).
        progress: called as ``progress(done, total)`` with completions generated so far.
        executor: an open scoring executor to reuse (see :func:`rft.advise.checks.make_scorer`).

    Raises:
        ConfigError: fewer than 1 row or sample, or no rows.
    """
    import torch

    if options.samples < 1 or options.rows < 1:
        raise ConfigError("the probe needs at least 1 row and 1 sample per row", key="probe")
    examples = as_examples(rows)
    if not examples:
        raise ConfigError("the probe needs rows with a prompt (`messages` or a prompt field)", key="probe")
    if model is None or tokenizer is None:
        model, tokenizer = load_probe_model(options.model, dtype=options.dtype)
    tok = tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()

    picked = examples if len(examples) <= options.rows else random.Random(options.seed).sample(examples, options.rows)
    k = options.samples
    max_new = options.max_new_tokens or default_max_tokens(examples)
    lo, hi = reward_bounds(grader_set)
    pass_score = options.pass_score
    if pass_score is None:
        top = reference_reward if reference_reward is not None and reference_reward > lo else hi
        pass_score = lo + PASS_FRACTION * (top - lo)

    encoded = [_encode_prompt(tok, e) for e in picked]
    per_batch = max(1, options.batch_size // k)
    completions: list[list[str]] = []
    total = len(picked) * k
    torch.manual_seed(options.seed)
    if progress:
        progress(0, total)
    t0 = time.perf_counter()
    for start in range(0, len(picked), per_batch):
        batch = encoded[start : start + per_batch]
        enc = tok.pad({"input_ids": batch}, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=options.temperature,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new,
                num_return_sequences=k,
                pad_token_id=tok.pad_token_id,
            )
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for i in range(len(batch)):
            completions.append(texts[i * k : (i + 1) * k])
        if progress:
            progress(min(total, (start + len(batch)) * k), total)

    generation_s = time.perf_counter() - t0
    samples = [
        Sample(completion=c, item=e.row, prompt=e.prompt) for e, group in zip(picked, completions) for c in group
    ]
    outcomes, rewards = score_samples(grader_set, samples, executor=executor)
    groups = [rewards[i * k : (i + 1) * k] for i in range(len(picked))]
    p1 = pk = 0.0
    zero_var = measured = 0
    counts: list[int] = []
    for g in groups:
        vals = [x for x in g if x is not None]
        c = sum(x >= pass_score for x in vals)
        counts.append(c)
        p1 += pass_at_k(k, c, 1)
        pk += pass_at_k(k, c, k)
        if len(vals) >= 2:
            measured += 1
            zero_var += (max(vals) - min(vals)) <= 1e-9
    return ProbeResult(
        model=options.model,
        rows=len(picked),
        samples_per_row=k,
        max_new_tokens=max_new,
        temperature=options.temperature,
        pass_score=r(pass_score),
        pass_at_1=r(p1 / len(groups)),
        pass_at_k=r(pk / len(groups)),
        mean_reward=r(mean(rewards)),
        zero_variance_share=r(zero_var / measured) if measured else None,
        errors=n_errors(outcomes),
        first_error=first_error(outcomes),
        mean_completion_words=r(mean([len(c.split()) for g in completions for c in g]), 2),
        examples=[
            ProbeExample(prompt=shorten(e.prompt_text, 120), completion=shorten(group[0], 200), reward=r(groups[i][0]))
            for i, (e, group) in enumerate(zip(picked, completions))
        ][:3],
        band=learnable_band(counts, k),
        generation_s=r(generation_s, 3),
        seconds_per_completion=r(generation_s / total, 5) if total else None,
    )
