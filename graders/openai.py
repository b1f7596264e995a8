"""OpenAI's ``multi`` grader: sub-graders combined by a safe ``calculate_output`` formula.

OpenAI's grader JSON is accepted as is. Every OpenAI ``type`` is a registered grader
of that name (``string_check`` in :mod:`graders.strings`, ``text_similarity`` in
:mod:`graders.similarity`, ``python``, ``score_model`` and ``label_model`` in their
own modules, ``multi`` here), built by :func:`rft.core.build_entry` with the
object's other fields as parameters::

    {"type": "multi", "name": "answer_quality",
     "graders": {
        "exact": {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                  "reference": "{{item.answer}}", "operation": "eq"},
        "close": {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
                  "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}},
     "calculate_output": "0.7 * exact + 0.3 * close"}

The formula is evaluated with simpleeval (never ``eval``): numbers, the sub-grader
names, ``+ - * / ^ **`` (``^`` is a power, as in OpenAI's formulas), comparisons, and
``min max abs floor ceil exp sqrt log round clip``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import rft
from rft.core import Grade, Outcome, Sample
from rft.core.errors import ConfigError
from rft.core.formula import FORMULA_FUNCTIONS, evaluate_formula
from rft.core.templates import check_pass_threshold, with_pass

__all__ = ["Multi", "FORMULA_FUNCTIONS", "evaluate_formula"]


@rft.grader(name="multi", batched=True)
class Multi:
    """OpenAI multi: several sub-graders combined by a calculate_output formula (safe evaluation).

    Args:
        graders: sub-graders by name; each an OpenAI grader object (``type: …``) or a
            registered grader (``name: …`` plus parameters). The names are the
            variables of the formula.
        calculate_output: the formula, e.g. ``"0.7 * exact + 0.3 * close"``.
        name: OpenAI's grader name (used as the grader's id in a set).
        plugins: plugin files or modules that provide sub-graders not built in.
        pass_threshold: OpenAI's pass mark (every grader type takes it): a ``passed``
            metric, 1.0 when the combined score is at least it; the score is unchanged.

    Raises:
        ConfigError: a sub-grader is invalid, a name is not an identifier, or the
            formula does not evaluate (the message lists the names available).

    The grade's ``metrics`` hold each sub-grader's score. A sub-grader error is an
    error of this grader, of the same kind and naming the sub-grader, unless that
    sub-grader's own ``on_error`` policy supplies a score; a sub-grader that does not
    apply makes the whole grade not applicable. It is batched: each sub-grader sees
    the whole batch once, and the sub-graders run concurrently.

    >>> m = Multi(graders={"has": {"type": "string_check", "reference": "{{item.a}}", "operation": "ilike"},
    ...                     "len": {"name": "length_penalty", "target": 5}},
    ...           calculate_output="has + len")
    >>> [g.score for g in asyncio.run(m([Sample("it is PARIS", item={"a": "paris"})]))]  # 1 + (-6/5 → -1)
    [0.0]
    """

    def __init__(
        self,
        graders: Mapping[str, Any],
        calculate_output: str,
        name: str | None = None,
        plugins: Sequence[str] = (),
        pass_threshold: float | None = None,
    ):
        from rft.core import build_entry
        from rft.plugins import get_plugin_manager, get_registry

        if not isinstance(graders, Mapping) or not graders:
            raise ConfigError("multi: `graders` must be a non-empty mapping of name → grader object")
        if not isinstance(calculate_output, str) or not calculate_output.strip():
            raise ConfigError("multi: `calculate_output` must be a formula over the sub-grader names")
        bad = [k for k in graders if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise ConfigError(f"multi: sub-grader name {bad[0]!r} must be an identifier (it is a formula variable)")
        self.name = name
        self.pass_threshold = check_pass_threshold(pass_threshold, "multi")
        self.graders = {k: dict(v) if isinstance(v, Mapping) else v for k, v in graders.items()}
        self.calculate_output = calculate_output
        self.plugins = list(plugins)
        registry = get_registry(get_plugin_manager(self.plugins))
        where = f"multi {name!r}" if name else "multi"
        self._entries = {
            k: build_entry(spec, registry, file=None, key=f"{where}.graders.{k}") for k, spec in self.graders.items()
        }
        try:
            evaluate_formula(calculate_output, {k: 0.5 for k in self._entries})
        except Exception as err:
            raise ConfigError(
                f"{where}: calculate_output {calculate_output!r} is invalid: {err} "
                f"(names available: {', '.join(self._entries)})"
            ) from err

    # Rebuilt from its spec on unpickling: workers load sub-graders from their own registry.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "graders": self.graders,
            "calculate_output": self.calculate_output,
            "name": self.name,
            "plugins": self.plugins,
            "pass_threshold": self.pass_threshold,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @property
    def rft_columns(self) -> tuple[str, ...]:
        cols: dict[str, None] = {}
        for e in self._entries.values():
            cols.update(dict.fromkeys(e.grader.required_columns()))
        return tuple(cols)

    async def _outcomes(self, key: str, samples: list[Sample]) -> list[Outcome]:
        entry = self._entries[key]
        return [entry.apply_policy(o) for o in await entry.grader.agrade(samples)]

    async def __call__(self, sample: list[Sample]) -> list[Grade | Outcome]:
        # batched: each sub-grader gets the whole batch once (model judges batch their
        # requests), and the sub-graders run concurrently
        keys = list(self._entries)
        per_key = await asyncio.gather(*(self._outcomes(k, sample) for k in keys))
        return [self._combine({k: outs[i] for k, outs in zip(keys, per_key)}) for i in range(len(sample))]

    def _combine(self, outcomes: Mapping[str, Outcome]) -> Grade | Outcome:
        scores: dict[str, float] = {}
        for k, out in outcomes.items():
            if out.kind.is_error and not out.fallback:
                # keep the sub-grader's kind: a timeout stays a timeout, infrastructure stays retryable
                return Outcome.failure(out.kind, f"multi sub-grader {k!r} failed: {out.error}", out.traceback)
            if out.score is None:
                return Grade(
                    None, reason=f"sub-grader {k!r} does not apply" + (f": {out.reason}" if out.reason else "")
                )
            scores[k] = out.score
        value = evaluate_formula(self.calculate_output, scores)
        metrics = dict(scores)
        for k, out in outcomes.items():
            metrics.update({f"{k}/{m}": v for m, v in out.metrics.items()})
        shown = ", ".join(f"{k}={v:.3g}" for k, v in scores.items())
        return with_pass(
            Grade(value, reason=f"{self.calculate_output} with {shown}", metrics=metrics), self.pass_threshold
        )


@rft.hookimpl
def rft_register_graders(register):
    register(Multi)
