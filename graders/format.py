"""Format graders: reasoning-tag structure and a penalty for overlong completions."""

from __future__ import annotations

import re
from collections.abc import Sequence

import rft
from rft.core import Grade
from rft.core.errors import ConfigError

__all__ = ["ThinkFormat", "LengthPenalty"]


@rft.grader(name="think_format", range=(0.0, 1.0))
class ThinkFormat:
    """1.0 when the completion is exactly ``<think>…</think>`` then ``<answer>…</answer>`` (tags configurable).

    The sections must appear in order, each once, with only whitespace around and
    between them, and must not be empty (the R1-style format reward).

    Args:
        tags: the section tags in order (default ``["think", "answer"]``).
        allow_text_outside: accept text before the first and after the last section.
        name: the grader's id in a set.

    >>> ThinkFormat()("<think>2+2 is 4</think>\\n<answer>4</answer>").score
    1.0
    >>> ThinkFormat()("<answer>4</answer>").reason
    'expected <think>…</think> then <answer>…</answer>; missing <think>'
    """

    def __init__(
        self, tags: Sequence[str] = ("think", "answer"), allow_text_outside: bool = False, name: str | None = None
    ):
        if (
            isinstance(tags, str)
            or not tags
            or not all(isinstance(t, str) and re.fullmatch(r"[\w:-]+", t) for t in tags)
        ):
            raise ConfigError(f"think_format: tags must be a list of tag names like ['think', 'answer'], got {tags!r}")
        self.tags = tuple(tags)
        self.allow_text_outside = bool(allow_text_outside)
        self.name = name
        body = r"\s*".join(rf"<{re.escape(t)}>(?P<s{i}>.*?)</{re.escape(t)}>" for i, t in enumerate(self.tags))
        edge = r".*?" if self.allow_text_outside else r"\s*"
        self._regex = re.compile(rf"{edge}{body}{edge}", re.DOTALL)

    def __getstate__(self) -> dict[str, object]:
        return {"tags": self.tags, "allow_text_outside": self.allow_text_outside, "name": self.name}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __call__(self, completion: str) -> Grade:
        expected = " then ".join(f"<{t}>…</{t}>" for t in self.tags)
        m = self._regex.fullmatch(completion)
        if m is None:
            for t in self.tags:
                n_open, n_close = completion.count(f"<{t}>"), completion.count(f"</{t}>")
                if n_open == 0 or n_close == 0:
                    return Grade(
                        0.0,
                        reason=f"expected {expected}; missing <{t}>"
                        if n_open == 0
                        else f"expected {expected}; <{t}> is not closed",
                    )
                if n_open > 1 or n_close > 1:
                    return Grade(0.0, reason=f"expected {expected}; <{t}> appears more than once")
            return Grade(0.0, reason=f"expected {expected}; sections out of order or text outside them")
        empty = [t for i, t in enumerate(self.tags) if not m.group(f"s{i}").strip()]
        if empty:
            return Grade(0.0, reason=f"<{empty[0]}> is empty")
        if any(completion.count(f"<{t}>") > 1 for t in self.tags):
            return Grade(0.0, reason=f"expected {expected}; a tag appears more than once")
        return Grade(1.0, reason="format ok")


@rft.grader(name="length_penalty", range=(-1.0, 0.0))
class LengthPenalty:
    """0 up to a target length, then falling linearly to -1 at ``limit`` (DAPO's soft overlong penalty).

    Use it with a weight next to a correctness grader: short enough answers lose
    nothing, rambling ones lose up to ``weight``.

    Args:
        target: the length that is still free (in ``unit``).
        limit: the length at which the penalty reaches -1 (default ``2 * target``).
        unit: ``chars`` or ``words`` (whitespace-separated).
        name: the grader's id in a set.

    >>> LengthPenalty(target=10, unit="words")(" ".join(["w"] * 15)).score  # 5 over, half-way to 20
    -0.5
    """

    UNITS = ("chars", "words")

    def __init__(self, target: int, limit: int | None = None, unit: str = "chars", name: str | None = None):
        if unit not in self.UNITS:
            raise ConfigError(f"length_penalty: unit must be 'chars' or 'words', got {unit!r}")
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ConfigError(f"length_penalty: target must be a whole number >= 0, got {target!r}")
        limit = 2 * target if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= target:
            raise ConfigError(f"length_penalty: limit must be a whole number above target ({target}), got {limit!r}")
        self.target, self.limit, self.unit, self.name = target, limit, unit, name

    def __call__(self, completion: str) -> Grade:
        n = len(completion) if self.unit == "chars" else len(completion.split())
        if n <= self.target:
            return Grade(0.0, reason=f"{n} {self.unit} ≤ target {self.target}", metrics={"length": float(n)})
        penalty = min(1.0, (n - self.target) / (self.limit - self.target))
        return Grade(
            -penalty,
            reason=f"{n} {self.unit}, {n - self.target} over target {self.target}",
            metrics={"length": float(n)},
        )


@rft.hookimpl
def rft_register_graders(register):
    register(ThinkFormat)
    register(LengthPenalty)
