"""Naming a module is enough: `plugins: [trl.rewards]` or `--plugin file.py` plus a grader name,
without a `rft_register_graders` hook."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rft.cli.main import app
from rft.core import Sample
from rft.core.errors import ConfigError, PluginError
from rft.plugins import get_plugin_manager, get_registry, grader_set_from_config

runner = CliRunner()

#: The README's plugin example: four lines, no hook.
FOUR_LINES = """import rft

@rft.grader
def shouty(completion: str) -> float:
    return float(completion.isupper())
"""

NO_HOOK = '''
import rft
from graders.strings import exact_match  # a built-in, imported: stays the built-in's


@rft.grader
def has_digit(completion: str) -> float:
    """1.0 when the completion holds a digit."""
    return float(any(c.isdigit() for c in completion))


@rft.grader(range=(0, 1))
class StartsWith:
    """1.0 when the completion starts with the prefix."""

    def __init__(self, prefix: str = "A"):
        self.prefix = prefix

    def __call__(self, completion: str) -> float:
        return float(completion.startswith(self.prefix))


@rft.grader
def _private(completion: str) -> float:
    return 0.0


def plain_reward(completions, **kwargs):
    """A TRL-style function: usable by name."""
    return [float(len(c) < 5) for c in completions]
'''

WITH_HOOK = """
import rft


@rft.grader
def kept(completion: str) -> float:
    return 1.0


@rft.grader
def left_out(completion: str) -> float:
    return 0.0


@rft.hookimpl
def rft_register_graders(register):
    register(kept)
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_four_line_plugin_of_the_readme_works(tmp_path):
    plugin = write(tmp_path / "my_graders.py", FOUR_LINES)
    assert len([line for line in FOUR_LINES.splitlines() if line.strip()]) == 4
    gs = grader_set_from_config({"plugins": [str(plugin)], "graders": [{"name": "shouty"}]})
    assert [o.score for o in gs["shouty"].grader.grade([Sample("HEY"), Sample("hey")])] == [1.0, 0.0]


def test_module_level_graders_of_a_file_without_hook_are_registered(tmp_path):
    plugin = write(tmp_path / "nohook.py", NO_HOOK)
    registry = get_registry(get_plugin_manager([str(plugin)]))
    assert "has_digit" in registry and "starts_with" in registry and "_private" not in registry
    assert registry.get("has_digit").plugin == str(plugin.resolve())
    assert registry.get("exact_match").plugin == "graders.strings"  # imported, not re-registered: no clash
    gs = grader_set_from_config(
        {
            "plugins": [str(plugin)],
            "graders": [{"name": "has_digit"}, {"name": "starts_with", "prefix": "B"}, {"name": "plain_reward"}],
        }
    )
    samples = [Sample("B1"), Sample("hello world")]
    for gid in ("has_digit", "starts_with", "plain_reward"):
        assert [o.score for o in gs[gid].grader.grade(samples)] == [1.0, 0.0], gid


def test_an_explicit_hook_still_decides(tmp_path):
    plugin = write(tmp_path / "hooked.py", WITH_HOOK)
    registry = get_registry(get_plugin_manager([str(plugin)]))
    assert "kept" in registry and "left_out" not in registry
    with pytest.raises(ConfigError, match="unknown grader 'left_out'"):
        grader_set_from_config({"plugins": [str(plugin)], "graders": [{"name": "left_out"}]})


def test_a_plain_module_s_functions_resolve_by_name():
    pytest.importorskip("trl.rewards")
    gs = grader_set_from_config(
        {
            "plugins": ["trl.rewards"],
            "graders": [
                {"name": "accuracy_reward"},
                {"name": "get_repetition_penalty_reward", "ngram_size": 2},
            ],
        }
    )
    assert gs["accuracy_reward"].grader.plugin == "trl.rewards" and gs["accuracy_reward"].grader.trl_style
    assert gs["get_repetition_penalty_reward"].grader.inputs == ("completion_ids",)
    # a misspelled name suggests the module's functions
    with pytest.raises(ConfigError, match="did you mean 'accuracy_reward'"):
        grader_set_from_config({"plugins": ["trl.rewards"], "graders": [{"name": "acuracy_reward"}]})
    # a factory without its required parameters says what it needs
    with pytest.raises(ConfigError, match="factory of reward functions.*max_completion_len"):
        grader_set_from_config({"plugins": ["trl.rewards"], "graders": [{"name": "get_soft_overlong_punishment"}]})


def test_a_module_on_the_path_works_with_dash_dash_plugin(tmp_path, monkeypatch, fresh_plugins):
    write(tmp_path / "shouty_mod.py", FOUR_LINES)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "rows.jsonl").write_text(json.dumps({"prompt": "Say hi", "answer": "HI"}) + "\n")
    (tmp_path / "c.jsonl").write_text('"HI"\n')
    (tmp_path / "g.yaml").write_text("graders:\n  - name: shouty\n")
    res = runner.invoke(
        app,
        ["grade", "--data", str(tmp_path / "rows.jsonl"), "--completions", str(tmp_path / "c.jsonl")]
        + ["--graders", str(tmp_path / "g.yaml"), "--plugin", "shouty_mod", "--executor", "local", "--workers", "1"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "shouty" in res.output
    sys.modules.pop("shouty_mod", None)


def test_two_modules_with_the_same_function_name_are_ambiguous(tmp_path, monkeypatch, fresh_plugins):
    write(tmp_path / "mod_a.py", "def reward(completions, **kw):\n    return [1.0 for _ in completions]\n")
    write(tmp_path / "mod_b.py", "def reward(completions, **kw):\n    return [0.0 for _ in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="'reward' is ambiguous"):
        grader_set_from_config({"plugins": ["mod_a", "mod_b"], "graders": [{"name": "reward"}]})
    for m in ("mod_a", "mod_b"):
        sys.modules.pop(m, None)


def test_rft_graders_lists_a_plain_module_s_functions():
    pytest.importorskip("trl.rewards")
    res = runner.invoke(app, ["graders", "--plugin", "trl.rewards", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows["accuracy_reward"]["plugin"] == "trl.rewards" and rows["accuracy_reward"]["kind"] == "module function"
    assert "exact_match" in rows


# ---------------------------------------------------------------------------
# the README's examples are true
# ---------------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks(section: str, lang: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.index("\n## ", start + 1)
    parts = text[start:end].split(f"```{lang}\n")[1:]
    return [p.split("```")[0] for p in parts]


def test_readme_plugin_example_is_four_lines(tmp_path):
    block = readme_blocks("Plugins", "python")[0]
    assert len([line for line in block.splitlines() if line.strip() and not line.startswith("#")]) == 4
    plugin = write(tmp_path / "readme_plugin.py", block)
    gs = grader_set_from_config({"plugins": [str(plugin)], "graders": [{"name": "shouty"}]})
    assert [o.score for o in gs["shouty"].grader.grade([Sample("HEY")])] == [1.0]


def test_readme_bring_your_graders_examples_load_and_score():
    import yaml

    pytest.importorskip("trl.rewards")
    trl_set = grader_set_from_config(yaml.safe_load(readme_blocks("Bring your graders", "yaml")[0]))
    assert trl_set.ids == ["accuracy_reward", "think_format_reward", "get_soft_overlong_punishment"]
    (openai_json,) = (json.loads(b) for b in readme_blocks("Bring your graders", "json"))
    tool_name = grader_set_from_config(openai_json)["tool_name"].grader
    called = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    right, none = tool_name.grade(
        [Sample(called, {"expected_tool": "get_weather"}), Sample("no call", {"expected_tool": "get_weather"})]
    )
    assert (right.score, right.metrics["passed"]) == (1.0, 1.0)
    assert none.score == 0.0 and "output_tools[0]" in (none.reason or "")
    # the BFCL entry as a grader-set entry, with a BFCL possible answer and function description as is
    (bfcl_entry,) = yaml.safe_load(readme_blocks("Bring your graders", "yaml")[1])
    tool_set = grader_set_from_config({"graders": [bfcl_entry]})
    row = {
        "ground_truth": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["", "celsius"]}}],
        "function": [
            {
                "name": "get_weather",
                "parameters": {
                    "type": "dict",
                    "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
    }
    call = [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "paris, france"}'}}]
    wrong = [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'}}]
    outs = tool_set["tool_call"].grader.grade([Sample("", row, tool_calls=call), Sample("", row, tool_calls=wrong)])
    assert [o.score for o in outs] == [1.0, 0.0]  # BFCL's string normalisation; `unit` may be left out
