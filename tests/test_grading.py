"""The grader API: decorator forms, argument injection, typed outcomes, grader sets."""

from __future__ import annotations

import asyncio
import math
import os
import pickle
from pathlib import Path

import pytest

import rft
from rft.core import GraderEntry, GraderSet, OutcomeKind, Sample, as_grader, coerce_result
from rft.core.errors import ConfigError
from rft.plugins import grader_set_from_file, grader_set_from_spec

# -- module-level graders (picklable by reference) ---------------------------


@rft.grader
def exact(completion: str, answer: str) -> float:
    return float(completion.strip() == answer.strip())


@rft.grader(name="starts_with", description="Completion starts with the prefix column.")
def _starts(completion: str, prefix: str = "A") -> bool:
    return completion.startswith(prefix)


@rft.grader(batched=True)
def lengths(completion: list[str]) -> list[int]:
    return [len(c) for c in completion]


@rft.grader
async def slow_echo(completion: str) -> float:
    await asyncio.sleep(0.05)
    return float(len(completion))


@rft.grader(range=(0.0, 1.0))
class Contains:
    """1.0 when the completion contains the needle."""

    def __init__(self, needle: str, case_sensitive: bool = True):
        self.needle = needle
        self.case_sensitive = case_sensitive

    def __call__(self, completion: str) -> float:
        c, n = (completion, self.needle) if self.case_sensitive else (completion.lower(), self.needle.lower())
        return float(n in c)


def trl_reward(prompts, completions, answer, **kwargs):
    """A TRL-style reward function, unchanged."""
    return [float(c == a) for c, a in zip(completions, answer)]


# -- decorator and injection --------------------------------------------------


def test_decorated_function_stays_callable_and_knows_its_inputs():
    assert exact("4 ", "4") == 1.0
    assert exact.inputs == ("completion", "answer")
    assert exact.required_columns() == ["answer"]
    assert _starts.name == "starts_with" and _starts.description.startswith("Completion starts")
    # `prefix` has a default: it is optional, so no column is required
    assert _starts.required_columns() == []


@pytest.mark.parametrize(
    "name, expected",
    [
        ("completion", "out"),  # the model's text
        ("item", {"answer": "4", "prompt": "2+2?"}),  # the whole row
        ("answer", "4"),  # a dataset column by name
        ("prompt", "2+2?"),  # the prompt text
        # the whole conversation: a text prompt becomes one user message, the completion the assistant's
        ("messages", [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "out"}]),
        ("step", 7),
    ],
)
def test_sample_resolves_injected_names(name, expected):
    s = Sample("out", {"answer": "4", "prompt": "2+2?"}, prompt="2+2?", step=7)
    assert s.resolve(name) == expected


def test_tool_calls_are_parsed_from_the_completion_when_not_given():
    s = Sample('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    assert s.resolve("tool_calls") == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    ]


def test_missing_column_fails_at_load_naming_grader_and_column():
    gs = GraderSet([exact])
    with pytest.raises(ConfigError, match=r"grader 'exact' needs column 'answer'.*data.jsonl"):
        gs.check_inputs({"prompt", "answr"}, source="data.jsonl")
    gs.check_inputs({"prompt", "answer"})  # does not raise


def test_missing_input_at_call_time_is_a_grader_error_not_a_zero():
    [out] = exact.grade([Sample("4", {})])
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert out.score is None and "needs input 'answer'" in out.error


# -- typed outcomes -------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind, score",
    [
        (1, OutcomeKind.SCORE, 1.0),
        (True, OutcomeKind.SCORE, 1.0),  # bools are scores 1/0
        (False, OutcomeKind.SCORE, 0.0),
        (0.25, OutcomeKind.SCORE, 0.25),
        (None, OutcomeKind.NOT_APPLICABLE, None),  # excluded, not zero
        (rft.Grade(0.5, "half"), OutcomeKind.SCORE, 0.5),
        (rft.Grade(None, "n/a"), OutcomeKind.NOT_APPLICABLE, None),
        (float("nan"), OutcomeKind.INVALID_OUTPUT, None),
        (float("inf"), OutcomeKind.INVALID_OUTPUT, None),
        ("1.0", OutcomeKind.INVALID_OUTPUT, None),  # strings are not scores
        ([1.0], OutcomeKind.INVALID_OUTPUT, None),
        (rft.Grade(1.0, metrics={"x": "high"}), OutcomeKind.INVALID_OUTPUT, None),
    ],
)
def test_coerce_result(value, kind, score):
    out = coerce_result(value, grader="g")
    assert out.kind is kind
    assert out.score == score


def test_numpy_scalars_are_scores():
    np = pytest.importorskip("numpy")
    assert coerce_result(np.float32(0.5), grader="g").score == 0.5
    assert coerce_result(np.int64(1), grader="g").score == 1.0


def test_declared_range_is_enforced():
    out = coerce_result(1.5, grader="g", range=(0.0, 1.0))
    assert out.kind is OutcomeKind.INVALID_OUTPUT and "outside its declared range" in out.error


def test_grade_keeps_reason_and_metrics():
    g = rft.grader(lambda completion: rft.Grade(0.5, "half right", {"precision": 1}), name="g")
    [out] = g.grade([Sample("x")])
    assert (out.score, out.reason, out.metrics) == (0.5, "half right", {"precision": 1.0})


def test_exception_becomes_grader_error_with_traceback():
    def boom(completion: str) -> float:
        raise ValueError("bad input")

    [out] = rft.grader(boom).grade([Sample("x")])
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "ValueError: bad input" in out.error and "Traceback" in out.traceback


def test_batched_grader_gets_lists_and_wrong_length_is_invalid():
    assert [o.score for o in lengths.grade([Sample("ab"), Sample("abc")])] == [2.0, 3.0]
    short = rft.grader(lambda completion: [1.0], batched=True, name="short")
    outs = short.grade([Sample("a"), Sample("b")])
    assert all(o.kind is OutcomeKind.INVALID_OUTPUT for o in outs)
    assert "returned 1 results for 2 samples" in outs[0].error


def test_async_grader_samples_run_concurrently():
    import time

    t0 = time.perf_counter()
    outs = slow_echo.grade([Sample("a" * i) for i in range(20)])
    elapsed = time.perf_counter() - t0
    assert [o.score for o in outs] == [float(i) for i in range(20)]
    # 20 × 50 ms one after another would take ≥ 1 s; concurrently it is one sleep
    assert elapsed < 0.9


def test_trl_reward_function_is_a_batched_grader_unchanged():
    g = as_grader(trl_reward)
    assert g.batched and g.trl_style and g.required_columns() == ["answer"]
    outs = g.grade([Sample("4", {"answer": "4"}, prompt="2+2?"), Sample("5", {"answer": "4"}, prompt="2+2?")])
    assert [o.score for o in outs] == [1.0, 0.0]


def test_class_grader_takes_params_and_pickles():
    g = as_grader(Contains, params={"needle": "Paris", "case_sensitive": False})
    assert g.name == "contains" and g.range == (0.0, 1.0)
    assert [o.score for o in g.grade([Sample("paris!"), Sample("Rome")])] == [1.0, 0.0]
    g2 = pickle.loads(pickle.dumps(g))
    assert [o.score for o in g2.grade([Sample("PARIS")])] == [1.0]
    assert g2.identity == g.identity
    with pytest.raises(TypeError, match="did you mean 'needle'"):
        as_grader(Contains, params={"neddle": "x"})


def test_function_grader_pickles_by_reference_and_params_bind():
    assert pickle.loads(pickle.dumps(exact)) is exact
    bound = _starts.bind(prefix="B")
    assert bound("Bob") is True and bound.required_columns() == []
    assert pickle.loads(pickle.dumps(bound))("Bob") is True
    with pytest.raises(TypeError, match="has no parameter 'prefx'"):
        _starts.bind(prefx="B")


def test_graders_outcomes_and_samples_unpickle_in_a_fresh_process(tmp_path):
    # what a worker process or Ray actor does: nothing imported but what the pickle names, so
    # every rebuild helper it references (rft.core.outcome/grader/sample) must be importable there
    import subprocess
    import sys

    from rft.core import Outcome

    sets = grader_set_from_file(_write(tmp_path / "g.yaml", "graders:\n  - name: exact_match\n"))
    blob = tmp_path / "blob.pkl"
    blob.write_bytes(
        pickle.dumps(
            {
                "outcome": Outcome(OutcomeKind.SCORE, score=0.5, reason="half", attempts=2),
                "sample": Sample("4", {"answer": "4"}, prompt="2+2?", step=3),
                "class": as_grader(Contains, params={"needle": "x"}),
                "builtin": sets["exact_match"].grader,
            }
        )
    )
    code = (
        "import pickle, sys\n"
        f"d = pickle.loads(open({str(blob)!r}, 'rb').read())\n"
        "print(d['outcome'].score, d['outcome'].attempts, d['sample'].step, d['class'].name, d['builtin'].name)\n"
        "print(d['builtin'].grade([d['sample']])[0].score, d['class'].grade([d['sample']])[0].score)\n"
    )
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])  # Contains lives here
    env = {**os.environ, "PYTHONPATH": path}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.5", "2", "3", "contains", "exact_match", "1.0", "0.0"]


def _write(path, text: str):
    path.write_text(text)
    return path


def test_identity_changes_with_params():
    a = as_grader(Contains, params={"needle": "a"})
    b = as_grader(Contains, params={"needle": "b"})
    assert a.identity != b.identity


# -- grader sets ----------------------------------------------------------------


def test_weighted_sum_skips_not_applicable_and_weight_zero():
    gs = GraderSet(
        [GraderEntry("a", exact, weight=2.0), GraderEntry("b", lengths, weight=0.5), GraderEntry("c", exact, weight=0)]
    )
    assert gs.combine({"a": 1.0, "b": 2.0, "c": 1.0}) == 3.0  # 2*1 + 0.5*2; weight 0 is logged only
    assert gs.combine({"a": None, "b": 2.0, "c": 1.0}) == 1.0
    assert gs.combine({"a": None, "b": None, "c": 1.0}) is None  # nothing applies


def test_formula_is_evaluated_safely():
    gs = GraderSet([GraderEntry("a", exact), GraderEntry("b", lengths)], formula="0.7 * a + 0.3 * min(b, 1)")
    assert math.isclose(gs.combine({"a": 1.0, "b": 5.0}), 1.0)
    assert gs.combine({"a": None, "b": 5.0}) is None
    with pytest.raises(ConfigError, match="formula"):
        GraderSet([GraderEntry("a", exact)], formula="__import__('os').system('true')")
    with pytest.raises(ConfigError, match="names available: a"):
        GraderSet([GraderEntry("a", exact)], formula="a + missing")


def test_on_error_policy_keeps_the_error_recorded():
    out = coerce_result(float("nan"), grader="g")
    skipped = GraderEntry("g", exact, on_error="skip").apply_policy(out)
    assert skipped.kind is OutcomeKind.INVALID_OUTPUT and skipped.score is None and skipped.fallback
    fixed = GraderEntry("g", exact, on_error=-1).apply_policy(coerce_result(float("nan"), grader="g"))
    assert fixed.kind is OutcomeKind.INVALID_OUTPUT and fixed.score == -1.0


def test_duplicate_ids_are_rejected():
    with pytest.raises(ConfigError, match="used twice"):
        GraderSet([GraderEntry("a", exact), GraderEntry("a", lengths)])


# -- loading grader-set files ---------------------------------------------------


def test_grader_set_file_with_registered_grader_and_policy(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text("graders:\n  - name: exact_match\n    weight: 2\n    timeout: 5\n    on_error: skip\n")
    gs = grader_set_from_file(f)
    [e] = gs.entries
    assert (e.id, e.weight, e.timeout, e.on_error, e.grader.plugin) == (
        "exact_match",
        2.0,
        5,
        "skip",
        "graders.strings",
    )
    assert gs.spec["graders"][0]["name"] == "exact_match"


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        (
            "graders:\n  - name: exact_mach\n",
            r"graders\[0\]\.name: unknown grader 'exact_mach': did you mean 'exact_match'",
        ),
        ("graders:\n  - name: exact_match\n    weight: heavy\n", r"graders\[0\]\.weight: `weight` must be a number"),
        ("graders:\n  - name: exact_match\n    on_error: ignore\n", r"graders\[0\]\.on_error"),
        ("graders:\n  - name: exact_match\n    timeout: -1\n", r"graders\[0\]\.timeout"),
        ("graders:\n  - weight: 1\n", r"needs `name:`"),
        ("graders: []\n", r"non-empty list"),
        ("grader:\n  - name: exact_match\n", r"unknown key 'grader'; did you mean 'graders'"),
        ("graders:\n  - name: exact_match\n  bad: [\n", r"g.yaml:\d+: invalid YAML"),
    ],
)
def test_grader_set_file_errors_name_file_and_key(tmp_path, yaml_text, message):
    f = tmp_path / "g.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as info:
        grader_set_from_file(f)
    assert "g.yaml" in str(info.value)


def test_plugin_file_named_in_grader_set_is_loaded_relative_to_it(tmp_path):
    (tmp_path / "my_graders.py").write_text(
        "import rft\n\n"
        "@rft.grader\n"
        "def shouty(completion: str) -> float:\n"
        "    return float(completion.isupper())\n\n"
        "@rft.hookimpl\n"
        "def rft_register_graders(register):\n"
        "    register(shouty)\n"
    )
    f = tmp_path / "g.yaml"
    f.write_text("plugins: [my_graders.py]\ngraders:\n  - name: shouty\n")
    gs = grader_set_from_file(f)
    assert [o.score for o in gs["shouty"].grader.grade([Sample("HI"), Sample("hi")])] == [1.0, 0.0]
    rebuilt = grader_set_from_spec(gs.spec)  # what a worker process does
    assert rebuilt.ids == ["shouty"]


def test_a_set_built_from_graders_has_no_spec_and_says_how_to_get_one():
    gs = GraderSet([exact])
    assert gs.spec is None
    with pytest.raises(ConfigError, match="grader_set_from_config"):
        grader_set_from_spec(gs.spec)
