"""Model judges: OpenAI's ``score_model`` and ``label_model`` graders.

A judge sends chat messages, templated from the dataset row and the completion, to a
model and reads a score or a label from its reply. OpenAI's grader JSON works as is::

    graders:
      - type: score_model
        name: helpful
        model: qwen2.5-7b-instruct
        input:
          - role: system
            content: Rate how well the answer solves the task.
          - role: user
            content: "Task: {{item.question}}\\nAnswer: {{sample.output_text}}"
        range: [0, 10]          # a reply outside it is clipped to it, as OpenAI does
        pass_threshold: 7       # optional: a `passed` metric (1.0 when the score is >= 7)
        sampling_params: {temperature: 0, max_completions_tokens: 256}
        # where and how hard (all optional; env defaults shown)
        base_url: http://127.0.0.1:8000/v1  # $RFT_JUDGE_BASE_URL, $OPENAI_BASE_URL, OpenAI
        api_key_env: MY_KEY                  # else $RFT_JUDGE_API_KEY, $OPENAI_API_KEY
        max_concurrency: 16
        requests_per_minute: 600
        prices: {input: 0.15, output: 0.60}  # USD per 1M tokens
        budget_usd: 5
      - type: label_model
        name: tone
        model: qwen2.5-7b-instruct
        input: [{role: user, content: "Classify the tone: {{sample.output_text}}"}]
        labels: [polite, neutral, rude]
        passing_labels: [polite, neutral]

Backends:

- ``openai`` (default): any OpenAI-compatible ``/chat/completions`` endpoint (vLLM,
  llama.cpp server, Ollama, OpenAI) through :mod:`rft.judges.client`: a concurrency
  limit, rate limits, retries on transient errors only, a circuit breaker, a deadline
  per judgment, token and cost accounting and an optional budget.
- ``transformers``: ``model`` is a local Hugging Face model folder, loaded once per
  process (so once per grader actor under Ray) and batched across concurrent
  judgments. It does not generate: it compares the log-probabilities of the
  candidate answers (each score, or each label) after the prompt, so every reply is
  readable; ``score_model`` reports the probability-weighted mean score.

Outcomes: a reply without a readable score or label is ``judge_unparseable``
(:class:`rft.core.errors.JudgeParseError`); a dead endpoint, exhausted retries or a spent
budget is ``infrastructure``; a rejected request (wrong model name, bad key) is
``grader_error``; a judgment past its ``deadline`` is ``timeout``. None of them is ever
a score. A ``score_model`` number outside ``range`` is clipped to it (OpenAI's
documented behaviour; the grade's ``judge_clipped`` metric is 1.0 and the reason gives the
number the judge said). ``pass_threshold`` (OpenAI's pass mark, on both judges) adds a
``passed`` metric and leaves the score as it is. A template that reads a part of the completion that is not there
(``{{sample.output_json.x}}`` without JSON) scores the low end of the range, with the
reason, as ``string_check`` does; a dataset column that is not there is an error. Each score carries sub-metrics
``judge_prompt_tokens``, ``judge_completion_tokens``, ``judge_attempts`` and, with
prices, ``judge_cost_usd``.

Limits and budgets hold per run: ``max_concurrency``, ``requests_per_minute``,
``tokens_per_minute``, ``budget_usd`` and ``budget_tokens`` count every request of the
run's scoring workers or Ray actors together (:mod:`rft.judges.client`), so set them to
what the server can take, whatever ``scoring.num_workers`` is.

Reading replies lives in :mod:`graders.judge_replies` (:func:`parse_score` and
:func:`parse_label`, re-exported here) and the ``transformers`` backend in
:mod:`graders.judge_local`.

Endpoint settings named like the grader-entry keys ``timeout`` and ``retries`` (which
the scoring engine applies around the whole call) are ``request_timeout`` and
``max_retries`` here.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import rft
from graders.judge_local import local_model
from graders.judge_replies import clip_score, normalize_label, parse_label, parse_score, read_score
from rft.core import Grade, Sample
from rft.core.errors import ConfigError, JudgeParseError, did_you_mean
from rft.core.templates import Template, TemplateError, check_pass_threshold, with_pass
from rft.judges.client import EndpointConfig, get_endpoint

logger = logging.getLogger(__name__)

__all__ = ["JudgeSettings", "ScoreModel", "LabelModel", "parse_score", "parse_label"]

ROLES = ("system", "developer", "user", "assistant")
BACKENDS = ("openai", "transformers")
#: Environment variable giving the judge model when an entry names none.
MODEL_ENV = "RFT_JUDGE_MODEL"


# ---------------------------------------------------------------------------
# the judges
# ---------------------------------------------------------------------------


class _Message:
    """One ``input`` message with its templates (OpenAI's shape; text parts templated)."""

    def __init__(self, spec: Any, where: str):
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a mapping with `role` and `content`, got {spec!r}")
        unknown = [k for k in spec if k not in ("role", "content", "type")]
        if unknown:
            raise ConfigError(
                f"{where} has unknown key {unknown[0]!r}; {did_you_mean(unknown[0], ['role', 'content', 'type'])}"
            )
        role = spec.get("role")
        if role not in ROLES:
            raise ConfigError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
        self.role = "system" if role == "developer" else role
        content = spec.get("content")
        self.text: Template | None = None
        self.parts: list[tuple[dict[str, Any], Template | None]] = []
        if isinstance(content, str):
            self.text = Template(content, where=f"{where}.content")
        elif isinstance(content, Mapping):
            content = [content]
        if isinstance(content, list):
            for i, part in enumerate(content):
                if not isinstance(part, Mapping):
                    raise ConfigError(f"{where}.content[{i}] must be a mapping such as {{type: input_text, text: …}}")
                if "text" in part:
                    self.parts.append(({**part, "type": "text"}, Template(part["text"], where=f"{where}.content[{i}]")))
                else:
                    self.parts.append((dict(part), None))
        elif self.text is None:
            raise ConfigError(f"{where}.content must be a string or a list of parts, got {content!r}")

    def __repr__(self) -> str:  # stable across processes: part of the grader's cache identity
        content = self.text.text if self.text is not None else [p for p, _ in self.parts]
        return f"{{role: {self.role}, content: {content!r}}}"

    @property
    def columns(self) -> tuple[str, ...]:
        temps = [self.text] if self.text is not None else [t for _, t in self.parts if t is not None]
        return tuple(c for t in temps for c in t.columns)

    def render(self, sample: Sample) -> dict[str, Any]:
        if self.text is not None:
            return {"role": self.role, "content": self.text.render(sample)}
        parts = [{**p, "text": t.render(sample)} if t is not None else p for p, t in self.parts]
        return {"role": self.role, "content": parts}


def _append_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """Add the reply-format instruction to the last user message (some chat templates
    refuse a system message after the first one)."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "user":
            if isinstance(m["content"], str):
                m["content"] = f"{m['content']}\n\n{instruction}"
            else:
                m["content"] = [*m["content"], {"type": "text", "text": instruction}]
            return out
    return [*out, {"role": "user", "content": instruction}]


@dataclass(frozen=True)
class JudgeSettings:
    """The keyword settings every judge takes (grader-entry keys, OpenAI's names first).

    ``base_url`` … ``budget_tokens`` set up the endpoint (see
    :class:`rft.judges.client.EndpointConfig`); ``device`` and ``batch_size`` the local
    model of ``backend: transformers``.

    >>> JudgeSettings.from_kwargs("score_model", {"base_url": "http://h/v1"}).max_concurrency
    16
    >>> JudgeSettings.from_kwargs("score_model", {"base_ur": "http://h/v1"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rft.core.errors.ConfigError: score_model: unknown setting 'base_ur'; did you mean 'base_url'?...
    """

    name: str | None = None
    pass_threshold: float | None = None
    sampling_params: Mapping[str, Any] | None = None
    backend: str = "openai"
    instructions: bool = True
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    max_concurrency: int = 16
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    request_timeout: float = 60.0
    max_retries: int = 4
    deadline: float | None = 180.0
    breaker_failures: int = 10
    breaker_cooldown: float = 30.0
    prices: Mapping[str, float] | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None
    device: str | None = None
    batch_size: int = 16

    #: The settings that go to :meth:`rft.judges.client.EndpointConfig.resolve`.
    ENDPOINT_KEYS = (
        "base_url",
        "api_key",
        "api_key_env",
        "prices",
        "max_concurrency",
        "requests_per_minute",
        "tokens_per_minute",
        "request_timeout",
        "max_retries",
        "deadline",
        "breaker_failures",
        "breaker_cooldown",
        "budget_usd",
        "budget_tokens",
    )

    @classmethod
    def from_kwargs(cls, grader: str, kwargs: Mapping[str, Any]) -> JudgeSettings:
        """The settings from a judge's keyword arguments.

        Raises:
            ConfigError: a keyword that is not a setting (with the nearest name).
        """
        known = [f.name for f in fields(cls)]
        unknown = [k for k in kwargs if k not in known]
        if unknown:
            raise ConfigError(f"{grader}: unknown setting {unknown[0]!r}; {did_you_mean(str(unknown[0]), known)}")
        return cls(**kwargs)

    def endpoint_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`rft.judges.client.EndpointConfig.resolve`."""
        return {k: getattr(self, k) for k in self.ENDPOINT_KEYS}


def _takes_settings(cls: type) -> type:
    """Class decorator: give the judge's ``__init__`` (``(self, own…, **settings)``) the full
    signature, its own parameters and then :class:`JudgeSettings` keyword-only, so grader
    entries are checked (with did-you-mean) and listed as if each setting were spelled out."""
    init = cls.__dict__["__init__"]
    own = [p for p in inspect.signature(init).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in fields(JudgeSettings)
    ]
    init.__signature__ = inspect.Signature([*own, *shared])
    return cls


class _ModelJudge:
    """What score_model and label_model share: messages, the endpoint, the backend."""

    _type = "judge"

    def __init__(
        self,
        input: Sequence[Mapping[str, Any]],  # noqa: A002 - OpenAI's field name
        model: str | None,
        settings: JudgeSettings,
    ):
        t = self._type
        backend = settings.backend
        if backend not in BACKENDS:
            raise ConfigError(f"{t}: unknown backend {backend!r}; {did_you_mean(str(backend), BACKENDS)}")
        if isinstance(input, (str, Mapping)) or not isinstance(input, Sequence) or not input:
            raise ConfigError(f"{t}: `input` must be a non-empty list of messages ({{role, content}}), got {input!r}")
        self.name = settings.name
        self.pass_threshold = check_pass_threshold(settings.pass_threshold, t)
        self.backend = backend
        self.messages = [_Message(m, f"{t} input[{i}]") for i, m in enumerate(input)]
        resolved = model or os.environ.get(MODEL_ENV)
        if not resolved:
            raise ConfigError(
                f"{t}: `model` is missing: name the judge model "
                f"({'a local model folder' if backend == 'transformers' else 'as the endpoint knows it'}) "
                f"or set ${MODEL_ENV}"
            )
        self.model: str = resolved
        sampling_params, batch_size = settings.sampling_params, settings.batch_size
        if sampling_params is not None and not isinstance(sampling_params, Mapping):
            raise ConfigError(f"{t}: `sampling_params` must be a mapping, got {sampling_params!r}")
        self.sampling_params = dict(sampling_params or {})
        self.instructions = bool(settings.instructions)
        self.device = settings.device
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{t}: `batch_size` must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.endpoint: EndpointConfig | None = None
        if backend == "openai":
            try:
                self.endpoint = EndpointConfig.resolve(**settings.endpoint_kwargs())
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{t}: {err}") from err
        else:
            if not os.path.isdir(self.model):
                raise ConfigError(
                    f"{t}: backend transformers needs `model` to be a local model folder; {self.model!r} is not one"
                )
        self.rft_columns = tuple(dict.fromkeys(c for m in self.messages for c in m.columns))

    def __repr__(self) -> str:
        where = self.endpoint.base_url if self.endpoint else "transformers"
        return f"{type(self).__name__}(model={self.model!r}, {where})"

    # -- what subclasses define ----------------------------------------------
    def _instruction(self) -> str:
        raise NotImplementedError

    def _candidates(self) -> list[str]:
        raise NotImplementedError

    def _read(self, text: str) -> Grade:
        raise NotImplementedError

    def _from_probs(self, probs: list[float]) -> Grade:
        raise NotImplementedError

    def _missing(self, err: TemplateError) -> Grade:
        raise NotImplementedError

    # -- judging ---------------------------------------------------------------
    def render(self, sample: Sample) -> list[dict[str, Any]]:
        """The chat messages sent for ``sample`` (reply-format instruction included).

        Raises:
            TemplateError: the row or the completion lacks a referenced key.
        """
        messages = [m.render(sample) for m in self.messages]
        return _append_instruction(messages, self._instruction()) if self.instructions else messages

    async def __call__(self, sample: Sample) -> Grade:
        return with_pass(await self._judge(sample), self.pass_threshold)

    async def _judge(self, sample: Sample) -> Grade:
        try:
            messages = self.render(sample)
        except TemplateError as err:
            if err.source == "sample":  # the completion lacks what the template reads: the model's miss
                return self._missing(err)
            raise
        if self.backend == "transformers":
            probs = await local_model(self.model, self.device, self.batch_size).probabilities(
                messages, self._candidates()
            )
            return self._from_probs(probs)
        if self.endpoint is None:  # pragma: no cover - __init__ sets it for the openai backend
            raise ConfigError(f"{self._type}: no endpoint configured")
        result = await get_endpoint(self.endpoint).chat(messages, self.model, self._params())
        if not result.content.strip():
            raise JudgeParseError(
                f"the judge returned an empty reply (finish_reason={result.finish_reason!r}); "
                "raise sampling_params.max_completions_tokens if it ran out of tokens"
            )
        grade = self._read(result.content)
        metrics = {
            **grade.metrics,
            "judge_prompt_tokens": float(result.prompt_tokens),
            "judge_completion_tokens": float(result.completion_tokens),
            "judge_attempts": float(result.attempts),
        }
        if result.cost_usd is not None:
            metrics["judge_cost_usd"] = result.cost_usd
        return Grade(grade.score, grade.reason, metrics)

    def _params(self) -> dict[str, Any]:
        params = dict(self.sampling_params)
        if "max_completions_tokens" in params:  # OpenAI graders' spelling
            n = params.pop("max_completions_tokens")
            openai = self.endpoint is not None and "api.openai.com" in self.endpoint.base_url
            params["max_completion_tokens" if openai else "max_tokens"] = n
        return params


@rft.grader(name="score_model")
@_takes_settings
class ScoreModel(_ModelJudge):
    """OpenAI score_model: a model rates the completion with a number in ``range``.

    Args:
        input: chat messages; ``{{item.x}}`` and ``{{sample.output_text}}`` are templated.
        model: the judge model (a local folder for ``backend: transformers``).
        range: ``[low, high]`` of the score (default ``[0, 1]``); a number outside it is
            clipped to it, as OpenAI documents (metric ``judge_clipped`` 1.0).
        pass_threshold: OpenAI's pass mark: a ``passed`` metric, 1.0 when the score is
            at least it; the score is unchanged.
        sampling_params: sent with the request (``temperature``, ``seed``, ``top_p``,
            ``max_completions_tokens``, ``reasoning_effort``, …).
        instructions: append a line telling the judge how to format its answer.
        backend: ``openai`` (an HTTP endpoint) or ``transformers`` (a local model).
        base_url, api_key, api_key_env, max_concurrency, requests_per_minute,
        tokens_per_minute, request_timeout, max_retries, deadline, breaker_failures,
        breaker_cooldown, prices, budget_usd, budget_tokens: the endpoint, see
            :class:`rft.judges.client.EndpointConfig`.
        device, batch_size: the local model's device and rows per forward pass.

    >>> judge = ScoreModel(input=[{"role": "user", "content": "Rate: {{sample.output_text}}"}],
    ...                    model="m", base_url="http://127.0.0.1:9/v1", range=[1, 5])
    >>> judge.render(Sample("Paris"))[0]["content"]
    "Rate: Paris\\n\\nEnd your reply with a line 'Score: <number from 1 to 5>'."
    """

    _type = "score_model"

    def __init__(
        self,
        input: Sequence[Mapping[str, Any]],  # noqa: A002 - OpenAI's field name
        model: str | None = None,
        range: Sequence[float] = (0.0, 1.0),  # noqa: A002 - OpenAI's field name
        **settings: Any,
    ):
        if not (
            isinstance(range, Sequence)
            and len(range) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in range)
            and range[0] < range[1]
        ):
            raise ConfigError(f"score_model: `range` must be [low, high] with low < high, got {range!r}")
        self.range = (float(range[0]), float(range[1]))
        super().__init__(input, model, JudgeSettings.from_kwargs(self._type, settings))

    def _instruction(self) -> str:
        lo, hi = self.range
        if self.backend == "transformers":
            return f"Answer with only a number from {lo:g} to {hi:g}."
        return f"End your reply with a line 'Score: <number from {lo:g} to {hi:g}>'."

    def _values(self) -> list[float]:
        lo, hi = self.range
        if lo == int(lo) and hi == int(hi) and hi - lo <= 10:
            return [float(v) for v in range(int(lo), int(hi) + 1)]
        return [lo + (hi - lo) * i / 10 for i in range(11)]

    def _candidates(self) -> list[str]:
        return [f"{v:g}" for v in self._values()]

    def _read(self, text: str) -> Grade:
        said, why = read_score(text, *self.range)
        score = clip_score(said, *self.range)
        if score == said:
            return Grade(score, why or f"judge score {score:g}")
        lo, hi = self.range
        note = f"the judge said {said:g}, outside range [{lo:g}, {hi:g}]: clipped to {score:g}"
        return Grade(score, f"{why}; {note}" if why else note, {"judge_clipped": 1.0})

    def _from_probs(self, probs: list[float]) -> Grade:
        values = self._values()
        score = sum(p * v for p, v in zip(probs, values, strict=True))
        best = max(range(len(probs)), key=probs.__getitem__)
        return Grade(
            min(max(score, self.range[0]), self.range[1]),
            f"expected score {score:.3g} (most likely {values[best]:g}, p={probs[best]:.2f})",
            {"judge_confidence": probs[best]},
        )

    def _missing(self, err: TemplateError) -> Grade:
        return Grade(self.range[0], reason=str(err))


@rft.grader(name="label_model")
@_takes_settings
class LabelModel(_ModelJudge):
    """OpenAI label_model: a model picks one of ``labels``; 1.0 when it is a passing label.

    Args:
        input: chat messages; ``{{item.x}}`` and ``{{sample.output_text}}`` are templated.
        model: the judge model (a local folder for ``backend: transformers``).
        labels: the labels the judge chooses from.
        passing_labels: the labels that score 1.0 (others score 0.0).
        Other settings: as for :class:`ScoreModel` (``pass_threshold`` included).

    >>> judge = LabelModel(input=[{"role": "user", "content": "{{sample.output_text}}"}], model="m",
    ...                    base_url="http://127.0.0.1:9/v1", labels=["good", "bad"], passing_labels=["good"])
    >>> judge._read("Label: good").score, judge._read("Label: good").reason
    (1.0, 'label: good')
    """

    _type = "label_model"

    def __init__(
        self,
        input: Sequence[Mapping[str, Any]],  # noqa: A002
        model: str | None = None,
        labels: Sequence[str] = (),
        passing_labels: Sequence[str] = (),
        **settings: Any,
    ):
        if isinstance(labels, str) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
            raise ConfigError(f"label_model: `labels` must be a non-empty list of strings, got {labels!r}")
        if len({normalize_label(x) for x in labels}) != len(labels):
            raise ConfigError(f"label_model: `labels` has duplicates (ignoring case): {list(labels)!r}")
        if isinstance(passing_labels, str) or not passing_labels:
            raise ConfigError(
                f"label_model: `passing_labels` must be a non-empty list of labels, got {passing_labels!r}"
            )
        bad = [x for x in passing_labels if x not in labels]
        if bad:
            raise ConfigError(
                f"label_model: passing label {bad[0]!r} is not in `labels`; {did_you_mean(str(bad[0]), labels)}"
            )
        self.labels = list(labels)
        self.passing_labels = list(passing_labels)
        super().__init__(input, model, JudgeSettings.from_kwargs(self._type, settings))

    def _instruction(self) -> str:
        listed = ", ".join(self.labels)
        if self.backend == "transformers":
            return f"Answer with only one of: {listed}."
        return f"End your reply with a line 'Label: <one of: {listed}>'."

    def _candidates(self) -> list[str]:
        return list(self.labels)

    def _grade(self, label: str, why: str, metrics: Mapping[str, float] | None = None) -> Grade:
        reason = f"label: {label}" + (f" — {why}" if why else "")
        return Grade(1.0 if label in self.passing_labels else 0.0, reason, dict(metrics or {}))

    def _read(self, text: str) -> Grade:
        label, why = parse_label(text, self.labels)
        return self._grade(label, why)

    def _from_probs(self, probs: list[float]) -> Grade:
        best = max(range(len(probs)), key=probs.__getitem__)
        return self._grade(self.labels[best], f"p={probs[best]:.2f}", {"judge_confidence": probs[best]})

    def _missing(self, err: TemplateError) -> Grade:
        return Grade(0.0, reason=str(err))


@rft.hookimpl
def rft_register_graders(register):
    register(ScoreModel)
    register(LabelModel)
