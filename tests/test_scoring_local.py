"""The local executor: faults are contained, counted by kind, and the next batch is normal."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

import rft
from rft.core import GraderEntry, GraderSet, Outcome, OutcomeKind, Sample
from rft.core.errors import ConfigError, GraderError
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor
from rft.scoring.base import Job, Ledger
from rft.scoring.cache import ResultCache, cache_key
from rft.scoring.local import LocalExecutor

PLUGIN = str(Path(__file__).with_name("scoring_graders.py"))
TIMEOUT = 1.0


def grader_set(*entries: dict, formula: str | None = None) -> GraderSet:
    cfg: dict = {"graders": list(entries), "plugins": [PLUGIN]}
    if formula:
        cfg["formula"] = formula
    return grader_set_from_config(cfg)


def kinds(result, gid: str) -> list[str]:
    return [per[gid].kind.value for per in result.outcomes]


# completion → (kind, score): why each is right
FAULTS = [
    ("ok", "score", 0.2),  # len("ok") / 10
    ("boom", "grader_error", None),  # the grader raised; on_error "fail" leaves no score
    ("nan", "invalid_output", None),  # NaN is never a score
    ("hang", "timeout", None),  # sleeps past the 1 s timeout: its worker is killed
    ("spin", "timeout", None),  # a busy loop never yields, and is killed all the same
    ("die", "infrastructure", None),  # os._exit on every try: retried once, then dropped
    ("fine", "score", 0.4),  # the samples after the faults still score
]


@pytest.fixture(scope="module")
def unruly_executor():
    gs = grader_set({"name": "unruly", "timeout": TIMEOUT, "retries": 1})
    with make_executor(gs, "local", ScoringOptions(num_workers=2, error_budget=1.0)) as ex:
        yield ex


def test_every_fault_is_contained_and_counted(unruly_executor):
    samples = [Sample(c) for c, _, _ in FAULTS]
    result = unruly_executor.score(samples)
    assert kinds(result, "unruly") == [k for _, k, _ in FAULTS]
    assert result.scores("unruly") == [s for _, _, s in FAULTS]
    m = result.metrics
    # two timeouts, one of each other error kind, two scores
    assert (m["graders/unruly/count/timeout"], m["graders/unruly/count/score"]) == (2.0, 2.0)
    assert m["graders/unruly/count/infrastructure"] == m["graders/unruly/count/grader_error"] == 1.0
    died = result.outcomes[5]["unruly"]
    # sent 3 times: its shard ("spin", "die", "fine") stopped at the timeout, so it went again
    # unrun (free); then it killed its worker (charged) and once more alone (retries=1)
    assert died.attempts == 3
    assert m["graders/unruly/retries"] == sum(per["unruly"].attempts - 1 for per in result.outcomes) >= 2
    assert "boom on purpose" in result.outcomes[1]["unruly"].traceback
    # the pool is whole again: the next batch scores normally
    after = unruly_executor.score([Sample("abc"), Sample("abcd")])
    assert after.scores("unruly") == [0.3, 0.4]


def test_a_hung_sample_costs_its_timeout_not_the_batch(unruly_executor):
    samples = [Sample("hang")] + [Sample("x" * i) for i in range(1, 9)]
    t0 = time.monotonic()
    result = unruly_executor.score(samples)
    elapsed = time.monotonic() - t0
    assert kinds(result, "unruly") == ["timeout"] + ["score"] * 8
    # behaviour, not speed: without a kill this never returns; the margin covers a worker restart
    assert elapsed < TIMEOUT + 10


def test_wrong_length_from_a_batched_grader_is_invalid_output():
    gs = grader_set({"name": "short_batch"})
    with make_executor(gs, "local", ScoringOptions(num_workers=1, error_budget=1.0)) as ex:
        bad = ex.score([Sample("a"), Sample("short")])
        # the call returned 1 result for 2 samples: neither can be trusted
        assert kinds(bad, "short_batch") == ["invalid_output", "invalid_output"]
        assert "returned 1 results for 2 samples" in bad.outcomes[0]["short_batch"].error
        assert ex.score([Sample("a"), Sample("bb")]).scores("short_batch") == [0.1, 0.2]


def test_async_grader_timeout_and_error():
    gs = grader_set({"name": "unruly_async", "timeout": TIMEOUT})
    with make_executor(gs, "local", ScoringOptions(num_workers=1, error_budget=1.0)) as ex:
        result = ex.score([Sample("ok"), Sample("hang"), Sample("boom")])
        assert kinds(result, "unruly_async") == ["score", "timeout", "grader_error"]
        # "block" sleeps without awaiting: cancellation cannot reach it, its worker is
        # killed, and the samples it starved run again alone, so only it times out
        blocked = ex.score([Sample("ok"), Sample("block"), Sample("fine")])
        assert kinds(blocked, "unruly_async") == ["score", "timeout", "score"]


@pytest.mark.parametrize(
    ("on_error", "score", "fallback"),
    [
        ("fail", None, False),  # the error stays an error with no score
        ("skip", None, True),  # not applicable: excluded from the reward
        (0.0, 0.0, True),  # the configured fixed score
    ],
)
def test_on_error_policy(on_error, score, fallback):
    gs = grader_set({"name": "unruly", "on_error": on_error})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        out = ex.score([Sample("boom"), Sample("ok")]).outcomes[0]["unruly"]
    assert (out.kind, out.score, out.fallback) == (OutcomeKind.GRADER_ERROR, score, fallback)


@pytest.mark.parametrize("on_error", ["fail", 0.0])
def test_error_budget_stops_a_broken_grader(on_error):
    # a fixed score on error does not hide a grader that fails on every sample
    gs = grader_set({"name": "always_raises", "on_error": on_error})
    rows = [Sample("a", {"answer": "1"}), Sample("b", {"answer": "2"})]
    options = ScoringOptions(inline=True, error_budget=0.5)
    with make_executor(gs, "local", options) as ex, pytest.raises(GraderError) as info:
        ex.score(rows, step=7)
    err = info.value
    assert (err.grader, err.kind, err.sample_index) == ("always_raises", "grader_error", 0)
    assert err.plugin == PLUGIN
    text = str(err)
    for needle in ("'always_raises'", PLUGIN, "2 of 2 samples", "step 7", '"answer": "1"', "KeyError", "error_budget"):
        assert needle in text
    assert err.result.outcomes[1]["always_raises"].kind is OutcomeKind.GRADER_ERROR


def test_error_budget_lets_a_flaky_grader_through():
    gs = grader_set({"name": "unruly"})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=0.5)) as ex:
        result = ex.score([Sample("boom"), Sample("a"), Sample("b"), Sample("c")])  # 25 % errors
    assert kinds(result, "unruly") == ["grader_error", "score", "score", "score"]


def test_duplicates_are_scored_once(tmp_path):
    gs = grader_set({"name": "counted", "log_dir": str(tmp_path)})
    with make_executor(gs, "local", ScoringOptions(num_workers=2)) as ex:
        first = ex.score([Sample("x"), Sample("x"), Sample("y")])
        assert len(list(tmp_path.iterdir())) == 2  # "x" once, "y" once
        assert [per["counted"].cached for per in first.outcomes] == [False, True, False]
        second = ex.score([Sample("x"), Sample("z")])
        assert len(list(tmp_path.iterdir())) == 3  # only "z" is new
    assert second.metrics["graders/counted/cache_hit_rate"] == 0.5


def test_errors_are_not_cached():
    # a raise may be transient: the same inputs are graded again next time
    gs = grader_set({"name": "unruly"})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        ex.score([Sample("boom")])
        again = ex.score([Sample("boom")]).outcomes[0]["unruly"]
    assert (again.kind, again.cached) == (OutcomeKind.GRADER_ERROR, False)


def test_cache_key_depends_on_the_grader_inputs_only():
    g = rft.grader(lambda completion, answer: 1.0, name="g")

    def key(s):
        return cache_key("id", g, s)

    assert key(Sample("4", {"answer": "4", "id": 1})) == key(Sample("4", {"answer": "4", "id": 2}))  # id unused
    assert key(Sample("4", {"answer": "4"})) != key(Sample("4", {"answer": "5"}))  # answer is an input
    assert cache_key("id", g, Sample("4", {"answer": "4"})) != cache_key("id2", g, Sample("4", {"answer": "4"}))
    cache = ResultCache(max_entries=2)
    for k in "abc":
        cache.put(k, rft.Outcome(OutcomeKind.SCORE, score=1.0))
    assert (cache.get("a"), len(cache)) == (None, 2)  # least recently used dropped


def test_metrics_and_rewards():
    gs = grader_set({"name": "unruly", "weight": 2.0}, {"name": "counted", "weight": 0.0})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        result = ex.score([Sample("ab"), Sample("abcd"), Sample("boom")])
    # weighted sum without the weight-0 grader; the raising sample has no unruly score
    assert result.rewards == pytest.approx([0.4, 0.8, None])
    m = result.metrics
    assert m["graders/unruly/mean"] == pytest.approx(0.3)  # mean of 0.2 and 0.4
    assert m["graders/unruly/std"] == pytest.approx(0.1)
    assert m["graders/unruly/error_rate"] == pytest.approx(1 / 3)
    assert m["graders/counted/mean"] == 1.0
    for key in ("latency_p50", "latency_p95", "cache_hit_rate", "count/not_applicable"):
        assert f"graders/unruly/{key}" in m
    assert all(isinstance(v, float) for v in m.values())


def test_inline_and_workers_agree(unruly_executor):
    safe = [Sample(c) for c in ("ok", "boom", "nan", "hang", "")]
    gs = grader_set({"name": "unruly", "timeout": TIMEOUT, "retries": 1})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as inline:
        a = inline.score(safe)
    b = unruly_executor.score(safe)
    assert [per["unruly"].kind for per in a.outcomes] == [per["unruly"].kind for per in b.outcomes]
    assert a.scores("unruly") == b.scores("unruly")


def test_a_set_built_in_code_runs_in_workers():
    # no spec: the set travels to the workers with cloudpickle
    gs = GraderSet([rft.grader(lambda completion: completion.count("a") / 10, name="a_count")])
    assert gs.spec is None
    with LocalExecutor(gs, ScoringOptions(num_workers=1)) as ex:
        assert ex.score([Sample("banana")], step=3).scores("a_count") == [0.3]


def test_a_plugin_that_fails_in_the_worker_is_reported(tmp_path):
    gs = grader_set({"name": "counted"})
    bad = dict(gs.spec)
    bad["plugins"] = [str(tmp_path / "gone.py")]
    gs.spec = bad
    with pytest.raises(rft.PluginError, match="gone.py"), LocalExecutor(gs, ScoringOptions(num_workers=1)) as ex:
        ex.score([Sample("a")])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_budget": 1.5},  # a share, so at most 1
        {"num_workers": 0},  # nobody to run the graders
        {"default_timeout": 0},  # a zero timeout stops every call
    ],
)
def test_invalid_options(kwargs):
    with pytest.raises(ConfigError):
        ScoringOptions(**kwargs)


def test_step_is_injected_without_touching_the_callers_samples():
    gs = GraderSet([rft.grader(lambda step: float(step), name="the_step")])
    samples = [Sample("a")]
    with LocalExecutor(gs, ScoringOptions(inline=True)) as ex:
        assert ex.score(samples, step=5).scores("the_step") == [5.0]
    assert samples[0].step is None


def pids(result, gid: str) -> set[float]:
    return {per[gid].metrics["pid"] for per in result.outcomes}


def test_cheap_graders_go_as_one_call_slow_ones_are_spread():
    gs = grader_set({"name": "worker_pid", "id": "cheap"}, {"name": "worker_pid", "id": "slow", "work_ms": 20})
    samples = [Sample(f"s{i}") for i in range(16)]
    with make_executor(gs, "local", ScoringOptions(num_workers=2, cache=False)) as ex:
        assert ex.shards_for(gs["cheap"], 16) is None  # not measured yet: one shard per worker
        ex.score(samples)
        # measured: the cheap grader's 16 samples are less work than a call's round trip…
        assert ex.shards_for(gs["cheap"], 16) == 1
        assert len(pids(ex.score(samples), "cheap")) == 1
        # …and the slow one's 320 ms go in shards that idle workers take in turn
        jobs = [Job(gs[g], samples, None, ex.shards_for(gs[g], 16)) for g in ("cheap", "slow")]
        tasks = Ledger(jobs, 2, oversplit=4).pending
        assert [len([t for t in tasks if t.job == j]) for j in (0, 1)] == [1, 8]


def test_outcomes_survive_pickling(unruly_executor):
    result = unruly_executor.score([Sample("ok")])
    assert pickle.loads(pickle.dumps(result)).outcomes[0]["unruly"].score == 0.2


def test_samples_and_outcomes_pickle_every_field():
    # both pickle as flat tuples (they cross to workers and actors by the thousand)
    sample = Sample("c", {"answer": "4"}, prompt=[{"role": "user", "content": "2+2"}], tool_calls=[], step=3)
    outcome = Outcome(OutcomeKind.TIMEOUT, 0.5, "r", {"m": 1.0}, "e", "tb", 0.25, True, 2, True)
    assert pickle.loads(pickle.dumps(sample)) == sample
    assert pickle.loads(pickle.dumps(outcome)) == outcome


def _ledger(n: int, retries: int) -> Ledger:
    entry = GraderEntry(id="g", grader=rft.grader(lambda completion: 1.0, name="g"), retries=retries)
    return Ledger([Job(entry, [Sample(str(i)) for i in range(n)], None)], num_shards=1)


def queued(ledger: Ledger) -> list[tuple[list[int], bool]]:
    return [(t.idx, t.exclusive) for t in ledger.pending]


def test_a_crash_charges_only_the_sample_to_blame():
    led = _ledger(3, retries=1)
    shard = led.pending.popleft()
    led.crashed(shard, "died")
    # nobody can be blamed for a crash of a 3-sample shard: each runs again alone, free
    assert queued(led) == [([0], True), ([1], True), ([2], True)]
    assert led.crashes[0] == [0, 0, 0]
    led.pending.clear()
    led.crashed(shard, "died", culprit=1)
    # a known culprit is charged and retried alone; the others go again together, free
    assert queued(led) == [([1], True), ([0, 2], False)]
    assert led.crashes[0] == [0, 1, 0]


def test_infrastructure_errors_are_retried_then_dropped():
    led = _ledger(1, retries=1)
    led.crashed(led.pending.popleft(), "its worker process died")  # first crash: retried
    assert queued(led) == [([0], True)]
    led.crashed(led.pending.popleft(), "its worker process died")  # second: over retries=1
    assert led.done() and not led.pending
    out = led.outcomes()[0][0]
    assert (out.kind, out.attempts) == (OutcomeKind.INFRASTRUCTURE, 2)
    assert "gave up after 1 retry" in out.error
