"""The `rft` command's basics: light imports, plugin and grader listings."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from rft.cli.main import app

runner = CliRunner()


def test_import_rft_and_cli_stay_light():
    # `rft --help` must answer instantly: nothing heavy may load with the CLI or the grader plugins
    code = (
        "import sys, rft, rft.cli.main\n"
        "from rft.plugins.manager import get_plugin_manager, get_registry\n"
        "get_registry(get_plugin_manager())\n"
        "heavy = [m for m in ('torch', 'ray', 'trl', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("grade", "graders", "plugins"):
        assert cmd in result.output


def test_plugins_json_lists_builtins_with_version_and_hooks():
    result = runner.invoke(app, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert "graders.strings" in rows
    assert rows["graders.strings"]["hooks"] == ["rft_register_graders"]
    assert rows["graders.strings"]["version"]


def test_graders_json_names_plugin_and_inputs(tmp_path):
    plugin = tmp_path / "extra.py"
    plugin.write_text(
        "import rft\n"
        "@rft.grader\n"
        "def polite(completion: str, greeting: str) -> float:\n"
        "    '''1.0 when the completion includes the greeting.'''\n"
        "    return float(greeting in completion)\n"
        "@rft.hookimpl\n"
        "def rft_register_graders(register):\n"
        "    register(polite)\n"
    )
    result = runner.invoke(app, ["graders", "--json", "--plugin", str(plugin)])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["polite"]["plugin"] == str(plugin.resolve())
    assert rows["polite"]["inputs"] == ["completion", "greeting"]
    assert rows["polite"]["description"] == "1.0 when the completion includes the greeting."
    assert rows["exact_match"]["plugin"] == "graders.strings"


def test_unknown_plugin_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["graders", "--plugin", str(tmp_path / "nope.py")])
    assert result.exit_code == 2
    assert "plugin file not found" in result.output
