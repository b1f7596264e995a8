"""The relative judge: a model sees all completions of one prompt and scores or ranks them.

A group grader (``@rft.grader(group=True)``): one judgment per group, in the spirit of
ranking-based judges — a model compares answers better than it rates one in isolation,
and GRPO only needs the order within a group. Scores are normalised to ``[0, 1]``::

    graders:
      - name: relative_judge
        model: qwen2.5-7b-instruct
        criteria: Prefer correct, concise answers that show their reasoning.
        mode: scores            # or `rank`: the judge orders the answers, best first
        base_url: http://127.0.0.1:8000/v1   # any OpenAI-compatible endpoint
        # backend: transformers, model: ./judge-model   (a local Hugging Face model)

Modes:

- ``scores`` (default): the judge gives every answer a score from 0 to 10 (one line
  ``Answer <k>: <score>`` each); the score is that divided by 10.
- ``rank``: the judge orders the answers (``Ranking: 3 > 1 > 2``); the answer at place
  ``p`` of ``n`` (0 is best) scores ``1 - p / (n - 1)``.

Backends: ``openai`` (one chat request per group through :mod:`rft.judges.client`, with its
limits, retries, breaker and budget; the endpoint settings are those of ``score_model``)
and ``transformers`` (``model`` is a local folder; for each answer, the probability of each
score ``0``…``10`` after a prompt showing the whole group, batched by
:mod:`graders.judge_local`; no generation, so every judgment is readable).

Outcomes: a reply that does not score or rank every answer exactly once is
``judge_unparseable`` for the whole group; a dead endpoint or spent budget is
``infrastructure``. Never a score of 0.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import rft
from graders.judge_local import local_model
from graders.judges import BACKENDS, MODEL_ENV, JudgeSettings
from rft.core import Grade
from rft.core.errors import ConfigError, JudgeParseError, did_you_mean
from rft.core.text import shorten
from rft.judges.client import EndpointConfig, get_endpoint

__all__ = ["MODES", "RelativeJudge", "parse_ranking", "parse_scores"]

#: How the judge answers: a score per answer, or an order of the answers.
MODES = ("scores", "rank")
#: The top of the judge's score scale (scores are divided by it).
SCALE = 10

DEFAULT_CRITERIA = "Judge which answers best solve the task: correct first, then clear and concise."

_SCORE_LINE = re.compile(r"answer\s*#?\s*(\d+)\s*[:=\-]\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)
_RANKING = re.compile(r"ranking\s*:\s*(.+)", re.I)


def parse_scores(text: str, n: int) -> list[float]:
    """Scores 0…10 of answers 1…n from lines ``Answer <k>: <score>`` (the last line of
    each answer wins), each divided by 10 and clipped to [0, 1].

    Raises:
        JudgeParseError: an answer has no score, or the reply names an answer that does not exist.

    >>> parse_scores("Answer 1: 7\\nAnswer 2: 10", 2)
    [0.7, 1.0]
    """
    found: dict[int, float] = {}
    for k, value in _SCORE_LINE.findall(text):
        found[int(k)] = float(value)
    extra = sorted(k for k in found if not 1 <= k <= n)
    if extra:
        raise JudgeParseError(
            f"the judge scored answer {extra[0]}, but the group has {n} answers: {shorten(text, 200)!r}"
        )
    missing = [k for k in range(1, n + 1) if k not in found]
    if missing:
        raise JudgeParseError(
            f"the judge gave no score for answer {missing[0]} of {n} (expected lines 'Answer <k>: <0-{SCALE}>'): "
            f"{shorten(text, 200)!r}"
        )
    return [min(max(found[k] / SCALE, 0.0), 1.0) for k in range(1, n + 1)]


def parse_ranking(text: str, n: int) -> list[float]:
    """Scores of answers 1…n from the last line ``Ranking: 3 > 1 > 2`` (best first): the
    answer at place ``p`` scores ``1 - p / (n - 1)``.

    Raises:
        JudgeParseError: no ranking line, or it does not name every answer exactly once.

    >>> parse_ranking("They differ.\\nRanking: 2 > 3 > 1", 3)
    [0.0, 1.0, 0.5]
    """
    lines = _RANKING.findall(text)
    if not lines:
        raise JudgeParseError(f"the judge gave no line 'Ranking: <answers, best first>': {shorten(text, 200)!r}")
    order = [int(k) for k in re.findall(r"\d+", lines[-1])]
    if sorted(order) != list(range(1, n + 1)):
        raise JudgeParseError(
            f"the judge's ranking {lines[-1].strip()!r} does not name each of the {n} answers exactly once"
        )
    if n == 1:
        return [1.0]
    place = {k: p for p, k in enumerate(order)}
    return [1.0 - place[k] / (n - 1) for k in range(1, n + 1)]


def _ranks_of(scores: Sequence[float]) -> list[float]:
    """Rank-normalised scores (best 1.0, worst 0.0; ties share the better place)."""
    n = len(scores)
    if n == 1:
        return [1.0]
    return [1.0 - sum(other > s for other in scores) / (n - 1) for s in scores]


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        parts = []
        for m in prompt:
            content = m.get("content") if isinstance(m, Mapping) else m
            if isinstance(content, list):
                content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
            parts.append(f"{m.get('role', 'user')}: {content}" if isinstance(m, Mapping) else str(content))
        return "\n".join(parts)
    return "" if prompt is None else str(prompt)


@rft.grader(name="relative_judge", group=True)
class RelativeJudge:
    """A model judges all completions of one prompt together; scores in [0, 1].

    Args:
        model: the judge model (as the endpoint knows it; a local folder for
            ``backend: transformers``); default ``$RFT_JUDGE_MODEL``.
        criteria: what makes an answer better, shown to the judge.
        mode: ``scores`` (0–10 per answer) or ``rank`` (an order, best first).
        max_chars: each answer is shortened to this many characters in the judge prompt.
        sampling_params: sent with the request (``temperature``, ``max_tokens`` …).
        backend: ``openai`` (an HTTP endpoint) or ``transformers`` (a local model).
        base_url, api_key, api_key_env, max_concurrency, requests_per_minute, …,
        budget_usd, device, batch_size: as for ``score_model``
            (:class:`graders.judges.JudgeSettings`).
    """

    def __init__(
        self,
        model: str | None = None,
        criteria: str = DEFAULT_CRITERIA,
        mode: str = "scores",
        max_chars: int = 2000,
        **settings: Any,
    ):
        if mode not in MODES:
            raise ConfigError(f"relative_judge: unknown mode {mode!r}; {did_you_mean(str(mode), MODES)}")
        if not isinstance(max_chars, int) or max_chars < 20:
            raise ConfigError(f"relative_judge: `max_chars` must be an integer of at least 20, got {max_chars!r}")
        s = JudgeSettings.from_kwargs("relative_judge", settings)
        if s.backend not in BACKENDS:
            raise ConfigError(
                f"relative_judge: unknown backend {s.backend!r}; {did_you_mean(str(s.backend), BACKENDS)}"
            )
        resolved = model or os.environ.get(MODEL_ENV)
        if not resolved:
            raise ConfigError(f"relative_judge: `model` is missing: name the judge model or set ${MODEL_ENV}")
        if s.backend == "transformers" and not os.path.isdir(resolved):
            raise ConfigError(
                f"relative_judge: backend transformers needs `model` to be a local model folder; {resolved!r} is not one"
            )
        self.model = resolved
        self.criteria = str(criteria)
        self.mode = mode
        self.max_chars = max_chars
        self.backend = s.backend
        self.sampling_params = dict(s.sampling_params or {})
        self.device, self.batch_size = s.device, s.batch_size
        self.endpoint: EndpointConfig | None = None
        if s.backend == "openai":
            try:
                self.endpoint = EndpointConfig.resolve(**s.endpoint_kwargs())
            except (TypeError, ValueError) as err:
                raise ConfigError(f"relative_judge: {err}") from err

    def __repr__(self) -> str:  # stable across processes: part of the grader's cache identity
        where = self.endpoint.base_url if self.endpoint else "transformers"
        return f"RelativeJudge(model={self.model!r}, mode={self.mode!r}, {where})"

    # -- the prompt ------------------------------------------------------------------
    def messages(self, prompt: Any, completions: Sequence[str]) -> list[dict[str, Any]]:
        """The chat messages the judge gets for one group (without the reply instruction)."""
        answers = "\n\n".join(f"[Answer {k}]\n{shorten(c, self.max_chars)}" for k, c in enumerate(completions, start=1))
        return [
            {
                "role": "system",
                "content": "You compare several answers to the same task with each other and judge them fairly.",
            },
            {
                "role": "user",
                "content": f"Task:\n{_prompt_text(prompt)}\n\nCriteria: {self.criteria}\n\n"
                f"There are {len(completions)} answers.\n\n{answers}",
            },
        ]

    def _instruction(self, n: int) -> str:
        if self.mode == "rank":
            return (
                "Compare the answers, then end your reply with one line 'Ranking: <answer numbers, best first, "
                f"separated by >>', naming each of the {n} answers once."
            )
        return (
            f"Compare the answers, then score every answer from 0 to {SCALE} (the best gets the highest score). "
            f"End your reply with {n} lines 'Answer <k>: <score>', one per answer."
        )

    # -- judging ---------------------------------------------------------------------
    async def __call__(self, completion: list[str], prompt: list[Any]) -> list[Grade]:
        n = len(completion)
        if n == 0:
            return []
        base = self.messages(prompt[0] if prompt else None, completion)
        if self.backend == "transformers":
            return await self._local(base, n)
        if self.endpoint is None:  # pragma: no cover - __init__ sets it for the openai backend
            raise ConfigError("relative_judge: no endpoint configured")
        messages = [base[0], {"role": "user", "content": f"{base[1]['content']}\n\n{self._instruction(n)}"}]
        result = await get_endpoint(self.endpoint).chat(messages, self.model, self.sampling_params)
        if not result.content.strip():
            raise JudgeParseError(
                f"the judge returned an empty reply (finish_reason={result.finish_reason!r}); "
                "raise sampling_params.max_tokens if it ran out of tokens"
            )
        scores = (parse_ranking if self.mode == "rank" else parse_scores)(result.content, n)
        shared = {
            "judge_prompt_tokens": result.prompt_tokens / n,
            "judge_completion_tokens": result.completion_tokens / n,
            "judge_group_size": float(n),
        }
        if result.cost_usd is not None:
            shared["judge_cost_usd"] = result.cost_usd / n
        how = "place" if self.mode == "rank" else "score"
        return [Grade(s, f"relative judge: {how} {s:.2f} among {n} answers", dict(shared)) for s in scores]

    async def _local(self, base: list[dict[str, Any]], n: int) -> list[Grade]:
        judge = local_model(self.model, self.device, self.batch_size)
        candidates = [str(v) for v in range(SCALE + 1)]

        async def one(k: int) -> list[float]:
            ask = (
                f"Which score from 0 to {SCALE} does answer {k} deserve among these answers? Answer with only a number."
            )
            messages = [base[0], {"role": "user", "content": f"{base[1]['content']}\n\n{ask}"}]
            return await judge.probabilities(messages, candidates)

        probs = await asyncio.gather(*(one(k) for k in range(1, n + 1)))
        expected = [sum(p * v for p, v in zip(ps, range(SCALE + 1), strict=True)) / SCALE for ps in probs]
        scores = _ranks_of(expected) if self.mode == "rank" else [min(max(e, 0.0), 1.0) for e in expected]
        return [
            Grade(s, f"relative judge (local): expected score {e * SCALE:.2f} of {SCALE} among {n} answers")
            for s, e in zip(scores, expected, strict=True)
        ]
