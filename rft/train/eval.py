"""Held-out evaluation with the run's graders: mean score, pass rate, per grader."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from rft.core import GraderSet, Sample
from rft.data import Example, prompt_for_generation
from rft.train.rewards import add_completion_ids, row_is_conversational

logger = logging.getLogger(__name__)

__all__ = ["evaluate", "generate", "summarize"]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, Any]]],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    desc: str = "generate",
    tools: Sequence[list[Any] | None] | None = None,
) -> list[str]:
    """Complete chat prompts in batches (left padding); greedy unless ``do_sample``.

    Prompts are rendered as training renders them (:func:`rft.data.prompt_for_generation`);
    ``tools`` holds each prompt's OpenAI tools (or None), passed to the chat template.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import set_seed

    set_seed(seed)
    tokenizer.padding_side = "left"
    per_prompt_tools = list(tools) if tools is not None else [None] * len(prompts)
    texts = [prompt_for_generation(p, tokenizer, t) for p, t in zip(prompts, per_prompt_tools, strict=True)]
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    out: list[str] = []
    starts = range(0, len(texts), batch_size)
    try:
        for i in tqdm(starts, desc=desc, disable=not progress or len(texts) == 0, leave=False):
            batch = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            batch = {k: v.to(model.device) for k, v in batch.items()}
            with torch.inference_mode():
                ids = model.generate(**batch, **gen_kwargs)
            new = ids[:, batch["input_ids"].shape[1] :]
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        if was_training:
            model.train()
    return out


def summarize(grader_set: GraderSet, result: Any, *, threshold: float) -> dict[str, Any]:
    """Mean reward, pass rate (reward ≥ threshold) and per-grader mean / pass rate / errors.

    Samples a grader does not apply to (None) are left out of its mean; errors are counted.

    >>> from rft.core import grader, GraderSet, Outcome, OutcomeKind
    >>> from rft.scoring.base import BatchResult
    >>> gs = GraderSet([grader(lambda completion: 1.0, name="a")])
    >>> r = BatchResult([{"a": Outcome(OutcomeKind.SCORE, 1.0)}, {"a": Outcome(OutcomeKind.SCORE, 0.0)}], [1.0, 0.0])
    >>> summarize(gs, r, threshold=1.0)["pass_rate"]
    0.5
    """
    rewards = [r for r in result.rewards if r is not None]
    out: dict[str, Any] = {
        "n": len(result.rewards),
        "mean_reward": _mean(rewards),
        "pass_rate": _mean([float(r >= threshold) for r in rewards]) if rewards else None,
        "graders": {},
    }
    for e in grader_set:
        scores = [s for s in result.scores(e.id) if s is not None]
        errors = sum(1 for per in result.outcomes if per[e.id].kind.is_error)
        out["graders"][e.id] = {
            "mean": _mean(scores),
            "pass_rate": _mean([float(s >= threshold) for s in scores]) if scores else None,
            "scored": len(scores),
            "errors": errors,
        }
    return out


def _trajectory(sample: Sample) -> dict[str, Any]:
    """An episode's messages and summary, for the eval samples (empty for single-turn rows)."""
    episode = getattr(sample, "episode", None)
    if episode is None:
        return {}
    return {"completion_messages": sample.completion_messages, "episode": episode}


def _mean(xs: Sequence[float]) -> float | None:
    return (math.fsum(xs) / len(xs)) if xs else None


def evaluate(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    grader_set: GraderSet,
    executor: Any,
    settings: Any,
    *,
    max_new_tokens: int,
    seed: int = 0,
    progress: bool = True,
    desc: str = "eval",
    keep_samples: int | None = None,
    environment: Any = None,
) -> dict[str, Any]:
    """Generate on held-out examples and score them with the graders.

    With an ``environment`` (agentic RFT) each row is one greedy episode
    (:func:`rft.train.episodes.run_episodes`) and graders see the whole trajectory.

    Graders see each completion as in training: TRL reward functions get it in the row's
    format with ``completion_ids`` (the tokenizer's encoding of the completion text).

    Args:
        settings: the run config's :class:`rft.config.run.EvalConfig`.

    Returns:
        :func:`summarize`'s dict plus ``samples``: per held-out row (all of them, or the first
        ``keep_samples``) its source (``file:line``), prompt, completion, reward and scores, so
        phases can be compared row by row (``rft view``'s Evals).
    """
    examples = list(examples)[: settings.max_rows] if settings.max_rows else list(examples)
    if environment is not None:
        from rft.train.episodes import run_episodes

        samples = run_episodes(
            model,
            tokenizer,
            environment,
            [e.prompt for e in examples],
            [e.row for e in examples],
            max_new_tokens=max_new_tokens,
            batch_size=settings.batch_size,
            seed=seed,
            progress=progress,
            desc=desc,
        )
        completions = [s.completion for s in samples]
    else:
        completions = generate(
            model,
            tokenizer,
            [e.prompt for e in examples],
            max_new_tokens=max_new_tokens,
            do_sample=settings.do_sample,
            temperature=settings.temperature,
            batch_size=settings.batch_size,
            seed=seed,
            progress=progress,
            desc=desc,
            tools=[e.tools for e in examples],
        )
        samples = [
            Sample(completion=c, item=e.row, prompt=e.prompt, conversational=row_is_conversational(e.row))
            for c, e in zip(completions, examples, strict=True)
        ]
    if any(entry.grader.trl_style for entry in grader_set):  # TRL functions get completion_ids, as in training
        add_completion_ids(samples, tokenizer)
    result = executor.score(samples)
    summary = summarize(grader_set, result, threshold=settings.pass_threshold)
    if environment is not None:
        from rft.train.episodes import episode_stats

        summary["episodes"] = episode_stats(samples)
    keep = len(examples) if keep_samples is None else keep_samples
    summary["samples"] = [
        {
            "row": e.source,
            "prompt": e.prompt[-1]["content"],
            "completion": c,
            "reward": result.rewards[i],
            "scores": {gid: o.score for gid, o in result.outcomes[i].items()},
            **_trajectory(samples[i]),
        }
        for i, (e, c) in enumerate(zip(examples[:keep], completions[:keep], strict=True))
    ]
    return summary
