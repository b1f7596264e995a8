"""One row model: for every accepted row shape, `rft advise` counts the references `rft train`
reads, and `rft advise DATA --write-config X && rft train X --dry-run` succeeds (issue 11)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rft.cli.main import app
from rft.config.run import load_config
from rft.data import load_splits

SUM_PLUGIN = '''
import re
import rft


@rft.grader(range=(0.0, 1.0))
def sum_check(completion: str, prompt) -> float:
    """1.0 when the last number of the completion is the sum the prompt asks for (needs no column)."""
    text = prompt if isinstance(prompt, str) else " ".join(str(m.get("content") or "") for m in prompt)
    a, b = re.findall(r"What is (\\d+) \\+ (\\d+)", text)[-1]
    nums = re.findall(r"-?\\d+", completion)
    return float(bool(nums) and int(nums[-1]) == int(a) + int(b))


@rft.hookimpl
def rft_register_graders(register):
    register(sum_check)
'''

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "report_sum",
            "parameters": {"type": "object", "properties": {"result": {"type": "integer"}}},
        },
    }
]


def _tool_row(q: str, a: str) -> dict[str, Any]:
    call = {"type": "function", "function": {"name": "report_sum", "arguments": json.dumps({"result": int(a)})}}
    return {
        "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": None, "tool_calls": [call]}],
        "tools": TOOLS,
    }


def _tool_trace_row(q: str, a: str) -> dict[str, Any]:
    """OpenAI's function-calling fine-tuning format: a call, its result, the reply (issue 15)."""
    x, y = (int(n) for n in q.removeprefix("What is ").rstrip("?").split(" + "))
    call = {"id": "c1", "type": "function", "function": {"name": "add", "arguments": json.dumps({"a": x, "b": y})}}
    return {
        "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": a},
            {"role": "assistant", "content": f"The sum is {a}."},
        ],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
        "parallel_tool_calls": False,
    }


#: Every labeled row shape the row model accepts, built from a question and its answer.
LABELED: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "chat": lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
    "chat_answer_field": lambda q, a: {
        "messages": [{"role": "system", "content": "Reply with the sum only."}, {"role": "user", "content": q}],
        "answer": a,
    },
    "prompt_completion": lambda q, a: {"prompt": q, "completion": a},
    "prompt_answer": lambda q, a: {"prompt": q, "answer": a},
    "prompt_label": lambda q, a: {"prompt": q, "label": a},
    "question_answer": lambda q, a: {"question": q, "answer": a},
    "extra_columns": lambda q, a: {"prompt": q, "label": a, "difficulty": len(q) % 3, "source": "synthetic"},
    "openai_tools": _tool_row,
    "openai_tool_trace": _tool_trace_row,
}
#: Shapes without a reference (RFT against a grader only).
UNLABELED: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "chat_prompt_only": lambda q, a: {"messages": [{"role": "user", "content": q}]},
    "prompt_only": lambda q, a: {"prompt": q},
}


def _rows(make: Callable[[str, str], dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        out.append(make(f"What is {a} + {b}?", str(a + b)))
    return out


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("row_shapes_tiny") / "tiny")


@pytest.fixture(scope="module")
def graders_file(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("row_shapes_graders")
    (d / "sum_plugin.py").write_text(SUM_PLUGIN)
    path = d / "graders.yaml"
    path.write_text("plugins: [sum_plugin.py]\ngraders:\n  - name: sum_check\n")
    return path


def _advise_then_dry_run(
    tmp_path: Path, rows: list[dict[str, Any]], tiny_model: Path, *extra: Any, eval_rows: list | None = None
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    data = _write(tmp_path / "train.jsonl", rows)
    args: list[Any] = ["advise", data, "--json", "--write-config", tmp_path / "run.yaml"]
    if eval_rows is not None:
        args += ["--eval", _write(tmp_path / "eval.jsonl", eval_rows)]
    r = invoke(*args, "--config-model", f"tiny:{tiny_model}", *extra)
    assert r.exit_code == 0, r.output
    advice = json.loads(r.stdout)
    assert advice["config"]["error"] is None
    dry = invoke("train", tmp_path / "run.yaml", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    return advice, json.loads(dry.stdout), tmp_path / "run.yaml"


@pytest.mark.parametrize("shape", sorted(LABELED))
@pytest.mark.parametrize("with_graders", [False, True], ids=["no_graders", "graders"])
def test_advise_counts_the_references_training_reads_and_its_config_trains(
    tmp_path, tiny_model, graders_file, shape, with_graders
):
    make = LABELED[shape]
    # without graders: enough rows for SFT (labeled/large); with graders: the 100–1000 band of
    # arithmetic prompts, where the tree says RFT and the grader passes its checks
    n = 150 if with_graders else 1100
    extra = ["--graders", graders_file] if with_graders else []
    advice, plan, cfg = _advise_then_dry_run(
        tmp_path, _rows(make, n, 0), tiny_model, *extra, eval_rows=_rows(make, 10, 1)
    )
    splits = load_splits(load_config(cfg, check_trl=False).data)
    # with --eval, the training split is every row of the data file: the counts are equal
    trained_refs = sum(e.reference is not None for e in splits.train)
    assert advice["stats"]["references"]["rows"] == trained_refs == plan["data"]["train_rows_with_reference"] == n
    assert advice["stats"]["eval"]["reference_share"] == 1.0
    assert all(e.reference is not None for e in splits.eval)
    if with_graders:
        assert advice["verifiability"]["verifiable"] is True, advice["verifiability"]["problems"]
        assert (advice["recommendation"], list(plan["stages"])) == ("rft", ["rft"])
    else:
        assert (advice["recommendation"], list(plan["stages"])) == ("sft", ["sft"])


@pytest.mark.parametrize("shape", sorted(UNLABELED))
def test_unlabeled_shapes_train_rft_against_a_grader(tmp_path, tiny_model, graders_file, shape):
    rows = _rows(UNLABELED[shape], 150, 0)
    advice, plan, _ = _advise_then_dry_run(tmp_path, rows, tiny_model, "--graders", graders_file)
    assert advice["stats"]["references"]["rows"] == 0 == plan["data"]["train_rows_with_reference"]
    assert (advice["branch"], list(plan["stages"])) == ("unlabeled/verifiable", ["rft"])


@pytest.mark.parametrize("shape", sorted(UNLABELED))
def test_unlabeled_shapes_without_graders_get_no_config(tmp_path, shape):
    data = _write(tmp_path / "train.jsonl", _rows(UNLABELED[shape], 150, 0))
    r = invoke("advise", data, "--json", "--write-config", tmp_path / "run.yaml")
    # nothing trains without references or a grader: the advice says so and no config is written
    assert r.exit_code == 1 and json.loads(r.stdout)["recommendation"] == "rft_with_judge"
    assert "model-judge grader" in r.stderr and not (tmp_path / "run.yaml").exists()


def test_issue_scenario_prompt_label_rows_advise_sft_and_train(tmp_path, tiny_model):
    # 1,500 rows of {prompt, label}: the advisor said SFT (counting `label`), but the loader did not
    # read `label` and `rft train --dry-run` refused with "none has a reference"
    rows = [{"prompt": f"Is review {i} positive?", "label": "yes" if i % 3 else "no"} for i in range(1500)]
    advice, plan, cfg = _advise_then_dry_run(tmp_path, rows, tiny_model)
    assert advice["recommendation"] == "sft" and advice["stats"]["references"]["sources"] == {"label": 1500}
    assert list(plan["stages"]) == ["sft"]
    # no --eval: 10 % is carved out; every row training reads from data.train has its reference
    splits = load_splits(load_config(cfg, check_trl=False).data)
    assert plan["data"]["train_rows_with_reference"] == plan["data"]["train_rows"] == 1350
    assert sum(e.reference is not None for e in splits.train + splits.eval) == advice["stats"]["references"]["rows"]
