"""The Ray executor on a real local Ray: same contract as the local executor."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from rft.core import GraderSet, OutcomeKind, Sample
from rft.core.errors import GraderError
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PLUGIN = str(Path(__file__).with_name("scoring_graders.py"))
TIMEOUT = 1.0


def grader_set(*entries: dict) -> GraderSet:
    return grader_set_from_config({"graders": list(entries), "plugins": [PLUGIN]})


def kinds(result, gid: str) -> list[str]:
    return [per[gid].kind.value for per in result.outcomes]


UNRULY = [
    {"name": "unruly", "timeout": TIMEOUT, "retries": 0},  # each actor death costs a restart
    {"name": "unruly_async", "timeout": TIMEOUT},
    {"name": "short_batch"},
]

# completion → (kind from unruly, kind from unruly_async): why each is right
FAULTS = [
    ("ok", "score", "score"),  # both score len/10
    ("boom", "grader_error", "grader_error"),  # both raise
    ("nan", "invalid_output", "score"),  # only the sync one returns NaN
    ("hang", "timeout", "timeout"),  # sleeps / awaits past the timeout
    ("spin", "timeout", "score"),  # the sync one busy-loops; its actor is killed
    ("block", "score", "timeout"),  # the async one blocks its event loop; only it times out
    ("die", "infrastructure", "score"),  # os._exit kills its actor: with retries=0, dropped
    ("fine", "score", "score"),
]


@pytest.fixture(scope="module")
def ray_executor(ray_cluster):
    with make_executor(grader_set(*UNRULY), "ray", ScoringOptions(num_workers=2, error_budget=1.0)) as ex:
        yield ex


def test_every_fault_is_contained_and_counted(ray_executor):
    result = ray_executor.score([Sample(c) for c, _, _ in FAULTS])
    assert kinds(result, "unruly") == [k for _, k, _ in FAULTS]
    assert kinds(result, "unruly_async") == [k for _, _, k in FAULTS]
    # the actor died running other shards too, yet with retries=0 only "die" was dropped:
    # the bystanders were sent again free of charge, and those re-sends are counted
    m = result.metrics
    assert m["graders/unruly/retries"] == sum(per["unruly"].attempts - 1 for per in result.outcomes) > 0
    assert (m["graders/unruly/count/timeout"], m["graders/unruly_async/count/timeout"]) == (2.0, 2.0)
    assert m["graders/unruly/count/infrastructure"] == 1.0
    # the pool is whole again: the next batch scores normally on every grader
    after = ray_executor.score([Sample("abc"), Sample("abcd")])
    assert after.scores("unruly") == after.scores("unruly_async") == after.scores("short_batch") == [0.3, 0.4]


def test_a_hung_sample_costs_its_timeout_not_the_batch(ray_executor):
    samples = [Sample("hang")] + [Sample("y" * i) for i in range(1, 9)]
    t0 = time.monotonic()
    result = ray_executor.score(samples)
    elapsed = time.monotonic() - t0
    assert kinds(result, "unruly") == ["timeout"] + ["score"] * 8
    # behaviour, not speed: without a kill this never returns; the margin covers an actor restart
    assert elapsed < TIMEOUT + 10


def test_local_and_ray_give_identical_outcomes(ray_executor):
    # start from an empty cache like the fresh local executor: an earlier hit would
    # hide that the batched grader's call fails on this batch
    ray_executor.cache.clear()
    samples = [Sample(c) for c in ("ok", "boom", "nan", "hang", "short", "")]
    ray_result = ray_executor.score(samples)
    with make_executor(grader_set(*UNRULY), "local", ScoringOptions(num_workers=2, error_budget=1.0)) as local:
        local_result = local.score(samples)
    for gid in ("unruly", "unruly_async", "short_batch"):
        assert kinds(ray_result, gid) == kinds(local_result, gid), gid
        assert ray_result.scores(gid) == local_result.scores(gid), gid
    assert ray_result.rewards == local_result.rewards
    # a batched grader answering 5 results for 6 samples invalidates the call
    assert set(kinds(ray_result, "short_batch")) == {"invalid_output"}


def test_error_budget_on_ray_names_grader_and_sample(ray_cluster):
    gs = grader_set({"name": "always_raises"})
    with make_executor(gs, "ray", ScoringOptions(num_workers=1)) as ex, pytest.raises(GraderError) as info:
        ex.score([Sample("a", {"answer": "42"})])
    err = info.value
    assert (err.grader, err.plugin, err.kind) == ("always_raises", PLUGIN, "grader_error")
    assert '"answer": "42"' in str(err) and "KeyError" in err.traceback
    assert ray_cluster.is_initialized()  # closing the executor leaves a Ray it did not start


def test_cheap_graders_go_to_one_actor_slow_ones_to_all(ray_cluster):
    gs = grader_set({"name": "worker_pid", "id": "cheap"}, {"name": "worker_pid", "id": "slow", "work_ms": 20})
    samples = [Sample(f"s{i}") for i in range(16)]
    with make_executor(gs, "ray", ScoringOptions(num_workers=2, cache=False, actor_resources={"num_cpus": 0})) as ex:
        ex.score(samples)  # measures both
        # measured: the cheap grader's 16 samples go as one call, so to one actor…
        assert ex.shards_for(gs["cheap"], 16) == 1
        result = ex.score(samples)
        assert len({per["cheap"].metrics["pid"] for per in result.outcomes}) == 1
        # …and the slow one's 320 ms in one shard per actor at least (which actor takes which
        # shard depends on which is free first, so the plan is checked, not the pids)
        assert ex.shards_for(gs["slow"], 16) >= 2
        assert {per["slow"].kind for per in result.outcomes} == {OutcomeKind.SCORE}


def test_a_pickled_executor_uses_the_same_actors(ray_executor):
    copy = pickle.loads(pickle.dumps(ray_executor))
    assert [a._actor_id for a in copy.actors] == [a._actor_id for a in ray_executor.actors]
    assert copy.score([Sample("abcde")]).scores("unruly") == [0.5]
    copy.close()  # a copy does not own the pool
    assert ray_executor.score([Sample("ab")]).scores("unruly") == [0.2]


# Reads an "arm" file at import: in the test process it is absent (the set loads); once the
# test writes it, the first grader actor to load the plugin takes it and fails as asked.
ARMED_PLUGIN = """
import os
import rft

ARM = {arm!r}


def _take_arm() -> bool:
    try:
        os.rename(ARM, ARM + ".taken")  # atomic: one actor takes it
    except FileNotFoundError:
        return False
    return True


if _take_arm():
    {fail}


@rft.grader
def steady(completion: str) -> float:
    return 1.0


@rft.hookimpl
def rft_register_graders(register):
    register(steady)
"""


def armed_grader_set(tmp_path: Path, fail: str) -> tuple[GraderSet, Path]:
    arm = tmp_path / "arm"
    plugin = tmp_path / "armed_plugin.py"
    plugin.write_text(ARMED_PLUGIN.format(arm=str(arm), fail=fail))
    gs = grader_set_from_config({"graders": [{"name": "steady"}], "plugins": [str(plugin)]})
    arm.touch()
    return gs, arm


def test_an_actor_lost_while_starting_is_replaced(ray_cluster, tmp_path):
    # the process dies before the grader set is loaded (as when its node is lost): not the
    # plugin's fault, so the pool replaces that actor and starts whole
    gs, arm = armed_grader_set(tmp_path, "os._exit(1)")
    with make_executor(gs, "ray", ScoringOptions(num_workers=2)) as ex:
        assert Path(f"{arm}.taken").exists()  # an actor did die while starting
        assert len(ex.actors) == 2
        assert ex.score([Sample("a"), Sample("b"), Sample("c")]).scores("steady") == [1.0, 1.0, 1.0]


def test_a_grader_set_that_raises_in_an_actor_is_a_plugin_error(ray_cluster, tmp_path):
    from rft.core.errors import PluginError

    gs, arm = armed_grader_set(tmp_path, 'raise RuntimeError("this node lacks libfoo")')
    with pytest.raises(PluginError, match="(?s)could not load the grader set.*this node lacks libfoo") as info:
        make_executor(gs, "ray", ScoringOptions(num_workers=2))
    assert "\x1b[" not in str(info.value)  # readable in a log file
    assert ray_cluster.is_initialized()


class _FakeRay:
    """Records ray.init calls (connect() imports ray inside the function)."""

    def __init__(self, initialized: bool):
        self.initialized = initialized
        self.calls: list[dict] = []

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs) -> None:
        self.calls.append(kwargs)


@pytest.mark.parametrize(
    ("initialized", "address", "env", "expected_calls", "owns"),
    [
        (False, "ray://head:10001", "10.0.0.1:6379", [{"address": "ray://head:10001"}], True),  # explicit wins
        (False, None, "10.0.0.1:6379", [{}], True),  # RAY_ADDRESS next: ray.init reads it itself
        (False, None, None, [{"address": "local", "include_dashboard": False}], True),  # a fresh local Ray
        (True, "ray://head:10001", None, [], False),  # a Ray already running here is used, never shut down
    ],
)
def test_connection_order(monkeypatch, initialized, address, env, expected_calls, owns):
    import sys

    from rft.scoring.ray import connect

    fake = _FakeRay(initialized)
    monkeypatch.setitem(sys.modules, "ray", fake)
    if env:
        monkeypatch.setenv("RAY_ADDRESS", env)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert connect(address) is owns
    assert fake.calls == expected_calls
