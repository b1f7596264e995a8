"""Trajectories (issue 15): what graders, data and `rft grade` see of a multi-turn tool-use episode."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from graders.task_success import task_success
from graders.tool_calls import ToolCall
from rft.cli.main import app
from rft.core import Sample, as_grader
from rft.core.errors import DataError
from rft.data import load_examples, sft_dataset, to_example
from rft.plugins import grader_set_from_config
from rft.scoring import ScoringOptions, make_executor

PLUGIN = str(Path(__file__).with_name("trajectory_graders.py"))
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers.",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book a table.",
            "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
        },
    },
]
PROMPT = [{"role": "system", "content": "Use the tools."}, {"role": "user", "content": "12+7, then book Monday."}]


def call(name: str, args: dict[str, Any], cid: str) -> dict[str, Any]:
    # OpenAI stores the arguments as a JSON string
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


#: assistant → tool → assistant (a string-argument call, then a dict-argument one) → final reply
COMPLETION = [
    {"role": "assistant", "content": None, "tool_calls": [call("add", {"a": 12, "b": 7}, "c1")]},
    {"role": "tool", "tool_call_id": "c1", "content": "19"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": "book", "arguments": {"day": "Monday"}}}],
    },
    {"role": "tool", "content": "booked"},
    {"role": "assistant", "content": "19, and you are booked for Monday."},
]
EPISODE = {"environment": "diner", "turns": 3, "tool_calls": 2, "tool_errors": 0, "success": True, "done": True}
EXPECTED = [{"name": "add", "arguments": {"a": 12, "b": 7}}, {"name": "book", "arguments": {"day": "Monday"}}]


def trajectory(**kw: Any) -> Sample:
    return Sample(
        completion="19, and you are booked for Monday.",
        item={"expected_tool_calls": EXPECTED, "tools": TOOLS},
        prompt=PROMPT,
        completion_messages=COMPLETION,
        **kw,
    )


# -- the sample ---------------------------------------------------------------------------


def test_a_trajectory_sample_survives_pickle_and_json():
    s = trajectory(state={"booked": ["Monday"]}, episode=EPISODE, step=3)
    for copy in (pickle.loads(pickle.dumps(s)), Sample.from_dict(json.loads(json.dumps(s.to_dict())))):
        assert (copy.state, copy.episode, copy.completion_messages, copy.step) == (
            {"booked": ["Monday"]},
            EPISODE,
            COMPLETION,
            3,
        )
    assert "state" not in Sample("x").to_dict()  # rows of single-turn runs stay as they were


def test_injected_names_see_the_whole_trajectory():
    s = trajectory(state={"booked": ["Monday"]}, episode=EPISODE)
    assert s.resolve("messages") == [*PROMPT, *COMPLETION]  # the whole conversation, not the prompt only
    assert s.resolve("prompt") == PROMPT
    # every call of the trajectory in order, arguments decoded whether a JSON string or an object
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in s.resolve("tool_calls")] == [
        ("add", {"a": 12, "b": 7}),
        ("book", {"day": "Monday"}),
    ]
    assert s.resolve("tool_calls")[0]["id"] == "c1"  # the id a tool message answers is kept
    assert s.resolve("state") == {"booked": ["Monday"]} and s.resolve("episode") == EPISODE
    # the text of a multi-turn completion is the final reply, not the tool results
    from rft.core.parsing import completion_text

    assert completion_text(COMPLETION) == "19, and you are booked for Monday."


def test_a_single_turn_sample_keeps_parsing_calls_from_its_text():
    s = Sample('<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>', prompt="add 1")
    assert s.resolve("tool_calls") == [{"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}]
    assert [m["role"] for m in s.resolve("messages")] == ["user", "assistant"]
    assert s.resolve("messages")[-1]["content"] == s.completion


def test_a_grader_asking_for_state_of_a_sample_without_one_errors_saying_why():
    (out,) = as_grader(_booked()).grade([Sample("no environment here")])
    assert out.kind.value == "grader_error" and out.score is None  # never a silent 0
    assert "needs input 'state'" in out.error and "multi-turn rollout" in out.error
    (ok,) = as_grader(_booked()).grade([trajectory(state={"booked": True})])
    assert ok.score == 1.0
    # a dataset's own `state` column still reaches a grader asking for it when there is no environment
    assert Sample("x", item={"state": "Ohio"}).resolve("state") == "Ohio"
    assert trajectory(state={"booked": True}).resolve("state") == {"booked": True}


def _booked():
    import importlib.util

    spec = importlib.util.spec_from_file_location("trajectory_graders", PLUGIN)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.booked


# -- graders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "episode, kind, score, why",
    [
        ({**EPISODE, "success": True}, "score", 1.0, "diner: task solved"),
        ({**EPISODE, "success": False, "done": False}, "score", 0.0, "not done"),  # a failed task is a 0
        ({**EPISODE, "success": None}, "grader_error", None, "gave no success signal"),  # no signal is no 0
        (None, "grader_error", None, "not a multi-turn trajectory"),  # not a trajectory at all
    ],
)
def test_task_success(episode, kind, score, why):
    (out,) = as_grader(task_success).grade([trajectory(episode=episode)])
    assert (out.kind.value, out.score) == (kind, score)
    assert why in (out.reason or out.error or "")


@pytest.mark.parametrize(
    "match, expected, score",
    [
        ("all", EXPECTED, 1.0),  # both calls of the trajectory, in two turns
        ("all", EXPECTED[:1], 0.5),  # the booking is an extra call
        ("any", EXPECTED[:1], 1.0),  # ... unless only the expected calls count
        ("any", [*EXPECTED, {"name": "add", "arguments": {"a": 1, "b": 1}}], 2 / 3),  # a missing one still counts
    ],
)
def test_tool_call_grades_every_call_of_a_trajectory(match, expected, score):
    g = as_grader(ToolCall, params={"match": match})
    s = trajectory()
    s.item = {"expected_tool_calls": expected, "tools": TOOLS}
    (out,) = g.grade([s])
    assert out.score == pytest.approx(score), out.reason
    (again,) = pickle.loads(pickle.dumps(g)).grade([s])  # Ray ships it pickled, option included
    assert again.score == out.score


def test_tool_call_takes_the_reference_calls_from_a_rows_reference_trajectory():
    row = {"messages": [*PROMPT, *COMPLETION], "tools": TOOLS}  # an OpenAI fine-tuning row as an RFT prompt
    ex = to_example(row)
    made = Sample(
        completion="",
        item=ex.row,
        prompt=ex.prompt,
        completion_messages=[
            {"role": "assistant", "content": None, "tool_calls": [call("add", {"a": 12, "b": 8}, "x")]}
        ],
    )
    (out,) = as_grader(ToolCall, params={"reference_column": "messages"}).grade([made])
    assert out.score < 1 and "argument 'b' is 8, expected 7" in out.reason and "missing" in out.reason


def test_unknown_match_is_a_config_error():
    from rft.core.errors import ConfigError

    with pytest.raises(ConfigError, match="match: last"):
        ToolCall(match="last")


# -- data ---------------------------------------------------------------------------------

ROW = {"messages": [*PROMPT, *COMPLETION], "tools": TOOLS, "parallel_tool_calls": False}


def test_an_openai_function_calling_row_is_prompt_plus_reference_trajectory():
    ex = to_example(ROW)
    assert ex.prompt == PROMPT  # the messages before the first assistant message
    assert [m["role"] for m in ex.reference_messages] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert ex.reference_messages[0]["tool_calls"][0]["function"]["arguments"] == {"a": 12, "b": 7}  # decoded
    assert ex.tools == TOOLS and ex.row == ROW  # the whole trace stays the graders' input
    assert '<tool_call>{"name": "add"' in ex.reference and "<tool_response>\n19\n</tool_response>" in ex.reference


def test_a_plain_multi_turn_chat_row_is_read_as_before():
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}] * 2}
    ex = to_example(row)
    assert len(ex.prompt) == 3 and ex.reference == "b"  # the last assistant turn is the reference
    # a prompt that ends with the user's question keeps its tool-use example in context
    few_shot = {"messages": [*PROMPT, *COMPLETION, {"role": "user", "content": "And 2+2?"}], "answer": "4"}
    ex = to_example(few_shot)
    assert len(ex.prompt) == 8 and ex.prompt[-1]["content"] == "And 2+2?" and ex.reference == "4"


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda r: r["messages"].insert(1, {"role": "tool", "content": "x"}), "messages[1] is a tool result"),
        (
            lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments="{oops"),
            "messages[2].tool_calls[0].function.arguments must be a JSON object",
        ),
        (lambda r: r["messages"][2].update(tool_calls={"name": "add"}), "messages[2].tool_calls must be a list"),
        (lambda r: r["messages"][2]["tool_calls"].append({"type": "function"}), "messages[2].tool_calls[1]"),
        (lambda r: r["tools"].append({"type": "function"}), "`tools[2]` is not a tool definition"),
        (lambda r: r.update(parallel_tool_calls="no"), "`parallel_tool_calls` must be true or false"),
    ],
)
def test_bad_trace_rows_name_file_line_and_key(tmp_path, change, fragment):
    bad = json.loads(json.dumps(ROW))
    change(bad)
    path = tmp_path / "ft.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert str(info.value).startswith(f"{path}:2:") and fragment in str(info.value)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("traj_tiny") / "tiny")


def test_sft_trains_every_assistant_turn_of_a_trace_and_never_the_tool_results(tiny_dir, tmp_path):
    """Tokenized by TRL's own SFTTrainer with a template that renders tools (TRL's qwen2_5)."""
    from importlib.resources import files

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    tok.chat_template = (files("trl") / "chat_templates" / "qwen2_5.jinja").read_text()
    other = {"messages": [{"role": "user", "content": "Book Friday"}, COMPLETION[2]], "tools": TOOLS}
    ds = sft_dataset([to_example(ROW), to_example(other)], tok)
    # one row per assistant turn of the trace: the call, the second call, the reply (+ the other row)
    assert len(ds) == 4 and [len(r["prompt"]) for r in ds] == [2, 4, 6, 1]
    # each call keeps exactly its own arguments (no columns merged across rows by Arrow)
    assert ds[3]["completion"][0]["tool_calls"][0]["function"]["arguments"] == {"day": "Monday"}
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    args = SFTConfig(output_dir=str(tmp_path / "out"), report_to=[], max_steps=1, use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    tokenized = trainer.train_dataset
    trained = [tok.decode([t for t, lab in zip(r["input_ids"], r["labels"]) if lab != -100]) for r in tokenized]
    # exactly the assistant turns, in the template's tool format; the tool results are context only
    assert trained[:3] == [
        '<tool_call>\n{"name": "add", "arguments": {"a": 12, "b": 7}}\n</tool_call><|im_end|>\n',
        '<tool_call>\n{"name": "book", "arguments": {"day": "Monday"}}\n</tool_call><|im_end|>\n',
        "19, and you are booked for Monday.<|im_end|>\n",
    ]
    full = tok.decode(tokenized[2]["input_ids"])
    assert "<tool_response>\n19\n</tool_response>" in full and '"name": "add"' in full  # the tools reach the template


def test_sft_without_a_tool_template_writes_calls_as_text(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))  # ChatML without tool support
    ds = sft_dataset([to_example(ROW)], tok)
    assert ds[0]["completion"] == [
        {"role": "assistant", "content": '<tool_call>{"name": "add", "arguments": {"a": 12, "b": 7}}</tool_call>'}
    ]
    assert ds[2]["prompt"][5] == {"role": "tool", "content": "booked"}


# -- rft grade --------------------------------------------------------------------------------

GRADERS = """
plugins: [{plugin}]
graders:
  - name: tool_call
  - name: task_success
  - name: booked
  - name: calls_made
    weight: 0
"""


def _grade(tmp_path: Path, rows: list[dict[str, Any]], *args: str) -> tuple[Any, list[dict[str, Any]]]:
    data = tmp_path / "trajectories.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    graders = tmp_path / "graders.yaml"
    graders.write_text(GRADERS.format(plugin=PLUGIN))
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(
        app, ["grade", "--data", str(data), "--graders", str(graders), "--out", str(out), *args], catch_exceptions=False
    )
    return r, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_rft_grade_grades_saved_trajectories(tmp_path):
    rows = [
        {**ROW, "expected_tool_calls": EXPECTED, "state": {"booked": True}, "episode": EPISODE},
        {
            **ROW,
            "expected_tool_calls": EXPECTED[:1],
            "state": {"booked": False},
            "episode": {**EPISODE, "success": False},
        },
    ]
    r, results = _grade(tmp_path, rows)
    assert r.exit_code == 0, r.output
    scores = [{g: v["score"] for g, v in res["graders"].items()} for res in results]
    assert scores == [
        {"tool_call": 1.0, "task_success": 1.0, "booked": 1.0, "calls_made": 2.0},
        {"tool_call": 0.5, "task_success": 0.0, "booked": 0.0, "calls_made": 2.0},  # an extra call; a failed task
    ]
    assert results[0]["completion"] == "19, and you are booked for Monday."
    roles = results[0]["graders"]["calls_made"]["reason"]
    assert roles == "system,user,assistant,tool,assistant,tool,assistant"  # `messages`: the whole conversation


def test_rft_grade_without_a_completion_names_the_row(tmp_path):
    rows = [{**ROW, "expected_tool_calls": EXPECTED}, {"messages": PROMPT, "expected_tool_calls": EXPECTED}]
    r, _ = _grade(tmp_path, rows)
    text = r.output.replace("\n", "")
    assert r.exit_code == 2 and "trajectories.jsonl:2: no completion to grade" in text and "--completions" in text


def test_rft_grade_regrades_a_runs_rollouts(tmp_path):
    """rollouts.jsonl rows (rft/train/rewards.py) with a rollout's trajectory, state and episode."""
    rollouts = [
        {
            "step": 1,
            "index": 0,
            "prompt": PROMPT,
            "completion": COMPLETION[-1]["content"],
            "completion_messages": COMPLETION,
            "state": {"booked": True},
            "episode": EPISODE,
            "reward": 1.0,
            "graders": {},
            "expected_tool_calls": EXPECTED,
        },
        {"step": 1, "index": 1, "prompt": PROMPT, "completion": "I cannot.", "reward": 0.0, "graders": {},
         "expected_tool_calls": EXPECTED},
    ]  # fmt: skip
    r, results = _grade(tmp_path, rollouts, "--field", "completion")
    assert r.exit_code == 1  # the single-turn rollout has no state/episode: errors, not zeros
    first, second = (res["graders"] for res in results)
    assert {g: v["score"] for g, v in first.items()} == {
        "tool_call": 1.0,
        "task_success": 1.0,
        "booked": 1.0,
        "calls_made": 2.0,
    }
    assert second["tool_call"]["score"] == 0.0 and second["booked"]["kind"] == "grader_error"
    assert second["task_success"]["kind"] == "grader_error"


def test_a_trajectory_crosses_to_a_grader_server_whole():
    # the remote grader sends Sample.to_dict(); `rft serve-graders` rebuilds the same trajectory
    from rft.judges.server import SampleIn, to_sample

    sent = trajectory(state={"booked": True}, episode=EPISODE)
    got = to_sample(SampleIn(**json.loads(json.dumps(sent.to_dict()))))
    assert (got.state, got.episode, got.resolve("messages")) == (sent.state, EPISODE, sent.resolve("messages"))
    assert got.resolve("tool_calls") == sent.resolve("tool_calls")


# -- the Ray executor -------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_ray_actors_score_trajectory_samples(ray_cluster):
    gs = grader_set_from_config(
        {"plugins": [PLUGIN], "graders": [{"name": "tool_call"}, {"name": "task_success"}, {"name": "booked"}]}
    )
    samples = [trajectory(state={"booked": True}, episode=EPISODE), trajectory(state={"booked": False}, episode=None)]
    with make_executor(gs, "ray", ScoringOptions(num_workers=2, cache=False, error_budget=1.0)) as ex:
        result = ex.score(samples)
    first, second = result.outcomes
    assert [first[g].score for g in ("tool_call", "task_success", "booked")] == [1.0, 1.0, 1.0]
    assert second["booked"].score == 0.0 and second["task_success"].kind.value == "grader_error"
