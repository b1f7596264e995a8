"""Reading a model judge's reply: :func:`parse_score` and :func:`parse_label`.

Kept apart from the graders in :mod:`graders.judges` (which re-exports both names) so the
rules for what counts as a readable reply can be read, and tested, on their own. A reply
that cannot be read raises :class:`rft.core.errors.JudgeParseError` (outcome kind
``judge_unparseable``), never a score. A number outside the score model's ``range`` is
clipped to it, as OpenAI documents for ``score_model``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from rft.core.errors import JudgeParseError
from rft.core.text import shorten

__all__ = ["clip_score", "normalize_label", "parse_label", "parse_score", "read_score"]

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_SCORE_LINE = re.compile(rf"\b(?:score|rating|grade|result)\b\s*(?:is|=|:)?\s*[*_`\"']*\s*({_NUMBER})", re.I)
_LABEL_LINE = re.compile(r"\b(?:label|class|category|classification)\b\s*(?:is|=|:)\s*[*_`\"']*\s*([^\n]+)", re.I)


def _strip(text: str) -> str:
    return _THINK.sub("", text or "").strip()


def read_score(text: str, low: float, high: float) -> tuple[float, str]:
    """Read the number a judge answered, as it answered it (not clipped); ``(score, explanation)``.

    Understands JSON (``{"score": 7}``, also ``result``/``rating``/``grade``, and OpenAI's
    own score model format ``{"result": 0.5, "steps": [{"description", "conclusion"}]}``),
    a ``Score: 7`` line (the last one wins), and a reply that is just a number.
    ``<think>…</think>`` blocks are ignored. ``low`` and ``high`` only word the error.

    Raises:
        JudgeParseError: the reply holds no number (never read as 0).

    >>> read_score("Clear and correct.\\nScore: 8", 0, 10)
    (8.0, 'Clear and correct.')
    >>> read_score('{"score": 0.25, "reason": "partly right"}', 0, 1)
    (0.25, 'partly right')
    >>> read_score("12", 0, 10)[0]
    12.0
    >>> read_score('{"result": 0.5, "steps": [{"description": "d", "conclusion": "half right"}]}', 0, 1)
    (0.5, 'half right')
    """
    from rft.core.parsing import extract_json

    body = _strip(text)
    value: Any = None
    explanation = ""
    found, obj = extract_json(body)
    if found and isinstance(obj, (int, float)) and not isinstance(obj, bool):
        value = obj
    elif found and isinstance(obj, Mapping):
        for key in ("score", "result", "rating", "grade"):
            if key in obj:
                value = obj[key]
                break
        explanation = str(obj.get("reason") or obj.get("explanation") or obj.get("reasoning") or "")
        steps = obj.get("steps")
        if not explanation and isinstance(steps, list):  # OpenAI's score model format: {"result", "steps"}
            explanation = " ".join(str(st.get("conclusion") or "") for st in steps if isinstance(st, Mapping)).strip()
    if value is None:
        matches = list(_SCORE_LINE.finditer(body))
        if matches:
            value = matches[-1].group(1)
            explanation = body[: matches[-1].start()].strip()
    try:
        score = float(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        score = None
    if score is None or math.isnan(score):
        raise JudgeParseError(
            f"no score in the judge's reply {shorten(text)!r}; expected a number from {low:g} to {high:g}, "
            "e.g. a last line 'Score: <number>' or JSON {\"score\": <number>}"
        )
    return score, shorten(explanation, 300)


def clip_score(score: float, low: float, high: float) -> float:
    """``score`` clipped to ``[low, high]``: OpenAI truncates a score model's output to
    its ``range`` (a judge's 11 on a 0–10 scale counts as 10; -inf as ``low``).

    >>> clip_score(11, 0, 10), clip_score(-0.5, 0, 1), clip_score(0.5, 0, 1)
    (10.0, 0.0, 0.5)
    """
    return float(min(max(score, low), high))


def parse_score(text: str, low: float, high: float) -> tuple[float, str]:
    """Read a score from a judge's reply and clip it to ``[low, high]`` as OpenAI does;
    returns ``(score, explanation)`` (see :func:`read_score` for what is understood).

    Raises:
        JudgeParseError: no score in the reply (never read as 0).

    >>> parse_score("Clear and correct.\\nScore: 8", 0, 10)
    (8.0, 'Clear and correct.')
    >>> parse_score("Score: 11", 0, 10)[0]
    10.0
    >>> parse_score("0.5", 0, 1)[0]
    0.5
    """
    score, explanation = read_score(text, low, high)
    return clip_score(score, low, high), explanation


def normalize_label(s: str) -> str:
    """A label as compared: case, spaces and punctuation around it ignored.

    >>> normalize_label("**Polite.**")
    'polite'
    """
    return re.sub(r"[\s*_`\"'.,;:!()\[\]]+", " ", s).strip().casefold()


def parse_label(text: str, labels: Sequence[str]) -> tuple[str, str]:
    """Read one of ``labels`` from a judge's reply; returns ``(label, explanation)``.

    Understands JSON (``{"label": "…"}``), a ``Label: …`` line (the last one wins), a
    reply that is just the label, and a reply that names exactly one of the labels.
    Case and surrounding punctuation are ignored.

    Raises:
        JudgeParseError: no label, an unknown one, or several.

    >>> parse_label("The reply is courteous.\\nLabel: Polite", ["polite", "rude"])
    ('polite', 'The reply is courteous.')
    >>> parse_label("rude.", ["polite", "rude"])[0]
    'rude'
    >>> parse_label("It is not correct, it is incorrect", ["correct", "incorrect"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rft.core.errors.JudgeParseError: the judge's reply names several labels ('correct', 'incorrect'): ...
    """
    from rft.core.parsing import extract_json

    body = _strip(text)
    by_norm = {normalize_label(lab): lab for lab in labels}
    listed = ", ".join(labels)
    found, obj = extract_json(body)
    if found and isinstance(obj, Mapping):
        for key in ("label", "result", "classification", "category", "class"):
            if isinstance(obj.get(key), str):
                got = normalize_label(obj[key])
                if got in by_norm:
                    return by_norm[got], shorten(str(obj.get("reason") or obj.get("explanation") or ""), 300)
                raise JudgeParseError(f"the judge answered label {obj[key]!r}, which is not one of: {listed}")
    matches = list(_LABEL_LINE.finditer(body))
    if matches:
        got = normalize_label(matches[-1].group(1))
        if got in by_norm:
            return by_norm[got], shorten(body[: matches[-1].start()].strip(), 300)
    if normalize_label(body) in by_norm:
        return by_norm[normalize_label(body)], ""
    named = [lab for lab in labels if re.search(rf"(?<![\w-]){re.escape(lab)}(?![\w-])", body, re.I)]
    if len(named) == 1:
        return named[0], shorten(body, 300)
    if len(named) > 1:
        raise JudgeParseError(
            f"the judge's reply names several labels ({', '.join(map(repr, named))}): {shorten(text)!r}; "
            f"expected exactly one of: {listed}"
        )
    raise JudgeParseError(f"no label in the judge's reply {shorten(text)!r}; expected one of: {listed}")
