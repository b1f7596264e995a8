"""Run configs: schema validation, typed defaults, TRL pass-through, and errors that name file, line, key and fix."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rft.cli.main import app
from rft.config import SECTIONS, RunConfig, ScoringOptions, load_config, parse_config, run_schema
from rft.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

BASE = textwrap.dedent(
    """\
    seed: 3
    output_dir: out
    model: tiny
    data:
      train: train.jsonl
    graders:
      - name: exact_match
    stages:
      rft:
        num_generations: 2
        trl:
          max_steps: 1
    """
)


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tiny_config_loads_with_cpu_safe_defaults_and_trl_overrides():
    cfg = load_config(TINY)
    sft, rft = cfg.sft_trl_args(), cfg.rft_trl_args()
    # TRL's GPU defaults (bf16, activation checkpointing, lr 1e-6) are replaced on this CPU machine
    assert sft["bf16"] is False and sft["activation_checkpointing"] is False and sft["use_cpu"] is True
    assert sft["report_to"] == "none" and sft["logging_steps"] == 1
    # the config's trl: mapping wins over the defaults
    assert sft["max_steps"] == 2 and rft["max_steps"] == 2
    # generation settings come from the stage, not from trl:
    assert (rft["num_generations"], rft["max_completion_length"]) == (2, 8)
    # input paths resolve against the config's directory, output_dir against the working directory
    assert cfg.data.train.resolve() == (REPO / "examples/tiny/train.jsonl").resolve()
    assert cfg.output_dir == Path("runs/tiny")


def test_trl_args_build_real_trl_configs(tmp_path):
    from trl import GRPOConfig, SFTConfig

    cfg = load_config(TINY)
    sft = SFTConfig(**cfg.sft_trl_args(tmp_path / "s"))
    grpo = GRPOConfig(**cfg.rft_trl_args(tmp_path / "r"))
    assert sft.learning_rate == 2e-4 and not sft.gradient_checkpointing
    assert grpo.num_generations == 2 and grpo.learning_rate == 1e-4 and grpo.seed == 0


def test_output_dir_override_and_resolved_dict(tmp_path):
    cfg = load_config(TINY, output_dir=tmp_path / "x")
    assert cfg.output_dir == tmp_path / "x"
    d = cfg.to_dict()
    # every section is written out with its defaults, so the run records what it used
    assert d["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}
    assert d["eval"]["pass_threshold"] == 1.0 and d["scoring"]["executor"] == "local"
    yaml.safe_dump(d)  # serialisable


def test_schema_is_valid_json_schema_with_help_text():
    from jsonschema import Draft202012Validator

    schema = run_schema()
    Draft202012Validator.check_schema(schema)
    # every top-level key documents itself (editors show this text)
    assert all("description" in v for v in schema["properties"].values())


def test_shipped_schema_is_the_generated_one():
    # rft/config/run.schema.json is generated from the field declarations; editing a field
    # without regenerating (python -m rft.config.schema --write) fails here
    from rft.config.schema import SCHEMA_PATH, render

    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), "run `python -m rft.config.schema --write`"
    assert json.loads(SCHEMA_PATH.read_text()) == run_schema()


def test_every_config_field_has_help_text():
    import dataclasses

    missing = [
        f"{cls.__name__}.{f.name}"
        for cls in (*SECTIONS, RunConfig)
        for f in dataclasses.fields(cls)
        if not str(f.metadata.get("help") or "").strip()
    ]
    assert missing == []


def test_schema_check_command_reports_a_stale_file(tmp_path, monkeypatch):
    from rft.config import schema

    assert schema.main(["--check"]) == 0
    stale = tmp_path / "run.schema.json"
    stale.write_text("{}\n")
    monkeypatch.setattr(schema, "SCHEMA_PATH", stale)
    assert schema.main(["--check"]) == 1
    assert schema.main(["--write"]) == 0 and stale.read_text() == schema.render()


def test_schema_defaults_are_the_dataclass_defaults():
    # one definition: the schema's default for a key is the value a config without it gets
    props = run_schema()["properties"]
    defaults = ScoringOptions()
    for name, prop in props["scoring"]["properties"].items():
        assert prop["default"] == getattr(defaults, name), name
    assert props["stages"]["properties"]["rft"]["properties"]["num_generations"]["default"] == 4
    assert props["output_dir"]["default"] == "runs/run"


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"num_workers": 0}, "scoring.num_workers"),  # the schema's minimum: 1
        ({"error_budget": 1.5}, "scoring.error_budget"),  # a share: at most 1
        ({"default_timeout": 0}, "scoring.default_timeout"),  # exclusive minimum 0
        ({"executor": "rey"}, "scoring.executor"),  # one of local, ray
    ],
)
def test_sections_built_in_code_check_the_same_constraints(kwargs, key):
    with pytest.raises(ConfigError) as info:
        ScoringOptions(**kwargs)
    assert info.value.key == key
    assert ScoringOptions(default_timeout=None).default_timeout is None  # null: no limit


def test_scoring_options_are_shared_with_the_scoring_engine():
    # the settings moved to rft.config; the scoring engine's name is the same class
    import rft.scoring

    assert rft.scoring.ScoringOptions is ScoringOptions


@pytest.mark.parametrize(
    "edit, key, fragments",
    [
        # a typo at the top level suggests the right key
        (lambda c: c.update(stagse=c.pop("stages")), "stagse", ["unknown key 'stagse'", "did you mean 'stages'"]),
        # nested typo: the key path names where it is
        (lambda c: c["stages"]["rft"].update(temprature=0.7), "stages.rft.temprature", ["did you mean 'temperature'"]),
        # wrong type names the expected type and the value
        (lambda c: c.update(seed="abc"), "seed", ["expected integer", "'abc'"]),
        # enum with a close match
        (lambda c: c.update(scoring={"executor": "rey"}), "scoring.executor", ["did you mean 'ray'"]),
        # scoring keys are checked against ScoringOptions' fields
        (lambda c: c.update(scoring={"num_worker": 2}), "scoring.num_worker", ["did you mean 'num_workers'"]),
        # a required key is missing
        (lambda c: c.pop("data"), None, ["missing required key 'data'"]),
        # TRL arguments are checked against trl.GRPOConfig's fields
        (
            lambda c: c["stages"]["rft"]["trl"].update(learning_rat=1e-4),
            "stages.rft.trl.learning_rat",
            ["did you mean 'learning_rate'"],
        ),
        # arguments rftkit owns are redirected to where they belong
        (
            lambda c: c["stages"]["rft"]["trl"].update(num_generations=4),
            "stages.rft.trl.num_generations",
            ["stages.rft.num_generations"],
        ),
        # rft needs graders
        (lambda c: c.pop("graders"), "graders", ["needs graders"]),
        # GRPO groups must fit the batch
        (
            lambda c: c["stages"]["rft"].update(num_generations=3, trl={"per_device_train_batch_size": 4}),
            "stages.rft.trl.per_device_train_batch_size",
            ["multiple of num_generations"],
        ),
        # all stages disabled
        (lambda c: c["stages"]["rft"].update(enabled=False), "stages", ["no stage is enabled"]),
    ],
)
def test_config_errors_name_file_key_and_fix(tmp_path, edit, key, fragments):
    cfg = yaml.safe_load(BASE)
    edit(cfg)
    path = write(tmp_path, yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    if key:
        assert info.value.key == key
    for frag in fragments:
        assert frag in msg, msg


def test_error_points_at_the_yaml_line(tmp_path):
    path = write(tmp_path, BASE.replace("    num_generations: 2\n", "    num_generations: 2\n    tmperature: 1\n"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # line 11 of the file holds the misspelled key
    assert f"{path}:11:" in str(info.value)


def test_unknown_grader_is_a_config_error(tmp_path):
    path = write(tmp_path, BASE.replace("name: exact_match", "name: exact_mach"))
    cfg = load_config(path)
    with pytest.raises(ConfigError, match="did you mean 'exact_match'") as info:
        cfg.grader_set()
    assert info.value.key == "graders[0].name"


def test_graders_from_a_file_path(tmp_path):
    write(tmp_path, "graders:\n  - name: exact_match\n    weight: 2\n", "graders.yaml")
    path = write(tmp_path, BASE.replace("graders:\n  - name: exact_match\n", "graders: graders.yaml\n"))
    gs = load_config(path).grader_set()
    assert gs.ids == ["exact_match"] and gs.weights == [2.0]


def test_config_that_is_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(["model", "data"], source="x.yaml")


# ---------------------------------------------------------------------------
# through the CLI: --dry-run validates everything without training
# ---------------------------------------------------------------------------


def test_dry_run_prints_the_plan():
    res = CliRunner().invoke(app, ["train", str(TINY), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    # 24 training rows with references and 4 held-out rows ship in examples/tiny
    assert plan["data"]["train_rows"] == 24 and plan["data"]["eval_rows"] == 4
    assert [g["id"] for g in plan["graders"]] == ["exact_match", "brevity"]
    assert set(plan["stages"]) == {"sft", "rft"}


def test_dry_run_fails_when_a_grader_input_is_missing_from_the_data(tmp_path):
    # prompt/answer rows without the `answer` column exact_match needs
    (tmp_path / "train.jsonl").write_text('{"prompt": "2+2?", "target": "4"}\n' * 4)
    path = write(tmp_path, BASE)
    res = CliRunner().invoke(app, ["train", str(path), "--dry-run"])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "exact_match" in out and "needs column 'answer'" in out and "target" in out


def test_dry_run_reports_config_errors_with_exit_code_2(tmp_path):
    path = write(tmp_path, BASE.replace("seed: 3", "sed: 3"))
    res = CliRunner().invoke(app, ["train", str(path), "--dry-run"])
    assert res.exit_code == 2
    assert "did you mean 'seed'" in " ".join(res.output.split())


# ---------------------------------------------------------------------------
# the `model:` key: what a reference resolves to
# ---------------------------------------------------------------------------


def test_model_references_resolve_to_files(tmp_path):
    from rft.models.resolve import resolve_model

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    gg = tmp_path / "gg"
    gg.mkdir()
    (gg / "m.Q4.gguf").write_bytes(b"GGUF")
    # (reference, expected kind, expected gguf_file): a dir with config.json is an HF model; a
    # *.gguf file or a dir with exactly one is GGUF; tiny:DIR is a test model relative to base_dir
    cases = [
        ("hf", "hf", None),
        ("gg/m.Q4.gguf", "gguf", "m.Q4.gguf"),
        ("gg", "gguf", "m.Q4.gguf"),
        ("tiny:t", "tiny", None),
    ]
    for ref, kind, gguf in cases:
        r = resolve_model(ref, base_dir=tmp_path, create=False)
        assert (r.kind, r.gguf_file) == (kind, gguf), ref
    assert resolve_model("tiny:t", base_dir=tmp_path, create=False).path == tmp_path / "t"


def test_model_references_that_resolve_to_nothing(tmp_path):
    from rft.models.resolve import resolve_model

    (tmp_path / "empty").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.gguf").write_bytes(b"")
    (tmp_path / "two" / "b.gguf").write_bytes(b"")
    for ref, fragment in [
        ("nope/model", "never downloaded"),  # not on disk: no hub fallback, says so
        ("empty", "without config.json"),
        ("two", "pick one with model.gguf_file"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            resolve_model(ref, base_dir=tmp_path, create=False)


def test_dry_run_names_a_missing_model(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "2+2?", "answer": "4"}\n' * 4)
    path = write(tmp_path, BASE.replace("model: tiny", "model: ./missing-model"))
    res = CliRunner().invoke(app, ["train", str(path), "--dry-run"])
    out = " ".join(res.output.split())
    # the message names the config file, the key and what was tried
    assert res.exit_code == 2 and f"{path}: model:" in out and "missing-model" in out and "never downloaded" in out


def test_sft_alone_needs_graders_only_for_evaluation(tmp_path):
    cfg = yaml.safe_load(BASE)
    cfg["stages"] = {"sft": {"trl": {"max_steps": 1}}}
    del cfg["graders"]
    # SFT learns from references; graders are needed only to evaluate
    with pytest.raises(ConfigError, match=r"evaluation \(eval.enabled\) needs graders"):
        load_config(write(tmp_path, yaml.safe_dump(cfg)))
    cfg["eval"] = {"enabled": False}
    loaded = load_config(write(tmp_path, yaml.safe_dump(cfg)))
    assert loaded.rft is None and loaded.sft is not None and loaded.graders is None
