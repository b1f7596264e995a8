"""Agentic RFT end to end on a tiny model: TRL's multi-turn rollouts with an environment's tools.

The tiny random model cannot call tools by itself, so its ``generate`` is scripted
(``tests/scripted_policy.py``): on a prompt without a tool result it calls a tool named by the
question, after a tool result it answers with what the tool returned. Everything else is the real path: TRL's environment_factory and
tool loop (parsing, tool calls, ``tool`` messages, ``tool_mask``), our episodes, graders on
the trajectory, rollouts.jsonl and the held-out episodes.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import read_jsonl, write_config
from scripted_policy import scripted_generate

from rft.config import load_config
from rft.train.pipeline import run_training

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

PLUGIN = textwrap.dedent(
    '''
    import time
    import rft

    @rft.tool(timeout=0.3)
    def lookup(item: str, state: dict) -> int:
        """The stock count of an item.

        Args:
            item: the item's name.
        """
        state["looked_up"].append(item)
        return state["stock"][item]

    @rft.tool(timeout=0.3)
    def recount(item: str) -> int:
        """Count an item again, slowly.

        Args:
            item: the item's name.
        """
        time.sleep(10)
        return 0

    def answered(state, messages):
        return str(state["stock"].get(state["item"])) in (messages[-1].get("content") or "")

    @rft.environment(tools=[lookup, recount], max_turns=2, success=answered)
    def inventory(row):
        """Stock counts, different in every row."""
        return {"stock": dict(row["stock"]), "item": row["product"], "looked_up": []}

    def nudge(state, messages):
        """The feedback step: a reply without the number gets a hint, the right one ends the episode."""
        return None if "42" in (messages[-1].get("content") or "") else "Too low; try again."

    @rft.environment(
        tools=[lookup], max_turns=2, feedback=nudge, success=lambda messages: "42" in messages[-1]["content"]
    )
    def guess(row):
        """Guess a number; wrong guesses get feedback."""
        return {"stock": {}, "looked_up": []}

    @rft.grader
    def looked_up_the_item(tool_calls, state, product) -> float:
        """1 when the trajectory's first tool call asked for the row's product (and the state saw it)."""
        first = tool_calls[0]["function"] if tool_calls else {}
        return float(first.get("arguments", {}).get("item") == product and product in state["looked_up"])
    '''
)

ROWS = [
    {"prompt": "How many apples are in stock?", "product": "apple", "stock": {"apple": 7, "pear": 3}},
    {"prompt": "How many pears are in stock?", "product": "pear", "stock": {"apple": 1, "pear": 4}},
    {"prompt": "How many plums are in stock?", "product": "plum", "stock": {"apple": 2}},  # lookup raises
    {"prompt": "Recount the figs, how many?", "product": "fig", "stock": {"fig": 5}},  # recount hangs
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def scripted_run(
    tmp: Path,
    tiny_model: Path,
    rows: list[dict[str, Any]],
    environment: str,
    graders: list,
    rft_extra: dict[str, Any] | None = None,
) -> dict:
    """``rft train`` (RFT 2 steps, eval before and after) with the scripted policy; what it wrote."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from rft.train.trainer import RFTGRPOTrainer

    (tmp / "env.py").write_text(PLUGIN)
    with (tmp / "train.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tok = AutoTokenizer.from_pretrained(tiny_model)

    captured: list[dict[str, Any]] = []
    original = RFTGRPOTrainer._generate_and_score_completions

    def capture(self, inputs):
        out = original(self, inputs)
        captured.append({k: v for k, v in out.items() if k in ("completion_ids", "completion_mask", "tool_mask")})
        return out

    cfg = {
        "model": f"tiny:{tiny_model}",
        "output_dir": str(tmp / "run"),
        "data": {"train": str(tmp / "train.jsonl"), "eval": str(tmp / "train.jsonl")},
        "graders": {
            "plugins": [str(tmp / "env.py")],
            "graders": graders,
        },
        "environment": environment,
        "scoring": {"executor": "local", "inline": True, "error_budget": 1.0},
        "lora": {"r": 4, "alpha": 8},
        "stages": {
            "rft": {
                "num_generations": 2,
                "max_completion_length": 256,
                "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 2},
                **(rft_extra or {}),
            }
        },
        "eval": {"max_rows": 4, "max_new_tokens": 48, "batch_size": 4},
    }
    mp = pytest.MonkeyPatch()
    mp.setattr(LlamaForCausalLM, "generate", scripted_generate)
    mp.setattr(RFTGRPOTrainer, "_generate_and_score_completions", capture)
    try:
        results = run_training(load_config(write_config(tmp, cfg)), progress=False)
    finally:
        mp.undo()
    return {"root": tmp / "run", "results": results, "captured": captured, "tok": tok}


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory, tiny_model) -> dict[str, Any]:
    graders = [{"name": "task_success"}, {"name": "looked_up_the_item", "weight": 0.5}]
    return scripted_run(tmp_path_factory.mktemp("agent"), tiny_model, ROWS, "inventory", graders)


def test_rollouts_are_whole_trajectories_with_tool_results(agent_run):
    recs = read_jsonl(agent_run["root"] / "rollouts.jsonl")
    assert len(recs) == 2 * 4  # 2 steps × 2 prompts × 2 generations
    apple = next(r for r in recs if r["state"]["item"] == "apple")
    roles = [m["role"] for m in apple["completion_messages"]]
    assert roles == ["assistant", "tool", "assistant"]
    call = apple["completion_messages"][0]["tool_calls"][0]["function"]
    assert call == {"name": "lookup", "arguments": {"item": "apple"}}
    assert apple["completion_messages"][1]["content"] == "7"
    assert apple["completion"] == "There are 7 in stock."
    assert apple["episode"]["success"] is True and apple["episode"]["tool_calls"] == 1
    assert apple["state"]["looked_up"] == ["apple"]
    assert apple["graders"]["task_success"]["score"] == 1.0
    assert apple["graders"]["looked_up_the_item"]["score"] == 1.0


def test_a_raising_and_a_hanging_tool_answer_the_model_and_are_counted(agent_run):
    recs = read_jsonl(agent_run["root"] / "rollouts.jsonl")
    by_item = {r["state"]["item"]: r for r in recs}
    plum, fig = by_item["plum"], by_item["fig"]
    assert plum["completion_messages"][1]["content"].startswith("error: tool 'lookup' raised KeyError")
    assert plum["episode"]["tool_errors"] == 1 and plum["episode"]["success"] is False
    assert plum["graders"]["task_success"]["score"] == 0.0  # a failed task, scored: not an error
    assert fig["completion_messages"][1]["content"] == "error: tool 'recount' did not return within 0.3s"
    assert fig["episode"]["calls"][0]["error"] == "timeout"


def test_tool_result_tokens_are_masked_out_of_the_loss(agent_run):
    tok = agent_run["tok"]
    assert agent_run["captured"], "no generation batch was captured"
    batch = agent_run["captured"][0]
    ids, cmask, tmask = batch["completion_ids"], batch["completion_mask"], batch["tool_mask"]
    for row in range(ids.shape[0]):
        real = cmask[row].bool()
        model_text = tok.decode(ids[row][real & tmask[row].bool()])
        env_text = tok.decode(ids[row][real & ~tmask[row].bool()])
        # the environment's tokens are exactly the tool turn the chat template wrote (after the
        # newline that ends the assistant's turn)
        assert re.fullmatch(
            r"\n?<\|im_start\|>user\n<tool_response>\n.*\n</tool_response><\|im_end\|>\n<\|im_start\|>assistant\n",
            env_text,
            re.DOTALL,
        ), env_text
        # the model's tokens are its tool call and its answer, nothing of the result
        assert "<tool_call>" in model_text and "tool_response" not in model_text
        assert model_text.rstrip().endswith("in stock.<|im_end|>")


def test_held_out_episodes_report_task_success(agent_run):
    ev = json.loads((agent_run["root"] / "eval.json").read_text())
    for phase in ("base", "rft"):
        eps = ev[phase]["episodes"]
        assert eps["episodes"] == 4 and eps["success_rate"] == 0.5  # apple and pear; plum and fig fail
        assert eps["tool_errors"] == 2 and eps["mean_tool_calls"] == 1.0
    sample = ev["base"]["samples"][0]
    assert [m["role"] for m in sample["completion_messages"]] == ["assistant", "tool", "assistant"]


def test_metrics_and_report_show_the_episodes(agent_run):
    root = agent_run["root"]
    steps = [r for r in read_jsonl(root / "metrics.jsonl") if r.get("stage") == "rft" and "episodes/tool_calls" in r]
    assert len(steps) == 2
    # each step: 4 episodes, one tool call each; plum (raises) and fig (hangs) fail their call
    for r in steps:
        assert r["episodes/tool_calls"] == 1.0
        assert 0.0 <= r["episodes/tool_errors_per_call"] <= 1.0 and 0.0 <= r["episodes/success_rate"] <= 1.0
    report = (root / "report.md").read_text()
    assert "| task success | 0.500 | 0.500 |" in report
    assert "`lookup(item='apple')` → `7` → `There are 7 in stock.`" in report
    assert "| tool calls per episode | 1.000 | 1.000 |" in report and "| tool errors per call |" in report


GUESS_ROWS = [{"prompt": "Guess the number.", "product": "n"}, {"prompt": "Guess the number, please.", "product": "n"}]


def test_the_feedback_step_answers_a_reply_without_tool_calls(tmp_path, tiny_model):
    run = scripted_run(tmp_path, tiny_model, GUESS_ROWS, "guess", [{"name": "task_success"}])
    recs = read_jsonl(run["root"] / "rollouts.jsonl")
    assert len(recs) == 2 * 4
    for r in recs:
        turns = [(m["role"], m["content"]) for m in r["completion_messages"]]
        assert turns == [("assistant", "It is 7."), ("user", "Too low; try again."), ("assistant", "It is 42.")]
        assert r["episode"]["success"] is True and r["graders"]["task_success"]["score"] == 1.0
    # the feedback turn is the environment's tokens: masked out of the loss like a tool result
    tok, batch = run["tok"], run["captured"][0]
    for row in range(batch["completion_ids"].shape[0]):
        real, mask = batch["completion_mask"][row].bool(), batch["tool_mask"][row].bool()
        ids = batch["completion_ids"][row]
        assert (
            tok.decode(ids[real & ~mask])
            == "\n<|im_start|>user\nToo low; try again.<|im_end|>\n<|im_start|>assistant\n"
        )
        assert tok.decode(ids[real & mask]) == "It is 7.<|im_end|>It is 42.<|im_end|>"
    ev = json.loads((run["root"] / "eval.json").read_text())
    assert ev["base"]["episodes"]["success_rate"] == 1.0 and ev["base"]["episodes"]["mean_turns"] == 2.0


def test_dynamic_sampling_and_the_curriculum_run_whole_episodes(tmp_path, tiny_model):
    """The scripted policy answers a prompt the same way every time: each group scores one value, so
    dynamic sampling spends every round on fresh prompts' episodes, and the curriculum sees them."""
    graders = [{"name": "task_success"}]
    extra = {"dynamic_sampling": {"enabled": True, "max_rounds": 2}, "curriculum": {"enabled": True}}
    run = scripted_run(tmp_path, tiny_model, ROWS, "inventory", graders, rft_extra=extra)
    root = run["root"]
    steps = [r for r in read_jsonl(root / "metrics.jsonl") if r.get("stage") == "rft" and "loss" in r]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(r["dynamic_sampling/informative_share"] == 0.0 for r in steps)
    assert all(r["curriculum/untried"] is not None for r in steps)
    rollouts = read_jsonl(root / "rollouts.jsonl")
    # 2 steps × 2 rounds × 2 groups × 2 completions, every one a whole episode with its tool call
    assert len(rollouts) == 16
    assert all(r["episode"]["environment"] == "inventory" and r["episode"]["tool_calls"] >= 1 for r in rollouts)
    assert len({r["prompt"][-1]["content"] for r in rollouts}) == len(ROWS)  # fresh rounds drew the other prompts
