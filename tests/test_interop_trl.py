"""TRL reward functions, unchanged: TRL's own `trl.rewards` give the same numbers through
`rft grade`, a tiny GRPO run and eval as when called directly the way GRPOTrainer calls them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from helpers import read_jsonl
from typer.testing import CliRunner

from rft.cli.main import app
from rft.core import OutcomeKind, Sample, as_grader

pytest.importorskip("trl.rewards")
pytest.importorskip("math_verify")

#: Every function `trl.rewards` exports, with the factory parameters of the `get_*` ones.
TRL_FUNCTIONS: dict[str, dict[str, Any]] = {
    "accuracy_reward": {},
    "reasoning_accuracy_reward": {},
    "think_format_reward": {},
    "get_soft_overlong_punishment": {"max_completion_len": 12, "soft_punish_cache": 6},
    "get_cosine_scaled_reward": {"max_len": 16},
    "get_repetition_penalty_reward": {"ngram_size": 2},
}

ROWS = [
    {"prompt": [{"role": "user", "content": "One third as a fraction?"}], "solution": r"\frac{1}{3}"},
    {"prompt": [{"role": "user", "content": "One third as a fraction?"}], "solution": r"\frac{1}{3}"},
    {"prompt": [{"role": "user", "content": "2 + 2?"}], "solution": "4"},
    {"prompt": [{"role": "user", "content": "3 + 4?"}], "solution": "7"},
    {"prompt": [{"role": "user", "content": "Name a colour."}], "solution": "a colour"},
]
COMPLETIONS = [
    r"<think>one over three</think> The answer is \boxed{\frac{1}{3}}",
    r"The answer is \boxed{\frac{1}{2}}",
    r"<think>two and two</think> \boxed{4}",
    "seven seven seven seven seven seven seven seven seven seven seven seven seven seven",
    r"<think>hmm</think> \boxed{red}",
]


def trl_function(name: str) -> Any:
    """TRL's own function (a factory's product for the `get_*` ones), never a copy."""
    import trl.rewards

    fn = getattr(trl.rewards, name)
    return fn(**TRL_FUNCTIONS[name]) if TRL_FUNCTIONS[name] else fn


def call_like_grpo(name: str, prompts: list[Any], completions: list[Any], ids: list[list[int]], **columns: Any):
    """Call a TRL function the way GRPOTrainer._calculate_rewards does (outside training)."""
    return trl_function(name)(
        prompts=prompts,
        completions=completions,
        completion_ids=ids,
        trainer_state=None,
        log_extra=lambda column, values: None,
        log_metric=lambda name, value: None,
        **columns,
    )


def same(got: list[float | None], want: list[float | None]) -> bool:
    return len(got) == len(want) and all(
        (g is None and w is None) or (g is not None and w is not None and math.isclose(g, w, abs_tol=1e-9))
        for g, w in zip(got, want)
    )


def grader_set_yaml(extra: str = "") -> str:
    entries = []
    for name, params in TRL_FUNCTIONS.items():
        entries.append({"name": name, **params})
    return yaml.safe_dump({"plugins": ["trl.rewards"], "graders": entries}, sort_keys=False) + extra


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from rft.models.resolve import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def test_every_function_of_trl_rewards_is_tested():
    import inspect

    import trl.rewards

    exported = {n for n in trl.rewards.__all__ if not inspect.ismodule(getattr(trl.rewards, n))}  # type: ignore[attr-defined]
    assert exported == set(TRL_FUNCTIONS), "a new trl.rewards function: add it (and its factory parameters) here"


# ---------------------------------------------------------------------------
# rft grade
# ---------------------------------------------------------------------------


def write_inputs(tmp: Path, completions: list[Any] | None = None) -> tuple[Path, Path, Path]:
    data, comp, graders = tmp / "rows.jsonl", tmp / "completions.jsonl", tmp / "graders.yaml"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    comp.write_text("".join(json.dumps(c) + "\n" for c in (completions or COMPLETIONS)))
    graders.write_text(grader_set_yaml())
    return data, comp, graders


def grade(*args: str):
    return CliRunner().invoke(app, ["grade", *args], catch_exceptions=False)


def scores_by_grader(out: Path) -> dict[str, list[float | None]]:
    recs = read_jsonl(out)
    by: dict[str, list[float | None]] = {}
    for rec in recs:
        for gid, o in rec["graders"].items():
            assert o["kind"] in ("score", "not_applicable"), (gid, o)
            by.setdefault(gid, []).append(o["score"])
    return by


@pytest.mark.slow
def test_rft_grade_gives_trl_functions_the_numbers_of_a_direct_call(tmp_path, tiny_model, tokenizer):
    data, comp, graders = write_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    res = grade("--data", str(data), "--completions", str(comp), "--graders", str(graders), "--model", f"tiny:{tiny_model}", "--out", str(out), "--workers", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    got = scores_by_grader(out)
    # conversational rows: TRL passes message lists; completion_ids from the run's tokenizer
    prompts = [r["prompt"] for r in ROWS]
    completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    ids = tokenizer(COMPLETIONS, add_special_tokens=False)["input_ids"]
    solution = [r["solution"] for r in ROWS]
    for name in TRL_FUNCTIONS:
        want = call_like_grpo(name, prompts, completions, ids, solution=solution)
        assert same(got[name], want), (name, got[name], want)
    # the numbers are not all alike: the comparison means something
    assert got["accuracy_reward"][:3] == [1.0, 0.0, 1.0] and got["think_format_reward"][:2] == [1.0, 0.0]
    assert got["get_soft_overlong_punishment"][3] == -1.0


def test_completion_ids_from_the_completions_file_need_no_tokenizer(tmp_path):
    data, comp, graders = write_inputs(tmp_path)
    ids = [[1, 2, 3], [4] * 9, [5] * 20, [1, 2] * 8, [7]]
    comp.write_text(
        "".join(json.dumps({"completion": c, "completion_ids": i}) + "\n" for c, i in zip(COMPLETIONS, ids))
    )
    graders.write_text(
        yaml.safe_dump(
            {
                "plugins": ["trl.rewards"],
                "graders": [
                    {"name": "get_soft_overlong_punishment", **TRL_FUNCTIONS["get_soft_overlong_punishment"]},
                    {"name": "get_repetition_penalty_reward", **TRL_FUNCTIONS["get_repetition_penalty_reward"]},
                ],
            }
        )
    )
    out = tmp_path / "out.jsonl"
    res = grade("--data", str(data), "--completions", str(comp), "--graders", str(graders), "--out", str(out), "--workers", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    got = scores_by_grader(out)
    for name in ("get_soft_overlong_punishment", "get_repetition_penalty_reward"):
        assert same(got[name], trl_function(name)(completion_ids=ids)), name
    assert got["get_soft_overlong_punishment"][:3] == [0.0, -0.5, -1.0]


def test_a_function_asking_for_completion_ids_without_a_tokenizer_is_a_clear_error(tmp_path):
    data, comp, graders = write_inputs(tmp_path)
    res = grade("--data", str(data), "--completions", str(comp), "--graders", str(graders))
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "asks for completion_ids" in text and "--tokenizer" in text and "--model" in text


# ---------------------------------------------------------------------------
# in-process: the row's format, columns, trainer_state, log_metric
# ---------------------------------------------------------------------------

seen: dict[str, Any] = {}


def recorder(prompts, completions, answer, trainer_state, log_extra, log_metric, **kwargs):
    """A TRL-style function recording what it was passed."""
    seen.update(prompts=prompts, completions=completions, answer=answer, state=trainer_state, kwargs=kwargs)
    log_extra("answer", answer)  # accepted outside training
    log_metric("batch_size", len(completions))
    text = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(t.strip() == a) for t, a in zip(text, answer)]


@pytest.mark.parametrize(
    "row, prompt, completion",
    [
        ({"question": "2+2?", "answer": "4", "guess": "4"}, "2+2?", "4"),  # standard: strings
        (
            {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4", "guess": "4"},
            [{"role": "user", "content": "2+2?"}],
            [{"role": "assistant", "content": "4"}],
        ),  # conversational: messages
        (
            {"messages": [{"role": "user", "content": "2+2?"}], "answer": "4", "guess": "4"},
            [{"role": "user", "content": "2+2?"}],
            [{"role": "assistant", "content": "4"}],
        ),
    ],
)
def test_trl_functions_get_prompts_and_completions_in_the_rows_format(row, prompt, completion):
    from rft.cli.grade_cmd import load_samples

    [(_, sample)] = load_samples([row], completions=None, field="guess", data_file="d.jsonl")
    (out,) = as_grader(recorder).grade([sample])
    assert out.kind is OutcomeKind.SCORE and out.score == 1.0
    assert seen["prompts"] == [prompt] and seen["completions"] == [completion] and seen["answer"] == ["4"]
    assert seen["state"] is None  # outside training
    assert out.metrics == {"batch_size": 1.0}  # log_metric: a sub-metric, logged per grader in training
    # the other dataset columns come as lists, as GRPOTrainer passes them
    assert all(isinstance(v, list) for v in seen["kwargs"].values())


def test_accuracy_reward_scores_conversational_samples_instead_of_failing():
    from trl.rewards import accuracy_reward

    samples = [
        Sample(r"\boxed{\frac{1}{3}}", {"solution": r"\frac{1}{3}"}, prompt=[{"role": "user", "content": "q"}]),
        Sample(r"\boxed{\frac{1}{2}}", {"solution": r"\frac{1}{3}"}, prompt=[{"role": "user", "content": "q"}]),
    ]
    assert [o.score for o in as_grader(accuracy_reward).grade(samples)] == [1.0, 0.0]


def test_trl_samples_pickle_with_what_trl_passed():
    import pickle

    s = Sample(
        "4",
        {"answer": "4"},
        prompt=[{"role": "user", "content": "2+2?"}],
        completion_messages=[{"role": "assistant", "content": "4", "tool_calls": []}],
        completion_ids=[7, 8],
        trainer_state=SimpleNamespace(global_step=3),
        step=3,
    )
    back = pickle.loads(pickle.dumps(s))
    assert back.trl_completion == s.completion_messages and back.completion_ids == [7, 8]
    assert back.trainer_state.global_step == 3
    assert Sample.from_dict(s.to_dict()).trl_completion == s.completion_messages


def test_cache_keys_on_completion_ids_and_the_step_a_function_asks_for():
    from rft.scoring.cache import cache_key

    g = as_grader(trl_function("get_soft_overlong_punishment"))
    a, b = Sample("x", completion_ids=[1] * 3), Sample("x", completion_ids=[1] * 11)
    assert cache_key("id", g, a) != cache_key("id", g, b)

    def by_step(completions, trainer_state, **kwargs):
        return [float(trainer_state.global_step)] * len(completions)

    s = as_grader(by_step)
    assert cache_key("id", s, Sample("x", step=1)) != cache_key("id", s, Sample("x", step=2))


# ---------------------------------------------------------------------------
# a tiny GRPO run and eval
# ---------------------------------------------------------------------------

STEP_PLUGIN = '''
def step_seen(completions, trainer_state, log_metric, **kwargs):
    """A TRL-style function shaping by the training step (None outside training)."""
    log_metric("seen", float(len(completions)))
    return [-1.0 if trainer_state is None else float(trainer_state.global_step) for _ in completions]
'''


def examples():
    from rft.data import to_example

    return [to_example(dict(r)) for r in ROWS]


def build_set(tmp: Path):
    from rft.plugins import grader_set_from_config

    (tmp / "step_plugin.py").write_text(STEP_PLUGIN)
    cfg = yaml.safe_load(grader_set_yaml())
    cfg["plugins"].append(str(tmp / "step_plugin.py"))
    cfg["graders"].append({"name": "step_seen", "weight": 0})
    return grader_set_from_config(cfg)


def assert_direct_numbers(samples: list[Sample], result: Any) -> None:
    prompts = [s.trl_prompt for s in samples]
    completions = [s.trl_completion for s in samples]
    ids = [s.completion_ids or [] for s in samples]
    solution = [s.item["solution"] for s in samples]
    assert all(isinstance(c, list) and c[0]["role"] == "assistant" for c in completions)  # chat rows
    assert all(isinstance(i, list) for i in ids)
    for name in TRL_FUNCTIONS:
        got = [o.score for o in (per[name] for per in result.outcomes)]
        assert all(per[name].kind in (OutcomeKind.SCORE, OutcomeKind.NOT_APPLICABLE) for per in result.outcomes)
        assert same(got, call_like_grpo(name, prompts, completions, ids, solution=solution)), name


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_tiny_grpo_run_gives_trl_functions_what_trl_passes(tmp_path, tiny_model):
    from rft.models.resolve import ResolvedModel, load_model
    from rft.scoring import ScoringOptions, make_executor
    from rft.train.grpo import build_grpo_trainer
    from rft.train.rewards import RewardBridge

    gs = build_set(tmp_path)
    model, tok = load_model(ResolvedModel("tiny", tiny_model, kind="tiny"))
    batches: list[tuple[list[Sample], Any]] = []
    with make_executor(gs, "local", ScoringOptions(num_workers=1)) as ex:
        bridge = RewardBridge(
            gs, ex, rows=[e.row for e in examples()], on_scored=lambda s, r, _: batches.append((s, r))
        )
        args = {
            "output_dir": str(tmp_path / "out"),
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "num_generations": 2,
            "max_completion_length": 8,
            "use_cpu": True,
            "bf16": False,
            "report_to": "none",
            "save_strategy": "no",
            "activation_checkpointing": False,
            "logging_steps": 1,
            "log_completions": False,
            "seed": 0,
        }
        trainer = build_grpo_trainer(model, tok, examples(), bridge, trl_args=args)
        trainer.train()
    assert len(batches) == 2
    for step, (samples, result) in enumerate(batches):
        assert_direct_numbers(samples, result)
        # what TRL passed reaches the grader: token ids of the generation, the trainer's state
        assert all(len(s.completion_ids or []) <= 8 for s in samples)
        assert result.scores("step_seen") == [float(step)] * len(samples)
        assert result.metrics["graders/step_seen/metrics/seen"] > 0


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_eval_gives_trl_functions_the_numbers_of_a_direct_call(tmp_path, tiny_model):
    from rft.models.resolve import ResolvedModel, load_model
    from rft.scoring import ScoringOptions, make_executor
    from rft.train.eval import evaluate

    gs = build_set(tmp_path)
    model, tok = load_model(ResolvedModel("tiny", tiny_model, kind="tiny"))
    settings = SimpleNamespace(max_rows=None, do_sample=False, temperature=1.0, batch_size=4, pass_threshold=0.5)
    captured: dict[str, Any] = {}
    with make_executor(gs, "local", ScoringOptions(num_workers=1)) as ex:

        class Capturing:
            def score(self, samples, **kw):
                captured["samples"] = samples
                captured["result"] = ex.score(samples, **kw)
                return captured["result"]

        summary = evaluate(model, tok, examples(), gs, Capturing(), settings, max_new_tokens=8, progress=False)
    assert summary["n"] == len(ROWS)
    samples = captured["samples"]
    assert [s.completion_ids for s in samples] == tok([s.completion for s in samples], add_special_tokens=False)[
        "input_ids"
    ]
    assert_direct_numbers(samples, captured["result"])
    assert captured["result"].scores("step_seen") == [-1.0] * len(ROWS)  # no trainer state in eval


@pytest.mark.slow
def test_rft_grade_takes_the_tokenizer_and_graders_from_a_run_config(tmp_path, tiny_model, tokenizer):
    from helpers import tiny_config, write_config

    data, comp, _ = write_inputs(tmp_path)
    cfg = tiny_config(tmp_path, tiny_model)
    cfg["graders"] = {
        "plugins": ["trl.rewards"],
        "graders": [{"name": "get_soft_overlong_punishment", **TRL_FUNCTIONS["get_soft_overlong_punishment"]}],
    }
    config = write_config(tmp_path, cfg)
    out = tmp_path / "out.jsonl"
    res = grade("--data", str(data), "--completions", str(comp), "--config", str(config), "--out", str(out), "--workers", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    ids = tokenizer(COMPLETIONS, add_special_tokens=False)["input_ids"]
    want = trl_function("get_soft_overlong_punishment")(completion_ids=ids)
    assert same(scores_by_grader(out)["get_soft_overlong_punishment"], want)
