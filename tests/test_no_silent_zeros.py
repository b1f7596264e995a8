"""No silent zeros: a grader that could not grade is an error outcome of a named kind, and a
formula that gives no reward says why, on every path (in-process, local workers, Ray actors).

- math-verify past its time limit is a ``timeout`` and its errors a ``grader_error``, on the
  main thread (local workers) and on helper threads (``inline`` scoring, Ray actors);
- a ``code_exec`` harness killed, hung or out of time before the tests ran is
  ``infrastructure`` / ``timeout``, not 0.0;
- a formula that fails is a per-sample :class:`rft.core.RewardError` and a per-batch count.
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import pytest

import graders.sandboxed
import rft.sandbox as sandbox
from graders.code import CodeExec
from graders.mathematics import MathEquivalent
from rft.core import GraderSet, Outcome, OutcomeKind, Sample, as_grader
from rft.core.errors import ConfigError, GraderInfrastructureError
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor

PLUGIN = str(Path(__file__).with_name("scoring_graders.py"))

#: math-verify parses this for seconds (pure Python, so a deadline can stop it).
SLOW_MATH = "\\boxed{" + "+".join(f"x_{{{i}}}^{{2}}" for i in range(400)) + "}"
#: a math deadline far below SLOW_MATH's parse time, far above a normal answer's
MATH_LIMIT = 0.3
KILL_HARNESS = "import os\nos.kill(os.getppid(), 9)\n"
TESTS = {"tests": ["assert True"]}

#: killing or stopping its harness server needs a server in its own sandbox (bwrap or unshare)
needs_isolation = pytest.mark.skipif(
    not any(sandbox.available_backends().get(b) is None for b in ("bwrap", "unshare")), reason="no isolating backend"
)


def grade_one(grader, completion: str, **item) -> Outcome:
    return as_grader(grader).grade([Sample(completion, item=item)])[0]


# ---------------------------------------------------------------------------
# math-verify: timeouts and errors in-process, on the main thread and off it
# ---------------------------------------------------------------------------


def test_math_timeout_on_the_main_thread_is_a_timeout_not_a_zero():
    t0 = time.monotonic()
    out = grade_one(MathEquivalent(time_limit=MATH_LIMIT), SLOW_MATH, answer="4")
    assert out.kind is OutcomeKind.TIMEOUT and out.score is None, out
    assert "math-verify ran past its time limit of 0.3 s" in out.error
    assert time.monotonic() - t0 < 30  # stopped by the deadline, not by finishing the parse


def test_math_timeout_in_a_helper_thread_is_the_same_timeout():
    # Ray actors and inline scoring run sync graders on helper threads: no signals there
    g = MathEquivalent(time_limit=MATH_LIMIT)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        out = ex.submit(grade_one, g, SLOW_MATH, answer="4").result()
    assert out.kind is OutcomeKind.TIMEOUT and "math-verify ran past" in out.error
    # the thread is fine afterwards: no interruption left pending for the next sample
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        outs = [ex.submit(grade_one, g, f"\\boxed{{{i}}}", answer=str(i)).result() for i in range(20)]
    assert [o.score for o in outs] == [1.0] * 20


def test_math_deadline_never_fires_after_the_call():
    g = MathEquivalent(time_limit=0.05)
    for i in range(50):  # calls shorter than the deadline: its timer is cancelled, never fires late
        assert grade_one(g, f"\\boxed{{{i}}}", answer=str(i)).score == 1.0
    time.sleep(0.1)  # a late interruption would land here and fail the test


def test_math_verify_error_is_a_grader_error_not_a_zero(monkeypatch):
    import math_verify

    def broken(*args, **kwargs):
        raise RuntimeError("sympy blew up")

    monkeypatch.setattr(math_verify, "verify", broken)
    out = grade_one(MathEquivalent(), "\\boxed{4}", answer="4")
    assert out.kind is OutcomeKind.GRADER_ERROR and out.score is None
    assert "math-verify failed comparing the answers: RuntimeError: sympy blew up" in out.error


def test_math_verify_parse_error_is_a_grader_error(monkeypatch):
    import math_verify

    real = math_verify.parse

    def parse(text, **kwargs):
        if "4" in text and "$" not in text:  # the completion, not the reference
            raise RuntimeError("parser bug")
        return real(text, **kwargs)

    monkeypatch.setattr(math_verify, "parse", parse)
    out = grade_one(MathEquivalent(), "\\boxed{4}", answer="4")
    assert out.kind is OutcomeKind.GRADER_ERROR and "parser bug" in out.error


def test_math_time_limit_is_checked_at_load():
    with pytest.raises(ConfigError, match="time_limit must be a positive number"):
        grader_set_from_config({"graders": [{"name": "math", "time_limit": 0}]})


def test_math_timeout_with_inline_scoring():
    gs = grader_set_from_config({"graders": [{"name": "math", "time_limit": MATH_LIMIT}]})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        result = ex.score([Sample(SLOW_MATH, {"answer": "4"}), Sample("\\boxed{4}", {"answer": "4"})])
    assert [per["math"].kind.value for per in result.outcomes] == ["timeout", "score"]
    assert "math-verify ran past" in result.outcomes[0]["math"].error  # the grader's deadline, not the engine's
    assert result.metrics["graders/math/count/timeout"] == 1.0


# ---------------------------------------------------------------------------
# code_exec: no test result is no score
# ---------------------------------------------------------------------------


def test_code_exec_out_of_time_before_the_tests_is_a_timeout():
    # one-shot: the sandbox's wall clock ends before the interpreter even starts the harness
    out = grade_one(CodeExec(persistent=False, time_limit=1e-6), "x = 1\n", **TESTS)
    assert out.kind is OutcomeKind.TIMEOUT and out.score is None
    assert "before the tests started" in out.error


def test_code_exec_harness_stopped_before_the_tests_is_infrastructure():
    g = CodeExec()
    stopped = sandbox.SandboxResult(
        returncode=1, stdout="", stderr="MemoryError", timed_out=False, wall_s=0.1, backend="unshare", channel=""
    )
    with pytest.raises(GraderInfrastructureError, match="stopped before the tests started"):
        g._grade(stopped, [])
    # once the tests have started, a stop fails the tests that did not finish: a real 0
    grade = g._grade(stopped, [{"total": 2}, {"t": 0, "ok": True}])
    assert grade.score == 0.5 and "test 2" in grade.reason


@needs_isolation
def test_code_exec_killed_harness_is_infrastructure():
    g = CodeExec()
    out = grade_one(g, KILL_HARNESS, **TESTS)
    assert out.kind is OutcomeKind.INFRASTRUCTURE and out.score is None
    assert "killed the sandboxed test harness" in out.error
    assert grade_one(g, "x = 1\n", **TESTS).score == 1.0  # the next sample scores normally


@needs_isolation
def test_code_exec_hung_harness_is_a_timeout(monkeypatch):
    monkeypatch.setattr(graders.sandboxed, "_SERVER_GRACE_S", 1.0)
    g = CodeExec(time_limit=1.0)
    # the program stops its harness server: it never answers, in two fresh sandboxes
    out = grade_one(g, "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n", **TESTS)
    assert out.kind is OutcomeKind.TIMEOUT and "did not answer within 1s + 1s" in out.error
    assert grade_one(g, "x = 1\n", **TESTS).score == 1.0


# ---------------------------------------------------------------------------
# formulas: no reward says why, per sample and per batch
# ---------------------------------------------------------------------------


def formula_set(formula: str) -> GraderSet:
    return grader_set_from_config(
        {"graders": [{"name": "unruly"}, {"name": "counted"}], "formula": formula, "plugins": [PLUGIN]}
    )


def test_formula_failures_are_typed_with_a_reason():
    gs = formula_set("1 / unruly")
    ok = {"unruly": Outcome(OutcomeKind.SCORE, score=0.5), "counted": Outcome(OutcomeKind.SCORE, score=1.0)}
    assert gs.reward({k: o.score for k, o in ok.items()}, ok) == (2.0, None)
    # a division by zero
    value, err = gs.reward({"unruly": 0.0, "counted": 1.0})
    assert value is None and err is not None and err.kind == "formula_error"
    assert "ZeroDivisionError" in err.reason and "'1 / unruly'" in err.reason
    # a score the formula reads is missing: the reason names the grader and its failure
    failed = {"unruly": Outcome.failure(OutcomeKind.TIMEOUT, "ran past 1 s"), "counted": ok["counted"]}
    value, err = gs.reward({k: o.score for k, o in failed.items()}, failed)
    assert value is None and err is not None and err.kind == "missing_score"
    assert "'unruly' failed (timeout): ran past 1 s" in err.reason
    # not a finite number
    value, err = formula_set("unruly * 1e308 * 10").reward({"unruly": 1.0, "counted": 1.0})
    assert value is None and err is not None and err.kind == "formula_error" and "inf" in err.reason


def test_a_grader_the_formula_does_not_read_does_not_void_the_reward():
    gs = formula_set("2 * unruly")
    assert gs.reward({"unruly": 0.5, "counted": None}) == (1.0, None)
    assert gs.combine({"unruly": None, "counted": 1.0}) is None


@pytest.mark.parametrize("inline", [True, False])
def test_formula_failures_are_counted_per_batch(inline, caplog):
    gs = formula_set("1 / unruly")
    with make_executor(gs, "local", ScoringOptions(inline=inline, num_workers=1, error_budget=1.0)) as ex:
        result = ex.score([Sample("ok"), Sample(""), Sample("boom"), Sample("")])
    assert result.rewards == [5.0, None, None, None]
    assert [e.kind if e else None for e in result.reward_errors] == [
        None,
        "formula_error",
        "missing_score",
        "formula_error",
    ]
    assert "'unruly' failed (grader_error)" in result.reward_errors[2].reason
    assert result.metrics["reward/count/formula_error"] == 2.0
    assert result.metrics["reward/count/missing_score"] == 1.0
    # logged once for the batch, not once per sample
    logged = [r for r in caplog.records if "reward formula gave no reward" in r.getMessage()]
    assert len(logged) == 1 and "3 of 4 samples" in logged[0].getMessage()


def test_no_formula_no_reward_counts():
    gs = grader_set_from_config({"graders": [{"name": "unruly"}], "plugins": [PLUGIN]})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        result = ex.score([Sample("ok")])
    assert result.reward_errors == [None] and "reward/count/formula_error" not in result.metrics


# ---------------------------------------------------------------------------
# every path at once, on the local executor's workers and on Ray actors
# ---------------------------------------------------------------------------

EVERY_PATH = {
    "graders": [
        {"name": "math", "time_limit": MATH_LIMIT},
        {"name": "code_exec"},
        {"name": "unruly"},
    ],
    "formula": "1 / unruly",
    "plugins": [PLUGIN],
}

# completion → what each path must record. (A one-shot sandbox out of time before its tests is
# tested on its own above: on two busy cores, a worker preempted past a tiny wall limit may see
# the harness finish first, which is a fair result but not the path under test.)
EVERY_PATH_SAMPLES = [
    ("\\boxed{4}", {"math": "score"}),
    (SLOW_MATH, {"math": "timeout"}),
    (KILL_HARNESS, {"code_exec": "infrastructure"}),
    ("", {"unruly": "score"}),  # unruly scores 0.0: the formula divides by zero
    ("boom", {"unruly": "grader_error"}),  # unruly raises: the formula misses its score
]


def check_every_path(kind: str) -> None:
    gs = grader_set_from_config(EVERY_PATH)
    samples = [Sample(c, {"answer": "4", **TESTS}) for c, _ in EVERY_PATH_SAMPLES]
    with make_executor(gs, kind, ScoringOptions(num_workers=2, error_budget=1.0)) as ex:
        result = ex.score(samples)
    for (completion, want), per in zip(EVERY_PATH_SAMPLES, result.outcomes):
        got = {gid: per[gid].kind.value for gid in want}
        assert got == want, (completion[:40], {gid: per[gid].error for gid in want})
    assert result.outcomes[0]["math"].score == 1.0
    assert "math-verify ran past" in result.outcomes[1]["math"].error
    assert [e.kind if e else None for e in result.reward_errors[3:]] == ["formula_error", "missing_score"]
    m = result.metrics
    assert (m["reward/count/formula_error"], m["reward/count/missing_score"]) == (1.0, 1.0)
    assert m["graders/math/count/timeout"] == 1.0 and m["graders/code_exec/count/infrastructure"] == 1.0


@needs_isolation
def test_every_path_on_local_workers():
    check_every_path("local")


@pytest.mark.ray
@pytest.mark.slow
@needs_isolation
def test_every_path_on_ray_actors(ray_cluster):
    check_every_path("ray")
