"""rft.testing.check_grader: the contract check plugin authors call in their own tests."""

from __future__ import annotations

import itertools

import pytest

import rft
from graders.strings import StringCheck, exact_match
from rft.core import OutcomeKind, Sample
from rft.testing import GraderContractError, as_samples, check_grader

# -- graders that break one rule each (module level, so pickling is not the problem) ----

_counter = itertools.count()


@rft.grader
def returns_text(completion: str) -> str:
    return "good"


@rft.grader
def raises(completion: str) -> float:
    raise RuntimeError("boom")


@rft.grader
def drifts(completion: str) -> float:
    return float(next(_counter))  # a new value on every call


@rft.grader(range=(0.0, 1.0))
def over_range(completion: str) -> float:
    return 2.0


@rft.grader
def needs_answer(completion: str, answer: str) -> float:
    return float(completion == answer)


@rft.grader
def only_digits(completion: str) -> float | None:
    return 1.0 if completion.isdigit() else None


def make_closure_grader():
    secret = "x"

    @rft.grader(name="closure")
    def closure(completion: str) -> float:
        return float(secret in completion)

    return closure


SAMPLES = [{"completion": "4", "answer": "4"}, {"completion": "5", "answer": "4"}]


# -- passing --------------------------------------------------------------------------


def test_a_good_grader_passes_and_returns_its_outcomes():
    outcomes = check_grader(exact_match, SAMPLES)
    assert [(o.kind, o.score) for o in outcomes] == [(OutcomeKind.SCORE, 1.0), (OutcomeKind.SCORE, 0.0)]


def test_a_grader_class_with_params_passes():
    samples = [Sample("PARIS", item={"city": "Paris"}), Sample("Lyon", item={"city": "Paris"})]
    outcomes = check_grader(StringCheck, samples, params={"reference": "{{item.city}}", "operation": "ilike"})
    assert [o.score for o in outcomes] == [1.0, 0.0]


def trl_reward(prompts, completions, answer, **kwargs):
    return [float(a in c) for c, a in zip(completions, answer)]


def test_a_trl_reward_function_passes_unchanged():
    outcomes = check_grader(
        trl_reward,
        [
            {"completion": "it is 4", "answer": "4", "prompt": "2+2?"},
            {"completion": "5", "answer": "4", "prompt": "2+2?"},
        ],
    )
    assert [o.score for o in outcomes] == [1.0, 0.0]
    with pytest.raises(GraderContractError, match="input 'answer' does not resolve"):
        check_grader(trl_reward, [{"completion": "4"}])


def test_not_applicable_is_a_valid_result():
    outcomes = check_grader(only_digits, [{"completion": "12"}, {"completion": "twelve"}])
    assert [o.kind for o in outcomes] == [OutcomeKind.SCORE, OutcomeKind.NOT_APPLICABLE]


# -- failing: each problem is named ----------------------------------------------------


@pytest.mark.parametrize(
    "grader, samples, problem",
    [
        (needs_answer, [{"completion": "4"}], "input 'answer' does not resolve"),
        (returns_text, SAMPLES, "invalid return value: grader 'returns_text' returned str"),
        (over_range, SAMPLES, "outside its declared range [0.0, 1.0]"),
        (raises, SAMPLES, "raised RuntimeError: boom"),
        (drifts, SAMPLES, "not deterministic"),
        (make_closure_grader(), SAMPLES, "not picklable"),
    ],
)
def test_each_broken_rule_is_reported(grader, samples, problem):
    with pytest.raises(GraderContractError) as info:
        check_grader(grader, samples)
    assert problem in str(info.value)
    assert isinstance(info.value, AssertionError)  # pytest shows it as a plain test failure


def test_every_problem_is_listed_not_just_the_first():
    with pytest.raises(GraderContractError) as info:
        check_grader(make_closure_grader(), [{"completion": "x"}], params=None, repeats=2)
    assert len(info.value.problems) == 1  # control: one problem, one line

    @rft.grader(name="bad")
    def bad(completion: str) -> str:  # a closure (unpicklable) that also returns a string
        return completion

    with pytest.raises(GraderContractError) as info:
        check_grader(bad, [{"completion": "a"}, {"completion": "b"}])
    problems = info.value.problems
    assert sum("invalid return value" in p for p in problems) == 2  # one per sample
    assert any("not picklable" in p for p in problems)
    assert "3 problems" in str(info.value)


def test_allow_errors_accepts_a_grader_that_fails_loudly_on_bad_rows():
    outcomes = check_grader(raises, SAMPLES, allow_errors=True)
    assert all(o.kind is OutcomeKind.GRADER_ERROR for o in outcomes)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"completion": "a", "answer": "b"}, Sample("a", item={"answer": "b"})),  # flat row
        ({"completion": "a", "item": {"answer": "b"}}, Sample("a", item={"answer": "b"})),  # Sample.to_dict shape
        (Sample("a"), Sample("a")),
    ],
)
def test_as_samples(raw, expected):
    assert as_samples([raw]) == [expected]


def test_as_samples_rejects_rows_without_a_completion():
    with pytest.raises(ValueError, match="samples\\[0\\] has no 'completion'"):
        as_samples([{"answer": "b"}])
