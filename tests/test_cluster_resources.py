"""The resource pre-check: a cluster that cannot host the run fails fast, naming what is missing."""

from __future__ import annotations

import pytest

from rft.cluster.resources import ResourceRequest, ResourceUnavailableError, check_resources
from rft.scoring.ray import resolve_address

pytestmark = [pytest.mark.ray]


@pytest.fixture
def ray_local(ray_cluster):
    """The session's local Ray (tests/conftest.py): 2 CPUs, no custom resources."""
    return ray_cluster


@pytest.mark.parametrize(
    ("address", "env", "expected"),
    [
        ("ray://head:10001", "10.0.0.1:6379", ("ray://head:10001", "explicit")),  # an explicit address wins
        (None, "10.0.0.1:6379", ("10.0.0.1:6379", "RAY_ADDRESS")),  # then the environment (set inside Ray jobs)
        (None, None, (None, "local")),  # then an embedded local Ray
    ],
)
def test_address_order(monkeypatch, address, env, expected):
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert resolve_address(address) == expected


def test_missing_custom_resource_fails_at_once_naming_it(ray_local):
    # graders placed on nodes with a "grader_node" resource: this cluster has none at all
    requests = [
        ResourceRequest("learner", 1, {"CPU": 1}),
        ResourceRequest("grader actor", 2, {"CPU": 0.5, "grader_node": 1}),
    ]
    with pytest.raises(ResourceUnavailableError) as info:
        check_resources(requests, timeout_s=50)
    assert info.value.missing == {"grader_node": 2.0}  # 2 actors × 1 each, the cluster has 0
    assert "grader_node" in str(info.value) and "grader actor" in str(info.value)


def test_more_cpus_than_the_cluster_has_names_cpu(ray_local):
    with pytest.raises(ResourceUnavailableError) as info:
        check_resources([ResourceRequest("learner", 3, {"CPU": 1})])
    assert info.value.missing == {"CPU": 1.0}  # 3 asked, 2 in the cluster
    assert "CPU" in str(info.value)


def test_busy_cluster_times_out_with_what_is_free(ray_local):
    ray = ray_local

    @ray.remote(num_cpus=2)
    class Hog:
        def ping(self) -> bool:
            return True

    hog = Hog.remote()
    ray.get(hog.ping.remote())  # both CPUs are held now; the total still fits the request
    try:
        with pytest.raises(ResourceUnavailableError) as info:
            check_resources([ResourceRequest("learner", 1, {"CPU": 1})], timeout_s=2)
        assert "could not place" in str(info.value) and "free now" in str(info.value)
        assert info.value.missing == {"CPU": 1.0}  # 1 asked, 0 free
    finally:
        ray.kill(hog)


def test_fitting_request_passes_and_leaves_nothing_reserved(ray_local):
    ray = ray_local
    check_resources([ResourceRequest("learner", 2, {"CPU": 1})], timeout_s=30)
    # the pre-check's placement group is removed again, so it reserves nothing for the run
    check_resources([ResourceRequest("learner", 2, {"CPU": 1})], timeout_s=30)
    states = [pg["state"] for pg in ray.util.placement_group_table().values() if pg["name"].startswith("rft-precheck-")]
    assert states and set(states) == {"REMOVED"}


def test_autoscaling_cluster_waits_then_fails_naming_the_resource(ray_local):
    # with autoscaling on, a shortfall is not final: the placement group gets the timeout to appear
    with pytest.raises(ResourceUnavailableError) as info:
        check_resources([ResourceRequest("grader actor", 1, {"grader_node": 1})], timeout_s=1, autoscaling=True)
    assert "grader_node" in str(info.value)


@pytest.mark.timeout(60)  # the promise: an unplaceable run fails within a minute, never hangs
def test_train_on_a_cluster_without_the_grader_resource_fails_before_training(ray_local, tmp_path):
    from rft.cluster.learners import run_distributed
    from rft.config.run import load_config

    (tmp_path / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n' * 4)
    (tmp_path / "run.yaml").write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel: tiny:{tmp_path / 'tiny'}\n"
        "data: {train: train.jsonl, eval_size: 0}\ngraders: [exact_match]\n"
        "stages: {rft: {num_generations: 2, trl: {max_steps: 1, per_device_train_batch_size: 2}}}\n"
        "eval: {enabled: false}\n"
        "scaling: {num_learners: 1, graders: {num_actors: 2, resources: {grader_node: 1}}}\n"
    )
    cfg = load_config(tmp_path / "run.yaml")
    with pytest.raises(ResourceUnavailableError, match="grader_node"):
        run_distributed(cfg)
    assert not (tmp_path / "run").exists()  # nothing was started or written
