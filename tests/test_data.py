"""Datasets: formats, normalisation to prompts + references, file:line errors, skipping, carve-out, TRL datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rft.config import DataConfig
from rft.core.errors import DataError
from rft.data import (
    ROW_INDEX,
    LoadReport,
    grpo_dataset,
    load_examples,
    load_splits,
    sft_dataset,
    to_example,
)

CHAT = {
    "messages": [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}],
    "answer": "5",
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "row, prompt, reference",
    [
        # chat: the trailing assistant turn is the SFT reference, the rest is the prompt
        (CHAT, [{"role": "user", "content": "What is 2 + 3?"}], "5"),
        # chat without an assistant turn: usable for RFT, no reference
        ({"messages": [{"role": "user", "content": "hi"}]}, [{"role": "user", "content": "hi"}], None),
        # OpenAI/Fireworks RFT rows: no assistant turn, the reference is the `answer` field beside `messages`
        (
            {"messages": [{"role": "user", "content": "2+2?"}], "answer": "4"},
            [{"role": "user", "content": "2+2?"}],
            "4",
        ),
        # prompt/answer: a text prompt becomes one user turn; `answer` is the reference
        ({"prompt": "2+2?", "answer": "4"}, [{"role": "user", "content": "2+2?"}], "4"),
        # `completion` is preferred over `answer` (answer may be a short grader label)
        (
            {"prompt": "2+2?", "completion": "It is 4.", "answer": "4"},
            [{"role": "user", "content": "2+2?"}],
            "It is 4.",
        ),
        # an assistant turn made of tool calls becomes <tool_call> text the parsers understand
        (
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}}
                        ],
                    },
                ]
            },
            [{"role": "user", "content": "weather?"}],
            '<tool_call>{"name": "w", "arguments": {"city": "Paris"}}</tool_call>',
        ),
    ],
)
def test_rows_normalise_to_prompt_and_reference(row, prompt, reference):
    ex = to_example(row)
    assert ex.prompt == prompt and ex.reference == reference
    assert ex.row == row  # the original columns stay the graders' inputs


@pytest.mark.parametrize(
    "row, prompt, reference, source",
    [
        # every accepted shape, with where its reference comes from
        ({"prompt": "2+2?", "completion": "4"}, "2+2?", "4", "completion"),
        ({"prompt": "2+2?", "label": "4"}, "2+2?", "4", "label"),  # the issue's {prompt, label} rows
        ({"question": "2+2?", "answer": 4}, "2+2?", "4", "answer"),  # numbers become text
        ({"instruction": "Add.", "input": "", "output": "4"}, "Add.", "4", "output"),  # Alpaca
        ({"prompt": "2+2?", "answer": ""}, "2+2?", None, None),  # a blank reference is no reference
        ({"prompt": "2+2?"}, "2+2?", None, None),
        # an empty trailing assistant turn is not a reference; the field beside `messages` is
        (
            {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": ""}], "label": "4"},
            "2+2?",
            "4",
            "label",
        ),
        # TRL's conversational prompt/completion rows
        (
            {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]},
            "2+2?",
            "4",
            "completion",
        ),
    ],
)
def test_every_row_shape_has_one_prompt_and_reference(row, prompt, reference, source):
    ex = to_example(row)
    assert ex.prompt == [{"role": "user", "content": prompt}]
    assert (ex.reference, ex.reference_source) == (reference, source)
    assert ex.row == row  # extra columns stay the graders' inputs


def test_config_fields_override_the_ordered_lists():
    row = {"prompt": "p", "question": "q", "answer": "a", "gold": "g"}
    assert to_example(row).prompt[0]["content"] == "p" and to_example(row).reference == "a"
    ex = to_example(row, prompt_field="question", answer_field="gold")
    assert ex.prompt[0]["content"] == "q" and ex.reference == "g"
    with pytest.raises(ValueError, match="row has no 'missing' \\(data.prompt_field"):
        to_example(row, prompt_field="missing")
    with pytest.raises(ValueError, match="row has no 'missing' \\(data.answer_field"):
        to_example(row, answer_field="missing")


def test_openai_tools_are_kept_and_passed_to_the_chat_template():
    tools = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    row = {
        "messages": [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "ok"}],
        "tools": tools,
    }
    ex = to_example(row)
    assert ex.tools == tools and ex.row["tools"] == tools  # a grader input too
    assert to_example({"prompt": "x", "tools": json.dumps(tools)}).tools == tools  # CSV/Parquet JSON text
    with pytest.raises(ValueError, match="`tools` must be a list"):
        to_example({"prompt": "x", "tools": {"name": "w"}})
    sft = sft_dataset([ex, to_example({"prompt": "hi", "answer": "yo"})], _ChatTok())
    assert json.loads(sft[0]["tools"]) == tools and sft[1]["tools"] is None  # TRL's SFTTrainer reads this column


def test_system_prompt_is_prepended_once():
    ex = to_example({"prompt": "hi"}, system_prompt="Be brief.")
    assert ex.prompt[0] == {"role": "system", "content": "Be brief."}
    ex2 = to_example(
        {"messages": [{"role": "system", "content": "own"}, {"role": "user", "content": "hi"}]}, system_prompt="x"
    )
    assert ex2.prompt[0]["content"] == "own"


@pytest.mark.parametrize(
    "bad_line, fragment",
    [
        ("{not json", "Expecting property name"),  # invalid JSON
        ('["a", "b"]', "expected a JSON object"),  # valid JSON, not an object
        ('{"messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),  # unknown role
        ('{"messages": []}', "non-empty list"),  # no turns at all
        ('{"text": "2+2?"}', "row has no prompt (columns: text)"),  # neither messages nor a prompt field
        ('{"prompt": "", "answer": "4"}', "'prompt' must be a non-empty string"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "no prompt turn"),  # only an answer
    ],
)
def test_bad_row_names_file_and_line(tmp_path, bad_line, fragment):
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT, "", bad_line])  # blank line 2 is ignored; line 3 is bad
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3:")
    assert fragment in str(info.value)
    assert "on_bad_row: skip" in str(info.value)  # the fix


def test_skip_mode_skips_and_counts(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [CHAT, "{oops", {"text": "x"}, CHAT])
    report = LoadReport(str(path))
    examples = load_examples(path, on_bad_row="skip", report=report)
    # two good rows kept; lines 2 (bad JSON) and 3 (no prompt) skipped and counted
    assert len(examples) == 2 and [line for line, _ in report.skipped] == [2, 3]


def test_csv_errors_name_the_csv_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("prompt,answer\n2+2?,4\n,5\n")  # line 3 has an empty prompt
    with pytest.raises(DataError) as info:
        load_examples(path)
    assert info.value.line == 3


def test_parquet_and_hf_dataset_dirs(tmp_path):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("pyarrow")
    rows = [{"prompt": f"{i}+1?", "answer": str(i + 1)} for i in range(3)]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "hf"))
    for path in (tmp_path / "d.parquet", tmp_path / "hf"):
        ex = load_examples(path)
        assert [e.reference for e in ex] == ["1", "2", "3"]
        assert ex[1].source == f"{path}:2"  # 1-based row numbers after the file name


def test_unknown_extension_and_missing_file(tmp_path):
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        load_examples(tmp_path / "d.txt")
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.jsonl")


def test_eval_carve_out_is_seeded_and_disjoint(tmp_path):
    rows = [{"prompt": f"q{i}", "answer": str(i)} for i in range(20)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    a = load_splits(DataConfig(train=path, eval_size=0.25), seed=1)
    b = load_splits(DataConfig(train=path, eval_size=0.25), seed=1)
    c = load_splits(DataConfig(train=path, eval_size=3), seed=1)
    # 25 % of 20 rows held out, the same rows for the same seed, none of them trained on
    assert len(a.eval) == 5 and len(a.train) == 15
    assert [e.row for e in a.eval] == [e.row for e in b.eval]
    assert not {e.row["prompt"] for e in a.eval} & {e.row["prompt"] for e in a.train}
    assert len(c.eval) == 3  # an integer is a row count
    with pytest.raises(DataError, match="leaves no training rows"):
        load_splits(DataConfig(train=path, eval_size=20))


def test_columns_are_the_ones_every_row_has(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1", "x": 1}, {"prompt": "b", "answer": "2"}])
    splits = load_splits(DataConfig(train=path, eval_size=0))
    assert splits.columns == {"prompt", "answer"}


class _ChatTok:
    chat_template = "{{ x }}"


def test_trl_datasets():
    examples = [to_example(CHAT), to_example({"messages": [{"role": "user", "content": "no answer"}]})]
    sft = sft_dataset(examples, _ChatTok())
    # only rows with a reference train SFT, as conversational prompt/completion (loss on the completion)
    assert len(sft) == 1 and sft[0]["completion"] == [{"role": "assistant", "content": "5"}]
    grpo = grpo_dataset(examples, _ChatTok())
    # every row is a prompt; the row travels by index so graders get the original Python values
    assert grpo[1]["prompt"] == [{"role": "user", "content": "no answer"}] and grpo[1][ROW_INDEX] == 1
    text = sft_dataset(examples, None)  # no chat template: plain text
    assert text[0] == {"prompt": "What is 2 + 3?", "completion": "5"}
    with pytest.raises(DataError, match="reference output"):
        sft_dataset(examples[1:], None)
