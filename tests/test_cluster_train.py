"""`rft train` on a Ray cluster: 2 learners under Ray Train sharing one grader pool.

Real Ray on loopback: a multi-node cluster on this machine with ``ray.cluster_utils.Cluster``
(a head with the learners' CPUs, grader nodes with a ``grader_node`` resource). Each run is
the smallest GRPO that says something: a tiny random model, 2 steps, 8-token completions.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml
from test_agentic_train import PLUGIN as AGENT_PLUGIN
from test_agentic_train import ROWS as AGENT_ROWS
from test_guard import GAMEABLE_GRADERS

from rft.config.run import load_config, parse_config
from rft.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# 8 rows whose prompts render to the same number of tokens, so the expected token count is exact
ROWS = [{"messages": [{"role": "user", "content": f"{i}+{i}=?"}], "answer": str(2 * i)} for i in range(1, 9)]

# Crashes its actor process on the first call (the marker file makes it happen once per test).
CRASH_PLUGIN = '''
import os
import rft

@rft.grader
def crash_once(completion: str, marker: str = "") -> float:
    """1.0; the first call ever kills the worker process (a crashed grader actor)."""
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return 1.0


@rft.hookimpl
def rft_register_graders(register):
    register(crash_once)
'''


# Holds the step-1 calls on the grader node until the test has removed that node, so the
# node is lost with calls in flight (not before or after the run needs it).
HOLD_PLUGIN = '''
import os
import time
import rft

@rft.grader
def held_at_step_1(completion: str, step: int, held: str = "", released: str = "") -> float:
    """1.0; at step 1, first says so (``held``) and waits for ``released``."""
    if step >= 1 and not os.path.exists(released):
        open(held, "a").close()
        while not os.path.exists(released):
            time.sleep(0.05)
    return 1.0


@rft.hookimpl
def rft_register_graders(register):
    register(held_at_step_1)
'''


def write_config(
    tmp: Path, *, graders: list[dict], scaling: dict, plugins: list[str] = (), rows: list[dict] = ROWS
) -> Path:
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "seed": 0,
        "output_dir": str(tmp / "run"),
        "model": f"tiny:{tmp.parent / 'tiny-model'}",
        "data": {"train": "train.jsonl", "eval_size": 0},
        "graders": {"graders": graders, **({"plugins": list(plugins)} if plugins else {})},
        "lora": {"r": 4, "alpha": 8},
        "stages": {
            "rft": {
                "num_generations": 2,
                "max_completion_length": 8,
                "trl": {
                    "max_steps": 2,
                    "per_device_train_batch_size": 4,
                    "save_steps": 2,
                    "generation_kwargs": {"min_new_tokens": 8},  # every completion exactly 8 tokens
                },
            }
        },
        "eval": {"enabled": False},
        "scaling": scaling,
    }
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# --------------------------------------------------------------------------- config (no Ray)


def test_scaling_section_is_validated_and_typed(tmp_path):
    path = write_config(
        tmp_path,
        graders=[{"name": "exact_match"}],
        scaling={"num_learners": 2, "graders": {"num_actors": 3, "resources": {"grader_node": 1}}},
    )
    from rft.cluster.resources import scaling_requests

    cfg = load_config(path)
    assert cfg.scaling is not None
    assert (cfg.scaling.num_learners, cfg.scaling.graders.num_actors) == (2, 3)
    # the pre-check asks for 2 learners of 1 CPU and 3 actors of 1 CPU + 1 grader_node
    assert [(r.name, r.count, r.resources) for r in scaling_requests(cfg.scaling)] == [
        ("learner", 2, {"CPU": 1.0}),
        ("grader actor", 3, {"CPU": 1.0, "grader_node": 1.0}),
    ]
    cfg.scaling.apply_to_scoring(cfg.scoring)
    assert (cfg.scoring.executor, cfg.scoring.num_workers) == ("ray", 3)
    assert cfg.scoring.actor_resources == {"num_cpus": 1.0, "resources": {"grader_node": 1}}
    assert cfg.to_dict()["scaling"]["num_learners"] == 2  # written to config.resolved.yaml


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"num_lerners": 2}, "did you mean 'num_learners'"),  # typo → close match
        ({"num_learners": 0}, "scaling.num_learners"),  # at least one learner
        ({"graders": {"num_actors": 2, "placement": "x"}}, "unknown key 'placement'"),
    ],
)
def test_bad_scaling_names_the_key(tmp_path, scaling, message):
    path = write_config(tmp_path, graders=[{"name": "exact_match"}], scaling=scaling)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_vllm_server_mode_reaches_grpo_config(tmp_path):
    """TRL's vLLM server mode is configured with GRPOConfig keys under stages.rft.trl."""
    raw = yaml.safe_load(write_config(tmp_path, graders=[{"name": "exact_match"}], scaling={}).read_text())
    vllm = {
        "use_vllm": True,
        "vllm_mode": "server",
        "vllm_server_base_url": "http://vllm-host:8000",
        "vllm_server_timeout": 30,
    }
    raw["stages"]["rft"]["trl"].update(vllm)
    cfg = parse_config(raw, source="run.yaml", base_dir=tmp_path)
    args = cfg.rft_trl_args()
    assert {k: args[k] for k in vllm} == vllm
    from trl import GRPOConfig

    grpo = GRPOConfig(**args)
    assert (grpo.use_vllm, grpo.vllm_mode, grpo.vllm_server_base_url) == (True, "server", "http://vllm-host:8000")
    # a misspelled vLLM key is caught at load time, not on the GPU cluster
    raw["stages"]["rft"]["trl"]["vllm_server_url"] = "http://x"
    with pytest.raises(ConfigError, match="vllm_server_url"):
        parse_config(raw, source="run.yaml", base_dir=tmp_path)


# --------------------------------------------------------------------------- on a cluster


@pytest.mark.parametrize("feature", ["dynamic_sampling", "curriculum"])
def test_group_features_need_one_learner_and_say_so_before_contacting_the_cluster(tmp_path, feature):
    from rft.cluster.learners import run_distributed
    from rft.config import ScalingSettings

    path = write_config(tmp_path, graders=[{"name": "exact_match"}], scaling=SCALING)
    raw = yaml.safe_load(path.read_text())
    raw["stages"]["rft"][feature] = {"enabled": True}
    path.write_text(yaml.safe_dump(raw))
    # loading the config says it (so do `rft train --dry-run` and `rft submit`), with the line
    with pytest.raises(ConfigError, match="scaling.num_learners is 2: set it to 1") as err:
        load_config(path)
    assert err.value.key == f"stages.rft.{feature}" and "run.yaml:" in str(err.value)
    # a config built in code is checked by run_distributed before it connects
    del raw["scaling"]
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    cfg.scaling = ScalingSettings(num_learners=2)
    with pytest.raises(ConfigError, match="scaling.num_learners is 2"):
        run_distributed(cfg, address="127.0.0.1:1")  # never reached


@pytest.fixture(scope="module")
def cluster():
    """Head: 2 CPUs (the learners); node B: the grader node; node C joins later as a spare."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    import socket

    with socket.socket() as sock:  # the dashboard (state API: where actors run) on a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 2,
            "include_dashboard": True,
            "dashboard_port": port,
            # a removed node is declared dead in ~4 s instead of Ray's default ~15 s
            "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 4},
        },
    )
    grader_node = c.add_node(num_cpus=0, resources={"grader_node": 4})
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c, grader_node
    ray.shutdown()
    c.shutdown()


SCALING = {
    "num_learners": 2,
    "resources_per_learner": {"CPU": 1},
    "graders": {"num_actors": 2, "num_cpus": 0, "resources": {"grader_node": 1}},
}


@pytest.mark.slow
@pytest.mark.ray
def test_two_learners_share_the_grader_pool(cluster, tmp_path):
    from transformers import AutoTokenizer

    from rft.cluster.learners import run_distributed

    path = write_config(tmp_path, graders=[{"name": "exact_match"}], scaling=SCALING)
    cfg = load_config(path)
    run_distributed(cfg, progress=False)
    run = Path(cfg.output_dir)
    assert (run / "adapter" / "adapter_config.json").exists()
    rank0, rank1 = read_jsonl(run / "rollouts.jsonl"), read_jsonl(run / "rollouts.rank1.jsonl")
    # every learner's completions are scored: 2 steps × 4 completions on each rank
    assert (len(rank0), len(rank1)) == (8, 8)
    assert all("exact_match" in r["graders"] for r in rank0 + rank1)
    # TRL's num_tokens is gathered over learners: step 1 counts the prompt and completion
    # tokens of BOTH ranks' first batch (twice one learner's count)
    tok = AutoTokenizer.from_pretrained(str(tmp_path.parent / "tiny-model"))

    def tokens(r: dict) -> int:  # the chat prompt as TRL renders it, plus the 8 completion tokens
        text = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        return len(tok(text, add_special_tokens=False)["input_ids"]) + 8

    per_rank = [sum(tokens(r) for r in rows if r["step"] == 0) for rows in (rank0, rank1)]
    step1 = next(m for m in read_jsonl(run / "metrics.jsonl") if m["step"] == 1 and "num_tokens" in m)
    assert per_rank[0] == per_rank[1]  # same-length prompts: each rank's share is equal…
    assert step1["num_tokens"] == per_rank[0] + per_rank[1]  # …and the metric holds both


@pytest.mark.slow
@pytest.mark.ray
def test_killed_grader_actor_is_replaced_and_retried(cluster, tmp_path):
    from rft.cluster.learners import run_distributed

    (tmp_path / "crash_plugin.py").write_text(CRASH_PLUGIN)
    graders = [{"name": "crash_once", "marker": str(tmp_path / "crashed"), "retries": 2}]
    # 4 actors for a learner's 4 completions: one sample per call, so the crash names its sample,
    # which is charged one crash and retried (re-sends of innocent bystanders are free)
    scaling = {**SCALING, "graders": {**SCALING["graders"], "num_actors": 4}}
    path = write_config(tmp_path, graders=graders, scaling=scaling, plugins=["crash_plugin.py"])
    cfg = load_config(path)
    run_distributed(cfg, progress=False)
    run = Path(cfg.output_dir)
    assert (tmp_path / "crashed").exists()  # an actor did die mid-run
    done = json.loads((run / "rft" / "DONE").read_text())
    assert done["global_step"] == 2  # the planned steps, all of them
    rows = read_jsonl(run / "rollouts.jsonl") + read_jsonl(run / "rollouts.rank1.jsonl")
    assert [r for r in rows if r["graders"]["crash_once"].get("score") != 1.0] == []  # retried, not dropped
    retries = sum(m.get("graders/crash_once/retries") or 0 for m in read_jsonl(run / "metrics.jsonl"))
    assert retries > 0, read_jsonl(run / "metrics.jsonl")  # counted (TRL averages log_metric over learners)


@pytest.mark.slow
@pytest.mark.ray
def test_grader_node_lost_actors_come_back_on_another_node(cluster, tmp_path):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from ray.util.state import list_actors

    from rft.cluster.learners import run_distributed

    c, grader_node = cluster
    spare = c.add_node(num_cpus=0, resources={"grader_node": 4})
    c.wait_for_nodes()

    # a placeholder holds all of the spare node's grader_node until the pool runs on grader_node
    # (nodes join only from the main thread), so the spare node gets only the replacements
    class Seat:  # defined here: the workers cannot import this test module
        def ready(self) -> bool:
            return True

    seat = (
        ray.remote(num_cpus=0, resources={"grader_node": 4})(Seat)
        .options(scheduling_strategy=NodeAffinitySchedulingStrategy(spare.node_id, soft=False))
        .remote()
    )
    ray.get(seat.ready.remote(), timeout=120)
    (tmp_path / "hold_plugin.py").write_text(HOLD_PLUGIN)
    held, released = tmp_path / "held", tmp_path / "released"
    graders = [{"name": "held_at_step_1", "held": str(held), "released": str(released), "retries": 2, "timeout": 120}]
    path = write_config(tmp_path, graders=graders, scaling=SCALING, plugins=["hold_plugin.py"])
    cfg = load_config(path)
    run = Path(cfg.output_dir)
    gone = grader_node.node_id

    def kill_grader_node_while_it_holds_calls() -> None:
        deadline = time.monotonic() + 300
        while not held.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        ray.kill(seat)
        c.remove_node(grader_node, allow_graceful=False)
        # release the held calls only once the head has declared the node dead: until then
        # its orphaned worker processes may still answer
        while any(n["NodeID"] == gone and n["Alive"] for n in ray.nodes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        released.touch()

    t = threading.Thread(target=kill_grader_node_while_it_holds_calls, daemon=True)
    t.start()
    run_distributed(cfg, progress=False)
    t.join(timeout=60)
    assert released.exists()  # the node was removed with step-1 calls held on it
    assert json.loads((run / "rft" / "DONE").read_text())["global_step"] == 2
    rows = read_jsonl(run / "rollouts.jsonl") + read_jsonl(run / "rollouts.rank1.jsonl")
    assert len(rows) == 16 and all(r["graders"]["held_at_step_1"].get("score") == 1.0 for r in rows)
    retries = sum(m.get("graders/held_at_step_1/retries") or 0 for m in read_jsonl(run / "metrics.jsonl"))
    assert retries > 0  # the held calls were retried, not dropped
    # the replacement actors ran on the spare node (the only other node with grader_node)
    spare_id = spare.node_id
    grader_actors = list_actors(filters=[("class_name", "=", "GraderActor")], limit=1000)
    assert any(a.node_id == spare_id for a in grader_actors)
    assert any(a.node_id == gone and a.state == "DEAD" for a in grader_actors)  # the pool's first home
    assert not any(n["NodeID"] == gone and n["Alive"] for n in ray.nodes())  # the tests after this see it gone


@pytest.mark.slow
@pytest.mark.ray
def test_resume_after_the_learners_fail(cluster, tmp_path):
    from rft.cluster import ClusterError
    from rft.cluster.learners import run_distributed
    from rft.train.callbacks import StopAfterSave

    path = write_config(tmp_path, graders=[{"name": "exact_match"}], scaling=SCALING)
    raw = yaml.safe_load(path.read_text())
    raw["stages"]["rft"]["trl"]["save_steps"] = 1
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    run = Path(cfg.output_dir)
    with pytest.raises((ClusterError, KeyboardInterrupt)):  # every learner is killed after checkpoint 1
        run_distributed(cfg, extra_callbacks={"rft": [StopAfterSave(1)]})
    assert (run / "rft" / "checkpoints" / "checkpoint-1" / "rft-complete.json").exists()
    assert not (run / "rft" / "DONE").exists()

    run_distributed(load_config(path), resume=True)
    assert json.loads((run / "rft" / "DONE").read_text())["global_step"] == 2
    steps = [m["step"] for m in read_jsonl(run / "metrics.jsonl") if "loss" in m and "train_runtime" not in m]
    assert steps == [1, 2]  # step 1 from the first attempt, step 2 after the resume, none twice
    assert (run / "adapter" / "adapter_config.json").exists()


# The agent test's environment plus the scripted policy: a tiny random model cannot call tools, so
# the plugin file (loaded in every learner process, where the environment is looked up by name)
# installs tests/scripted_policy.py's generate there — and not in this test process, which loads
# the plugin too (a patch here would leak into every later test).
SCRIPTED_AGENT_PLUGIN = (
    AGENT_PLUGIN
    + f"""

import os
import sys
if os.getpid() != {os.getpid()}:  # learners and grader actors only: never the test process itself
    sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
    import scripted_policy
    scripted_policy.install()
"""
)


@pytest.mark.slow
@pytest.mark.ray
def test_learners_run_agent_episodes_and_share_the_grader_pool(cluster, tmp_path):
    from rft.cluster.learners import run_distributed

    (tmp_path / "env.py").write_text(SCRIPTED_AGENT_PLUGIN)
    graders = [{"name": "task_success"}, {"name": "looked_up_the_item"}]
    path = write_config(tmp_path, graders=graders, scaling=SCALING, plugins=["env.py"], rows=AGENT_ROWS)
    cfg = yaml.safe_load(path.read_text())
    cfg["environment"] = "inventory"
    cfg["stages"]["rft"]["max_completion_length"] = 256
    cfg["stages"]["rft"]["trl"] = {"max_steps": 1, "per_device_train_batch_size": 4, "save_steps": 1}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_distributed(load_config(path), progress=False)
    run = tmp_path / "run"
    recs = read_jsonl(run / "rollouts.jsonl") + read_jsonl(run / "rollouts.rank1.jsonl")
    assert len(recs) == 8  # 1 step × 4 completions on each of 2 learners
    # every learner ran whole episodes: the tool was called, its result came back, graders saw it
    for r in recs:
        assert [m["role"] for m in r["completion_messages"]][:2] == ["assistant", "tool"]
        assert r["episode"]["environment"] == "inventory" and r["episode"]["tool_calls"] == 1
        assert r["graders"]["task_success"]["kind"] == "score"
    solved = [r for r in recs if r["state"]["item"] in ("apple", "pear")]
    assert solved and all(r["graders"]["task_success"]["score"] == 1.0 for r in solved)


@pytest.mark.slow
@pytest.mark.ray
def test_the_guard_stops_every_learner_at_the_same_step_and_rolls_back(cluster, tmp_path):
    """In-run held-out eval and the guard on rank 0; the stop reaches rank 1 at the same step."""
    from rft.cluster.learners import run_distributed

    (tmp_path / "gameable.py").write_text(GAMEABLE_GRADERS)
    graders = [{"name": "rising", "weight": 1.0}, {"name": "falling", "audit": True}]
    path = write_config(tmp_path, graders=graders, scaling=SCALING, plugins=["gameable.py"])
    raw = yaml.safe_load(path.read_text())
    raw["data"]["eval_size"] = 2
    raw["stages"]["rft"]["trl"].update(max_steps=8, save_steps=2)
    raw["eval"] = {"every_steps": 2, "best_by": "falling", "pass_threshold": 0.5, "max_new_tokens": 4}
    raw["guard"] = {"action": "rollback", "checks": ["audit"], "train_window": 2}
    raw["scoring"] = {"cache": False}
    path.write_text(yaml.safe_dump(raw))
    run_distributed(load_config(path), progress=False)
    run = tmp_path / "run"
    metrics = read_jsonl(run / "metrics.jsonl")
    # the trained reward rises with the step while the audit grader falls: the alarm at step 4 (as on one process)
    (alarm,) = [r for r in metrics if r.get("guard/alarm")]
    assert (alarm["step"], alarm["guard/alarm"], alarm["guard/action"]) == (4, "audit", "rollback")
    assert max(r["step"] for r in metrics if "loss" in r) == 4
    # both learners stopped there: each generated for steps 0..3 only (not waiting in step 5's all-reduce)
    for name in ("rollouts.jsonl", "rollouts.rank1.jsonl"):
        assert max(r["step"] for r in read_jsonl(run / name)) == 3, name
    done = json.loads((run / "rft" / "DONE").read_text())
    assert done["stopped_by"]["kind"] == "audit" and done["final_adapter"] == "adapter-best"
    assert done["learners"] == 2 and done["global_step"] == 4
    # held-out evaluations by rank 0 at the start (the base eval), steps 2 and 4; ties keep the first
    assert [r["step"] for r in metrics if "eval/quality" in r] == [0, 2, 4]
    best = json.loads((run / "adapter-best" / "rft-best.json").read_text())
    assert best["step"] == done["best_step"] == 0
    same = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert same == (run / "adapter-best" / "adapter_model.safetensors").read_bytes()
    assert same != (run / "rft" / "adapter" / "adapter_model.safetensors").read_bytes()


@pytest.mark.slow
@pytest.mark.ray
def test_one_learner_runs_dynamic_sampling_and_the_curriculum(cluster, tmp_path):
    from rft.cluster.learners import run_distributed

    path = write_config(tmp_path, graders=[{"name": "exact_match"}], scaling={**SCALING, "num_learners": 1})
    raw = yaml.safe_load(path.read_text())
    # exact_match on a random model: every group scores 0, so every round is spent looking for signal
    raw["stages"]["rft"]["dynamic_sampling"] = {"enabled": True, "max_rounds": 2}
    raw["stages"]["rft"]["curriculum"] = {"enabled": True}
    path.write_text(yaml.safe_dump(raw))
    run_distributed(load_config(path), progress=False)
    run = tmp_path / "run"
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    for r in steps:
        assert r["dynamic_sampling/informative_share"] == 0.0 and r["curriculum/untried"] is not None
    # 2 rounds of 2 groups per step, 2 steps: 8 groups of 2 completions scored
    assert len(read_jsonl(run / "rollouts.jsonl")) == 16
    assert (run / "rft" / "checkpoints" / "checkpoint-2" / "rft-sampling.json").is_file()
