"""Reward-kit / Eval Protocol functions, unchanged: ``(messages, ground_truth=None, **kwargs)``
with the reply as the last message, returning EvaluateResult-like objects, dicts or
``(score, metrics)`` tuples — duck-typed, without reward-kit installed."""

from __future__ import annotations

import functools
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl
from typer.testing import CliRunner

from rft.cli.main import app
from rft.core import OutcomeKind, Sample, as_grader

# ---------------------------------------------------------------------------
# stand-ins for reward_kit.models and reward_kit.reward_function (reward-kit is not a dependency)
# ---------------------------------------------------------------------------


@dataclass
class MetricResult:
    score: float
    reason: str
    success: bool | None = None


@dataclass
class EvaluateResult:
    score: float
    reason: str | None = None
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    error: str | None = None


def reward_function(func):
    """Like reward-kit's decorator: ``functools.wraps``, a dict result coerced to EvaluateResult."""

    @functools.wraps(func)
    def wrapper(messages, **kwargs):
        result = func(messages, **kwargs)
        if isinstance(result, dict):
            metrics = {k: MetricResult(**v) for k, v in result.get("metrics", {}).items()}
            result = EvaluateResult(result["score"], result.get("reason"), metrics)
        return result

    return wrapper


# ---------------------------------------------------------------------------
# functions written the way reward-kit's README writes them
# ---------------------------------------------------------------------------


@reward_function
def informativeness(messages: list[dict[str, Any]], original_messages: list | None = None, **kwargs: Any):
    """Evaluate the informativeness of a response."""
    response = messages[-1].get("content", "")
    word_count = len(response.split())
    score = min(word_count / 10, 1.0)
    return EvaluateResult(
        score=score,
        reason=f"Word count: {word_count}",
        metrics={"word_count": MetricResult(score=score, reason=f"Word count: {word_count}", success=word_count > 3)},
    )


@reward_function
def exact_answer(messages: list[dict[str, Any]], ground_truth: str | None = None, **kwargs: Any):
    """1.0 when the assistant's last message is the ground truth."""
    if not messages or messages[-1].get("role") != "assistant":
        return {"score": 0.0, "reason": "no assistant response", "metrics": {}}
    answer = messages[-1]["content"].strip()
    ok = ground_truth is not None and answer == str(ground_truth)
    return {
        "score": float(ok),
        "reason": f"expected {ground_truth!r}, got {answer!r}",
        "metrics": {"exact": {"score": float(ok), "reason": "exact match", "success": ok}},
    }


def tuple_scorer(messages, ground_truth=None, **kwargs):
    """An undecorated Eval-Protocol-style function returning ``(score, metrics)``."""
    text = messages[-1]["content"]
    return (float(str(ground_truth) in text), {"length": float(len(text))})


def failing(messages, ground_truth=None, **kwargs):
    return EvaluateResult(score=0.0, reason="could not evaluate", error="the judge was unreachable")


SAMPLES = [
    Sample("4", {"ground_truth": "4"}, prompt=[{"role": "user", "content": "2+2?"}]),
    Sample(
        "It is four, because two and two make four.",
        {"ground_truth": "4"},
        prompt=[{"role": "user", "content": "2+2?"}],
    ),
]


def test_the_reply_is_the_last_message_and_ground_truth_comes_from_the_row():
    seen: dict[str, Any] = {}

    def spy(messages, ground_truth=None, **kwargs):
        seen.update(messages=messages, ground_truth=ground_truth, kwargs=kwargs)
        return 1.0

    g = as_grader(spy)
    assert g.reward_kit_style and not g.batched and g.required_columns() == []
    (out,) = g.grade([Sample("4", {"ground_truth": "4", "id": 7}, prompt=[{"role": "user", "content": "2+2?"}])])
    assert out.score == 1.0
    assert seen["messages"] == [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert seen["ground_truth"] == "4" and seen["kwargs"] == {"id": 7}  # other columns as keyword arguments


def test_evaluate_result_becomes_a_grade_with_its_metrics():
    g = as_grader(informativeness)
    short, long_ = g.grade(SAMPLES)
    assert short.kind is OutcomeKind.SCORE and short.score == pytest.approx(0.1)
    assert long_.score == pytest.approx(0.9) and long_.reason == "Word count: 9"
    assert long_.metrics == {"word_count": pytest.approx(0.9)}


def test_dict_results_and_ground_truth():
    outs = as_grader(exact_answer).grade(SAMPLES)
    assert [o.score for o in outs] == [1.0, 0.0]
    assert outs[0].metrics == {"exact": 1.0} and "expected '4'" in (outs[1].reason or "")


def test_score_and_metrics_tuples():
    outs = as_grader(tuple_scorer).grade(SAMPLES)
    assert [o.score for o in outs] == [1.0, 0.0] and outs[0].metrics == {"length": 1.0}


def test_a_reported_error_is_a_grader_error_not_a_score():
    (out, _) = as_grader(failing).grade(SAMPLES)
    assert out.kind is OutcomeKind.GRADER_ERROR and "the judge was unreachable" in (out.error or "")


def test_an_unknown_result_shape_is_invalid_output():
    (out, _) = as_grader(lambda messages, ground_truth=None, **kw: {"value": 1}).grade(SAMPLES)
    assert out.kind is OutcomeKind.INVALID_OUTPUT


def test_rft_graders_asking_for_messages_get_the_whole_conversation():
    import rft

    @rft.grader
    def turns(messages, completion):
        return float(len(messages))

    assert not turns.reward_kit_style
    assert [o.score for o in turns.grade(SAMPLES[:1])] == [2.0]  # the prompt and the completion (issue 15)


def test_reward_kit_graders_pickle_and_key_the_cache_on_the_reply():
    from rft.scoring.cache import cache_key

    g = as_grader(exact_answer)
    assert [o.score for o in pickle.loads(pickle.dumps(g)).grade(SAMPLES)] == [1.0, 0.0]
    a, b = SAMPLES
    assert cache_key("i", g, a) != cache_key("i", g, b)


RK_PLUGIN = '''
from dataclasses import dataclass, field


@dataclass
class MetricResult:
    score: float
    reason: str
    success: bool = False


@dataclass
class EvaluateResult:
    score: float
    reason: str = ""
    metrics: dict = field(default_factory=dict)


def exact_answer(messages, ground_truth=None, **kwargs):
    """1.0 when the assistant's last message is the ground truth."""
    answer = messages[-1]["content"].strip()
    ok = answer == str(ground_truth)
    return EvaluateResult(float(ok), "compared", {"exact": MetricResult(float(ok), "exact match", ok)})
'''


def test_rft_grade_runs_a_reward_kit_function_from_a_plugin_file(tmp_path: Path):
    """Fireworks-style rows (messages + ground_truth), a plugin file without hooks."""
    (tmp_path / "rk.py").write_text(RK_PLUGIN)
    (tmp_path / "graders.yaml").write_text("plugins: [rk.py]\ngraders:\n  - name: exact_answer\n")
    rows = [
        {"messages": [{"role": "user", "content": "2+2?"}], "ground_truth": "4"},
        {"messages": [{"role": "user", "content": "3+3?"}], "ground_truth": "6"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "completions.jsonl").write_text('"4"\n"five"\n')
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(
        app,
        ["grade", "--data", str(tmp_path / "rows.jsonl"), "--completions", str(tmp_path / "completions.jsonl")]
        + ["--graders", str(tmp_path / "graders.yaml"), "--out", str(out), "--workers", "1"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    recs = read_jsonl(out)
    assert [r["graders"]["exact_answer"]["score"] for r in recs] == [1.0, 0.0]
    assert recs[0]["graders"]["exact_answer"]["metrics"] == {"exact": 1.0}
