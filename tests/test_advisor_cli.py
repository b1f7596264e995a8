"""`rft advise`: the report, --json against the shipped schema, --write-config → `rft train --dry-run`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest
from helpers import ADVISOR_GRADERS_PY
from typer.testing import CliRunner

from rft.advise.advisor import advice_schema
from rft.cli.main import app

GRADERS_PY = (
    ADVISOR_GRADERS_PY
    + """

@rft.hookimpl
def rft_register_graders(register):
    register(number_match)
    register(length_bonus)


@rft.hookimpl
def rft_advisor_signals(stats):
    return [{"name": "row_count", "value": stats["rows"], "reason": "rows seen by the plugin"}]
"""
)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Chat rows of sums (with an `answer` column), an eval split, a plugin and two grader sets."""
    d = tmp_path_factory.mktemp("advise_cli")
    rng = random.Random(0)

    def row() -> dict:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        return {
            "messages": [
                {"role": "user", "content": f"What is {a} + {b}?"},
                {"role": "assistant", "content": str(a + b)},
            ],
            "answer": str(a + b),
        }

    _write_jsonl(d / "train.jsonl", [row() for _ in range(150)])
    # the addition example's shape: chat prompts without an assistant turn, the reference in `answer`
    quick = [
        {
            "messages": [{"role": "system", "content": "Reply with the sum only."}, r["messages"][0]],
            "answer": r["answer"],
        }
        for r in (row() for _ in range(150))
    ]
    _write_jsonl(d / "quick.jsonl", quick)
    _write_jsonl(d / "eval.jsonl", [row() for _ in range(10)])
    (d / "advisor_plugin.py").write_text(GRADERS_PY)
    (d / "graders.yaml").write_text("plugins: [advisor_plugin.py]\ngraders:\n  - name: number_match\n")
    (d / "gameable.yaml").write_text("plugins: [advisor_plugin.py]\ngraders:\n  - name: length_bonus\n")
    return d


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("advise_cli_tiny") / "tiny")


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_json_output_matches_the_schema(workspace):
    r = invoke(
        "advise",
        workspace / "train.jsonl",
        "--graders",
        workspace / "graders.yaml",
        "--eval",
        workspace / "eval.jsonl",
        "--json",
    )
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    jsonschema.validate(obj, advice_schema())
    # 150 labeled arithmetic rows: the 100–1000 band with math prompts → RFT
    assert obj["recommendation"] == "rft" and obj["branch"] == "labeled/medium/reasoning"
    assert obj["stats"]["eval"]["rows"] == 10 and obj["verifiability"]["verifiable"] is True
    # the plugin that registered the grader also contributed a signal
    assert [s["name"] for s in obj["signals"]] == ["row_count"] and obj["signals"][0]["value"] == 150


def test_schema_rejects_an_unknown_recommendation(workspace):
    r = invoke("advise", workspace / "train.jsonl", "--json")
    obj = json.loads(r.stdout)
    jsonschema.validate(obj, advice_schema())
    obj["recommendation"] = "dpo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(obj, advice_schema())


def test_report_shows_the_decision_and_flags_a_gameable_grader(workspace):
    r = invoke("advise", workspace / "train.jsonl", "--graders", workspace / "gameable.yaml")
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    # the tree says rft; the padding output earns the full length bonus, so SFT on the labels
    assert "labeled/medium/reasoning > graders/unusable" in out
    assert "GAMEABLE" in out and "gameable: the padding output" in out
    for title in ("decision path", "dataset", "graders: length_bonus"):
        assert title in out


def test_write_config_passes_train_dry_run(workspace, tmp_path, tiny_model):
    cfg = tmp_path / "advised.yaml"
    r = invoke(
        "advise",
        workspace / "train.jsonl",
        "--graders",
        workspace / "graders.yaml",
        "--eval",
        workspace / "eval.jsonl",
        "--write-config",
        cfg,
        "--config-model",
        f"tiny:{tiny_model}",
    )
    assert r.exit_code == 0, r.output
    assert cfg.exists() and "recommendation: rft" in cfg.read_text()
    dry = invoke("train", cfg, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert list(plan["stages"]) == ["rft"]
    assert [g["id"] for g in plan["graders"]] == ["number_match"]
    assert plan["data"]["train_rows"] == 150 and plan["data"]["eval_rows"] == 10


def test_probe_from_the_command_line(workspace, tmp_path, tiny_model):
    cfg = tmp_path / "probed.yaml"
    r = invoke(
        "advise",
        workspace / "quick.jsonl",
        "--graders",
        workspace / "graders.yaml",
        "--probe-model",
        tiny_model,
        "--probe-rows",
        3,
        "--probe-samples",
        2,
        "--probe-max-tokens",
        4,
        "--json",
        "--write-config",
        cfg,
    )
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    jsonschema.validate(obj, advice_schema())
    # a random model never writes the sum: no signal, so warm start with SFT first
    assert obj["probe"]["pass_at_1"] == 0.0 and obj["probe"]["zero_variance_share"] == 1.0
    assert obj["recommendation"] == "sft_then_rft"
    assert obj["config"] == {"path": str(cfg), "error": None}
    assert obj["stats"]["references"]["sources"] == {"answer": 150}
    dry = invoke("train", cfg, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert list(plan["stages"]) == ["sft", "rft"]
    # the written config makes training read `answer` as the SFT reference of these chat rows
    assert plan["data"]["train_rows_with_reference"] == plan["data"]["train_rows"] == 135  # 10 % held out


def test_write_config_refused_when_there_is_nothing_to_train(workspace, tmp_path):
    rows = [{"prompt": f"Write a poem about item {i}."} for i in range(20)]
    data = _write_jsonl(tmp_path / "unlabeled.jsonl", rows)
    r = invoke("advise", data, "--json", "--write-config", tmp_path / "run.yaml")
    # the advice is still printed; the exit code says no config was written
    assert r.exit_code == 1
    obj = json.loads(r.stdout)  # stdout stays one JSON object; the error goes to stderr too
    assert obj["recommendation"] == "collect_labels" and obj["config"]["path"] is None
    assert "collect reference outputs" in obj["config"]["error"] and "collect reference outputs" in r.stderr
    assert not (tmp_path / "run.yaml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "file not found"),
        (["{train}", "--probe-model", "tiny"], "pass --graders too"),
        (["{train}", "--graders", "{missing}"], "cannot read grader-set file"),
    ],
)
def test_errors_exit_2_with_a_message(workspace, args, message):
    args = [a.format(train=workspace / "train.jsonl", missing=workspace / "nope.yaml") for a in args]
    r = invoke("advise", *args)
    assert r.exit_code == 2
    assert message in " ".join(r.output.split())
