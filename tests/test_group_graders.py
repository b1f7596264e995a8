"""Group graders (``@rft.grader(group=True)``), the relative judge and multi-objective rewards.

A group grader gets all completions of one prompt in one call: on both executors (a group
is never split across shards, workers or actors), through the cache (a group's key covers
the whole group), in ``rft grade`` (rows grouped by ``--group-by``) and in training
(TRL's ``num_generations`` completions per prompt). Bad output is ``invalid_output`` for
the group, never 0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from helpers import read_jsonl, tiny_config, write_config
from typer.testing import CliRunner

import rft
from rft.cli.main import app
from rft.core import GraderSet, OutcomeKind, Sample
from rft.core.errors import ConfigError
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor

GROUP_PY = '''
import json
import os
from collections import Counter

import rft


@rft.grader(group=True)
def majority(completion: list[str]) -> list[float]:
    """1.0 for the completions that give the group's most common answer."""
    top = Counter(c.strip() for c in completion).most_common(1)[0][0]
    return [float(c.strip() == top) for c in completion]


@rft.grader(group=True)
def group_probe(completion: list[str], prompt: list, log: str = "") -> list[float]:
    """Records each call's group; scores each completion by its place in the group."""
    if "die" in completion:
        os._exit(3)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "completions": completion,
                                "prompts": sorted({json.dumps(p, sort_keys=True) for p in prompt})}) + "\\n")
    return [i / len(completion) for i in range(len(completion))]


@rft.grader(group=True)
def wrong_length(completion: list[str]) -> list[float]:
    return [1.0] * (len(completion) + 1)


@rft.grader(group=True)
def not_a_list(completion: list[str]) -> float:
    return 1.0
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "group_graders.py"
    path.write_text(GROUP_PY)
    return path


def group_set(plugin: Path, *entries: dict[str, Any]) -> GraderSet:
    return grader_set_from_config({"graders": list(entries), "plugins": [str(plugin)]})


def interleaved(prompts: int = 3, per: int = 3) -> list[Sample]:
    """``per`` completions of each of ``prompts`` prompts, interleaved (p0 p1 p2 p0 p1 …)."""
    return [Sample(f"answer {k} to {p}", prompt=f"question {p}?") for k in range(per) for p in range(prompts)]


def calls(log: Path) -> list[dict[str, Any]]:
    return read_jsonl(log) if log.exists() else []


def check_whole_groups(log: Path, samples: list[Sample], scores: list[float | None]) -> None:
    by_prompt: dict[str, list[str]] = {}
    for s in samples:
        by_prompt.setdefault(str(s.prompt), []).append(s.completion)
    seen = calls(log)
    # one call per group, each with exactly one prompt and all of its completions, in batch order
    assert len(seen) == len(by_prompt)
    assert all(len(c["prompts"]) == 1 for c in seen)
    assert sorted(tuple(c["completions"]) for c in seen) == sorted(tuple(v) for v in by_prompt.values())
    # each completion scored by its place in its group
    for s, score in zip(samples, scores, strict=True):
        assert score == pytest.approx(by_prompt[str(s.prompt)].index(s.completion) / len(by_prompt[str(s.prompt)]))


# ---------------------------------------------------------------------------
# the grader object
# ---------------------------------------------------------------------------


def test_group_flag_makes_one_call_per_group_with_lists():
    @rft.grader(group=True)
    def vote(completion: list[str]) -> list[float]:
        return [float(c == max(set(completion), key=completion.count)) for c in completion]

    assert vote.group and vote.batched and "group" in repr(vote)
    outs = vote.grade([Sample("4"), Sample("4"), Sample("5")])
    assert [o.score for o in outs] == [1.0, 1.0, 0.0]
    # the flag survives binding and pickling (workers and actors rebuild it)
    import cloudpickle

    assert cloudpickle.loads(cloudpickle.dumps(vote)).group and vote.bind().group


@pytest.mark.parametrize("name", ["wrong_length", "not_a_list"])
def test_bad_return_is_invalid_output_for_the_whole_group_never_zero(plugin, name):
    gs = group_set(plugin, {"name": name})
    with make_executor(gs, "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
        result = ex.score(interleaved(2, 2))
    outs = [per[name] for per in result.outcomes]
    assert all(o.kind is OutcomeKind.INVALID_OUTPUT and o.score is None for o in outs)
    assert "group grader" in (outs[0].error or "") and "one" in (outs[0].error or "")


# ---------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "workers"])
def test_local_executor_gives_whole_groups(plugin, tmp_path, inline):
    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log)}, {"name": "majority"})
    samples = interleaved(3, 3)
    with make_executor(gs, "local", ScoringOptions(num_workers=2, inline=inline)) as ex:
        result = ex.score(samples)
    check_whole_groups(log, samples, result.scores("group_probe"))
    # three distinct answers per group: a tie, which the first wins, once per group
    assert sum(s or 0.0 for s in result.scores("majority")) == 3.0


def test_explicit_group_keys_override_prompts(plugin, tmp_path):
    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log)})
    samples = [Sample(c, prompt="same prompt") for c in "abcd"]
    with make_executor(gs, "local", ScoringOptions(inline=True)) as ex:
        result = ex.score(samples, groups=["x", "y", "x", "y"])
    assert sorted(c["completions"] for c in calls(log)) == [["a", "c"], ["b", "d"]]
    assert result.scores("group_probe") == [0.0, 0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="group keys"):
        make_executor(gs, "local", ScoringOptions(inline=True)).score(samples, groups=["x"])


def test_a_crashing_group_is_retried_and_dropped_whole(plugin, tmp_path):
    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log), "retries": 1})
    samples = [Sample(c, prompt=p) for p, c in [("a", "x"), ("b", "die"), ("a", "y"), ("b", "z")]]
    with make_executor(gs, "local", ScoringOptions(num_workers=2, error_budget=1.0)) as ex:
        result = ex.score(samples)
    kinds = [per["group_probe"].kind for per in result.outcomes]
    # the group of "die" kills its worker every time: both of its completions are dropped
    assert kinds == [OutcomeKind.SCORE, OutcomeKind.INFRASTRUCTURE, OutcomeKind.SCORE, OutcomeKind.INFRASTRUCTURE]
    assert result.outcomes[1]["group_probe"].attempts == 2 and "group" in (
        result.outcomes[1]["group_probe"].error or ""
    )
    assert result.scores("group_probe")[0::2] == [0.0, 0.5]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_executor_gives_whole_groups(plugin, tmp_path, ray_cluster):
    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log)}, {"name": "wrong_length"})
    samples = interleaved(3, 3)
    with make_executor(gs, "ray", ScoringOptions(num_workers=2, error_budget=1.0)) as ex:
        result = ex.score(samples)
        again = ex.score(samples)
    check_whole_groups(log, samples, result.scores("group_probe"))
    assert all(per["wrong_length"].kind is OutcomeKind.INVALID_OUTPUT for per in result.outcomes)
    assert all(per["group_probe"].cached for per in again.outcomes) and len(calls(log)) == 3


def test_cache_key_covers_the_whole_group(plugin, tmp_path):
    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log)})
    samples = interleaved(2, 2)
    with make_executor(gs, "local", ScoringOptions(inline=True)) as ex:
        ex.score(samples)
        again = ex.score(samples)
        assert all(per["group_probe"].cached for per in again.outcomes) and len(calls(log)) == 2
        # one completion of prompt 0 changes: that whole group is scored again, the other is a hit
        changed = [Sample("something else", prompt=samples[0].prompt), *samples[1:]]
        third = ex.score(changed)
    assert len(calls(log)) == 3 and calls(log)[-1]["completions"] == ["something else", "answer 1 to 0"]
    assert [per["group_probe"].cached for per in third.outcomes] == [False, True, False, True]


# ---------------------------------------------------------------------------
# rft grade
# ---------------------------------------------------------------------------


def grade(*args: str):
    return CliRunner().invoke(app, ["grade", *args], catch_exceptions=False)


def test_rft_grade_groups_rows_by_a_prompt_id_column(plugin, tmp_path):
    log = tmp_path / "calls.jsonl"
    data = tmp_path / "rows.jsonl"
    # two prompt ids; the prompt text differs within an id (paraphrases), so only --group-by joins them
    rows = [{"prompt_id": i % 2, "prompt": f"q{i % 2} v{i}", "c": f"c{i}"} for i in range(6)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graders = tmp_path / "g.yaml"
    graders.write_text(f"plugins: [{plugin}]\ngraders:\n  - name: group_probe\n    log: {log}\n")
    out = tmp_path / "out.jsonl"
    res = grade(
        "--data", str(data), "--field", "c", "--graders", str(graders), "--group-by", "prompt_id", "--out", str(out)
    )
    assert res.exit_code == 0, res.output
    assert sorted(c["completions"] for c in calls(log)) == [["c0", "c2", "c4"], ["c1", "c3", "c5"]]
    scores = [r["graders"]["group_probe"]["score"] for r in read_jsonl(out)]
    assert [r["row"] for r in read_jsonl(out)] == list(range(6))  # results stay in row order
    assert scores == pytest.approx([0.0, 0.0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # default: identical prompts form a group (here every prompt differs: six groups of one)
    log.unlink()
    res = grade("--data", str(data), "--field", "c", "--graders", str(graders))
    assert res.exit_code == 0, res.output
    assert len(calls(log)) == 6
    # a row without the column: exit 2 naming the file, the row and the fix
    data.write_text(data.read_text() + json.dumps({"prompt": "q", "c": "c"}) + "\n")
    res = grade("--data", str(data), "--field", "c", "--graders", str(graders), "--group-by", "prompt_id")
    text = " ".join(res.output.split())
    assert res.exit_code == 2 and "prompt_id" in text and ":7" in text


def test_rft_grade_keeps_groups_whole_across_chunks(monkeypatch, plugin, tmp_path):
    import rft.cli.grade_cmd as grade_cmd

    monkeypatch.setattr(grade_cmd, "CHUNK", 4)
    log = tmp_path / "calls.jsonl"
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i % 3}", "c": f"c{i}"}) + "\n" for i in range(9)))
    graders = tmp_path / "g.yaml"
    graders.write_text(f"plugins: [{plugin}]\ngraders:\n  - name: group_probe\n    log: {log}\n")
    res = grade("--data", str(data), "--field", "c", "--graders", str(graders))
    assert res.exit_code == 0, res.output
    assert sorted(len(c["completions"]) for c in calls(log)) == [3, 3, 3]
    assert grade_cmd.chunks(["a", "b", "a", "c", "c"], 3) == [[0, 2, 1], [3, 4]]


# ---------------------------------------------------------------------------
# the relative judge
# ---------------------------------------------------------------------------


def judge_reply(messages: list[dict[str, Any]]) -> str:
    """Scores each answer by its number of characters (longer is better), as the judge prompt asks."""
    text = messages[-1]["content"]
    answers = re.findall(r"\[Answer (\d+)\]\n(.*?)(?=\n\n\[Answer|\n\n(?:Compare)|\Z)", text, re.S)
    if "Ranking:" in text:
        order = sorted(answers, key=lambda a: -len(a[1]))
        return "Longer is better.\nRanking: " + " > ".join(k for k, _ in order)
    if "garble" in text:
        return "Answer 1: 5"
    return "\n".join(f"Answer {k}: {min(10, len(a))}" for k, a in answers)


def judge_set(server: FakeOpenAI, **params: Any) -> GraderSet:
    entry = {"name": "relative_judge", "model": "judge", "base_url": server.base_url, "max_retries": 0, **params}
    return grader_set_from_config({"graders": [entry]})


def test_relative_judge_scores_the_group_in_one_request():
    samples = [Sample(c, prompt=[{"role": "user", "content": "Say hi"}]) for c in ["hi", "hello", "hey there you"]]
    with FakeOpenAI(responder=judge_reply) as server:
        gs = judge_set(server)
        with make_executor(gs, "local", ScoringOptions(inline=True)) as ex:
            result = ex.score(samples)
        assert server.requests == 1  # one judgment for the whole group
        prompt = server.payloads[0]["messages"][-1]["content"]
        assert "Say hi" in prompt and "[Answer 3]\nhey there you" in prompt
    assert result.scores("relative_judge") == pytest.approx([0.2, 0.5, 1.0])
    assert result.outcomes[0]["relative_judge"].metrics["judge_group_size"] == 3.0


def test_relative_judge_ranks_and_reports_unparseable_replies_for_the_group():
    samples = [Sample(c, prompt="Say hi") for c in ["hi", "hello there", "hey"]]
    with FakeOpenAI(responder=judge_reply) as server:
        with make_executor(judge_set(server, mode="rank"), "local", ScoringOptions(inline=True)) as ex:
            ranked = ex.score(samples)
        garbled = [Sample(c, prompt="garble") for c in ["a", "b"]]
        with make_executor(judge_set(server), "local", ScoringOptions(inline=True, error_budget=1.0)) as ex:
            bad = ex.score(garbled)
    assert ranked.scores("relative_judge") == pytest.approx([0.0, 1.0, 0.5])
    outs = [per["relative_judge"] for per in bad.outcomes]
    assert all(o.kind is OutcomeKind.JUDGE_UNPARSEABLE and o.score is None for o in outs)
    assert "answer 2" in (outs[0].error or "")


def test_relative_judge_settings_are_checked():
    with pytest.raises(ConfigError, match="mode"):
        grader_set_from_config({"graders": [{"name": "relative_judge", "model": "m", "mode": "ranking"}]})
    with pytest.raises(ConfigError, match="base_url"):
        grader_set_from_config({"graders": [{"name": "relative_judge", "model": "m", "base_ur": "http://h/v1"}]})


@pytest.mark.slow
def test_relative_judge_with_a_tiny_local_model(tmp_path, one_torch_thread):
    from rft.models.resolve import create_tiny_model

    model = str(create_tiny_model(tmp_path / "tiny"))
    samples = [Sample(c, prompt="2+2?") for c in ["4", "five", "4, since 2+2=4"]] + [Sample("x", prompt="1+1?")]
    for mode in ("scores", "rank"):
        gs = grader_set_from_config(
            {"graders": [{"name": "relative_judge", "model": model, "backend": "transformers", "mode": mode}]}
        )
        with make_executor(gs, "local", ScoringOptions(inline=True)) as ex:
            result = ex.score(samples)
        scores = result.scores("relative_judge")
        assert all(o["relative_judge"].kind is OutcomeKind.SCORE for o in result.outcomes)
        assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
        if mode == "rank":
            assert max(scores[:3]) == 1.0 and scores[3] == 1.0  # a group of one is its own best


# ---------------------------------------------------------------------------
# multi-objective rewards: the bridge, advantage shares, TRL pass-through
# ---------------------------------------------------------------------------


def test_advantage_shares_follow_trl_scaling():
    from rft.train.rewards import advantage_shares

    scores = {"a": [1.0, 0.0, 1.0, 0.0], "b": [0.5, 0.5, 1.0, 0.0], "c": [0.3, 0.3, 0.3, 0.3]}
    weights = {"a": 1.0, "b": 1.0, "c": 1.0}
    groups = [[0, 1], [2, 3]]
    shares = advantage_shares(scores, weights, groups, scale_rewards="none")
    # group 1: only a varies (|±0.5| twice); group 2: a and b vary alike; c never varies
    assert shares == pytest.approx({"a": 2 / 3, "b": 1 / 3, "c": 0.0})
    assert sum(advantage_shares(scores, weights, groups, scale_rewards="group").values()) == pytest.approx(1.0)
    # normalize_then_sum: each grader normalised in its group first, so a and b weigh alike where both vary
    # (a varies in both groups at weight 1, b in one group at weight 2: equal shares)
    nts = advantage_shares(scores, {"a": 1.0, "b": 2.0, "c": 1.0}, groups, aggregation="normalize_then_sum")
    assert nts == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0}, abs=1e-3)
    # weight 0 and not-applicable scores contribute nothing; nothing varies: all 0
    assert advantage_shares({"a": [None, 1.0], "b": [1.0, 1.0]}, {"a": 0.0, "b": 1.0}, [[0, 1]]) == {"a": 0.0, "b": 0.0}


def test_bridge_groups_trl_batches_and_logs_advantage_shares(plugin, tmp_path):
    from rft.train.rewards import RewardBridge

    log = tmp_path / "calls.jsonl"
    gs = group_set(plugin, {"name": "group_probe", "log": str(log), "weight": 1.0}, {"name": "majority", "weight": 0.0})
    rows = [{"prompt": "p0"}, {"prompt": "p1"}]
    logged: dict[str, float] = {}
    with make_executor(gs, "local", ScoringOptions(inline=True)) as ex:
        bridge = RewardBridge(gs, ex, rows=rows)
        bridge.use_trl_args({"num_generations": 2, "scale_rewards": True})
        assert bridge.scale_rewards == "group"
        # row 0 appears twice in a row: two groups of num_generations, not one of four
        funcs = bridge.reward_funcs()
        kwargs = {"_rft_row": [0, 0, 0, 0, 1, 1], "log_metric": lambda k, v: logged.__setitem__(k, v)}
        prompts = ["p0"] * 4 + ["p1"] * 2
        out = funcs[0](prompts=prompts, completions=list("abcdef"), **kwargs)
    assert sorted(c["completions"] for c in calls(log)) == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert out == [0.0, 0.5, 0.0, 0.5, 0.0, 0.5]
    assert logged["graders/group_probe/advantage_share"] == pytest.approx(1.0)
    assert logged["graders/majority/advantage_share"] == 0.0


def test_multi_objective_options_pass_through_to_grpo_config(tmp_path):
    from trl import GRPOConfig

    from rft.config.run import load_config

    cfg = tiny_config(tmp_path, tmp_path / "model")
    cfg["stages"]["rft"]["trl"].update(multi_objective_aggregation="normalize_then_sum", scale_rewards="batch")
    loaded = load_config(write_config(tmp_path, cfg))
    args = GRPOConfig(**{**loaded.rft_trl_args(tmp_path / "ck"), "use_cpu": True, "report_to": []})
    assert args.multi_objective_aggregation == "normalize_then_sum" and args.scale_rewards == "batch"
    cfg["stages"]["rft"]["trl"]["multi_objective_aggregation"] = "normalise_then_sum"
    with pytest.raises(ConfigError, match="normalize_then_sum") as err:
        load_config(write_config(tmp_path, cfg))
    assert err.value.key == "stages.rft.trl.multi_objective_aggregation"


@pytest.mark.slow
def test_a_training_step_with_a_group_grader(tmp_path, plugin, one_torch_thread):
    from rft.models.resolve import create_tiny_model

    model = create_tiny_model(tmp_path / "tiny")
    log = tmp_path / "calls.jsonl"
    cfg = tiny_config(tmp_path, model, eval={"enabled": False})
    del cfg["stages"]["sft"]
    cfg["graders"]["plugins"].append(str(plugin))
    cfg["graders"]["graders"].append({"name": "group_probe", "log": str(log), "weight": 0.5})
    cfg["stages"]["rft"]["trl"].update(max_steps=1, multi_objective_aggregation="normalize_then_sum")
    res = CliRunner().invoke(app, ["train", str(write_config(tmp_path, cfg)), "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    seen = calls(log)
    # TRL's batch: 2 prompts × num_generations 2; the group grader saw each prompt's 2 completions together
    assert len(seen) == 2 and all(len(c["completions"]) == 2 and len(c["prompts"]) == 1 for c in seen)
    rec = next(r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "loss" in r)
    shares = {k: v for k, v in rec.items() if k.endswith("/advantage_share")}
    assert set(shares) == {f"graders/{g}/advantage_share" for g in ("exact_match", "brevity", "group_probe")}
    assert shares["graders/group_probe/advantage_share"] > 0 and sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
