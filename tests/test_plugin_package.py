"""Plugins for real: an installed package's entry point, plugin files, clashes, typos, blocking.

The package test installs ``plugins/rft-textstats`` with pip into a temporary folder
(``--target``) and runs the ``rft`` command with that folder on ``PYTHONPATH``, so
discovery goes through a real ``*.dist-info/entry_points.txt`` and the virtual
environment stays untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rft.core import Sample
from rft.core.errors import PluginError
from rft.plugins import (
    clear_plugin_cache,
    get_plugin_manager,
    get_registry,
    grader_set_from_config,
    grader_set_from_file,
    list_plugins,
)
from rft.testing import check_grader

ROOT = Path(__file__).resolve().parents[1]
RFT = [sys.executable, "-m", "rft"]


def rft(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*RFT, *args], capture_output=True, text=True, timeout=120, cwd=cwd or ROOT, env={**os.environ, **(env or {})}
    )


@pytest.fixture(scope="module")
def installed_textstats(tmp_path_factory) -> Path:
    """plugins/rft-textstats installed by pip into a temporary folder; returns the folder."""
    work = tmp_path_factory.mktemp("textstats")
    src = work / "src"
    shutil.copytree(ROOT / "plugins/rft-textstats", src)  # pip writes build/ and *.egg-info beside the source
    target = work / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "rft_textstats").is_dir()
    return target


def with_path(target: Path, **env: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]), **env}


def test_installed_package_graders_appear_with_their_plugin_name(installed_textstats):
    proc = rft("graders", "--json", env=with_path(installed_textstats))
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["distinct_ngrams"]["plugin"] == "textstats"
    assert rows["word_count"]["plugin"] == "textstats"
    assert rows["math"]["plugin"] == "graders.mathematics"  # built-ins still there

    plugins = {p["name"]: p for p in json.loads(rft("plugins", "--json", env=with_path(installed_textstats)).stdout)}
    assert (plugins["textstats"]["package"], plugins["textstats"]["version"]) == ("rft-textstats", "0.1.0")


def test_without_the_install_the_graders_are_absent():
    proc = rft("graders", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "distinct_ngrams" not in {r["name"] for r in json.loads(proc.stdout)}


def test_rft_disable_plugins_blocks_the_installed_package(installed_textstats):
    proc = rft("graders", "--json", env=with_path(installed_textstats, RFT_DISABLE_PLUGINS="textstats"))
    assert proc.returncode == 0, proc.stderr
    assert "distinct_ngrams" not in {r["name"] for r in json.loads(proc.stdout)}


def test_installed_package_graders_work_in_rft_grade(installed_textstats, tmp_path):
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ("a", "b")))
    (tmp_path / "completions.jsonl").write_text(
        json.dumps({"completion": "the cat the cat"}) + "\n" + json.dumps({"completion": "one two three"}) + "\n"
    )
    (tmp_path / "graders.yaml").write_text(
        "graders:\n  - name: distinct_ngrams\n    n: 1\n  - name: word_count\n    max_words: 3\n"
    )
    out = tmp_path / "out.jsonl"
    proc = rft(
        "grade",
        "--data",
        "rows.jsonl",
        "--completions",
        "completions.jsonl",
        "--graders",
        "graders.yaml",
        "--out",
        str(out),
        env=with_path(installed_textstats),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    # "the cat the cat": 2 distinct of 4 words; 4 words > max 3. "one two three": all distinct, 3 words
    assert [r["graders"]["distinct_ngrams"]["score"] for r in results] == [0.5, 1.0]
    assert [r["graders"]["word_count"]["score"] for r in results] == [0.0, 1.0]


def test_the_plugin_package_keeps_the_grader_contract(installed_textstats, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_textstats))
    from rft_textstats import DistinctNgrams

    outcomes = check_grader(DistinctNgrams, [{"completion": "a b a b"}, {"completion": "a"}], params={"n": 2})
    assert [o.score for o in outcomes] == [2 / 3, None]  # ab, ba, ab: 2 distinct of 3; one word: no bigram


# -- plugin files -----------------------------------------------------------------------

GRADER_FILE = """
import rft

@rft.grader
def {name}(completion: str) -> float:
    return 1.0

@rft.hookimpl
def rft_register_graders(register):
    register({name})
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_two_plugins_registering_one_name_fail_naming_both(tmp_path):
    a = write(tmp_path / "first.py", GRADER_FILE.format(name="shared"))
    b = write(tmp_path / "second.py", GRADER_FILE.format(name="shared"))
    with pytest.raises(PluginError) as info:
        get_registry(get_plugin_manager([a, b], entry_points=False))
    msg = str(info.value)
    assert "'shared'" in msg and "first.py" in msg and "second.py" in msg and "RFT_DISABLE_PLUGINS" in msg


def test_a_plugin_clashing_with_a_builtin_names_the_builtin(tmp_path):
    p = write(tmp_path / "mine.py", GRADER_FILE.format(name="regex"))
    with pytest.raises(
        PluginError, match=r"'regex' is registered by plugin 'graders\.strings' and by plugin '.*mine\.py'"
    ):
        get_registry(get_plugin_manager([p], entry_points=False))


def test_a_misspelled_hook_is_an_error_with_the_right_name(tmp_path):
    p = write(tmp_path / "typo.py", "import rft\n\n@rft.hookimpl\ndef rft_register_grader(register):\n    pass\n")
    with pytest.raises(PluginError, match=r"unknown hook 'rft_register_grader'.*did you mean 'rft_register_graders'"):
        get_plugin_manager([p], entry_points=False)


def test_rft_disable_plugins_blocks_a_plugin_file_and_a_builtin(tmp_path, monkeypatch):
    p = write(tmp_path / "extra.py", GRADER_FILE.format(name="extra_grader"))
    assert "extra_grader" in get_registry(get_plugin_manager([p], entry_points=False))
    monkeypatch.setenv("RFT_DISABLE_PLUGINS", f"{Path(p).resolve()},graders.format")
    registry = get_registry(get_plugin_manager([p], entry_points=False))
    assert "extra_grader" not in registry
    assert "think_format" not in registry and "math" in registry  # only the blocked built-in is gone


# -- bring your own TRL reward function ---------------------------------------------------

TRL_PLUGIN = '''
import rft

def reward_len(completions, **kwargs):
    """TRL's documented example reward: closer to 20 characters is better."""
    return [-abs(20 - len(c)) for c in completions]

def reward_answer(prompts, completions, answer, **kwargs):
    return [1.0 if a in c else 0.0 for c, a in zip(completions, answer)]

@rft.hookimpl
def rft_register_graders(register):
    register(reward_len)
    register(reward_answer)
'''


def test_trl_reward_functions_register_unchanged_through_a_plugin_file(tmp_path):
    p = write(tmp_path / "trl_rewards.py", TRL_PLUGIN)
    gs = grader_set_from_config(
        {"graders": [{"name": "reward_len", "weight": 0.1}, {"name": "reward_answer"}]}, plugins=[p]
    )
    gs.check_inputs(["prompt", "answer"])  # `answer` is a column; prompts/completions are injected
    samples = [Sample("x" * 20, item={"answer": "7"}, prompt="p"), Sample("it is 7", item={"answer": "7"}, prompt="p")]
    lens = gs["reward_len"].grader.grade(samples)
    answers = gs["reward_answer"].grader.grade(samples)
    assert [o.score for o in lens] == [0.0, -13.0]
    assert [o.score for o in answers] == [0.0, 1.0]
    assert gs["reward_len"].grader.batched and gs["reward_len"].grader.plugin.endswith("trl_rewards.py")
    with pytest.raises(Exception, match="needs column 'answer'"):
        gs.check_inputs(["prompt"])


# -- the examples -------------------------------------------------------------------------


def test_five_line_example_is_five_lines_and_grades():
    path = ROOT / "examples/graders/five_lines.py"
    code = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith('"""')]
    assert len(code) == 5
    gs = grader_set_from_config({"graders": [{"name": "says_answer"}]}, plugins=[str(path)])
    outs = gs["says_answer"].grader.grade(
        [Sample("It is 19.", item={"answer": "19"}), Sample("It is 18.", item={"answer": "19"})]
    )
    assert [o.score for o in outs] == [1.0, 0.0]


def test_plugin_example_loads_from_a_grader_set_file_and_keeps_the_contract():
    gs = grader_set_from_file(ROOT / "examples/graders/keywords.yaml")
    assert gs.ids == ["keyword_coverage", "shows_work"]
    s = Sample("6 times 4 = 24, because boxes hold 6", item={})
    assert [gs[i].grader.grade([s])[0].score for i in gs.ids] == [1.0, 1.0]
    # check_grader pickles the grader: the plugin file's module must be importable by reference
    check_grader(gs["keyword_coverage"].grader, [{"completion": "times"}, {"completion": "nothing"}])


# -- one plugin manager per process, pluggy through its public API --------------------------


def test_the_plugin_manager_and_registry_are_built_once_per_set_of_plugins(tmp_path, fresh_plugins):
    p = write(tmp_path / "cached.py", GRADER_FILE.format(name="cached_grader"))
    pm = get_plugin_manager([p], entry_points=False)
    # the same plugins (a relative path to the same file included) and flags: the same manager and registry
    assert get_plugin_manager([str(Path(os.path.relpath(p)))], entry_points=False) is pm
    assert get_registry(pm) is get_registry(get_plugin_manager([p], entry_points=False))
    # other plugins, other flags or other blocked names: another manager
    assert get_plugin_manager(entry_points=False) is not pm
    assert get_plugin_manager([p], entry_points=False, builtins=False) is not pm
    clear_plugin_cache()
    assert get_plugin_manager([p], entry_points=False) is not pm


WRAPPER_FILE = """
import rft

CALLS = []


@rft.hookimpl(wrapper=True)
def rft_register_graders(register):
    register(wrapped_before)
    CALLS.append("before")
    result = yield
    CALLS.append("after")
    return result


@rft.grader
def wrapped_before(completion: str) -> float:
    return 1.0
"""


def test_a_hook_wrapper_around_rft_register_graders_runs_once_and_attribution_holds(tmp_path, fresh_plugins):
    plain = write(tmp_path / "plain.py", GRADER_FILE.format(name="plain_grader"))
    wrapper = write(tmp_path / "wrapper.py", WRAPPER_FILE)
    pm = get_plugin_manager([plain, wrapper], entry_points=False)
    registry = get_registry(pm)
    assert pm.get_plugin(str(Path(wrapper).resolve())).CALLS == ["before", "after"]
    assert registry.get("plain_grader").plugin == str(Path(plain).resolve())
    assert registry.get("wrapped_before").plugin == str(Path(wrapper).resolve())
    assert registry.get("exact_match").plugin == "graders.strings"


def test_a_plugin_whose_hook_raises_is_named(tmp_path, fresh_plugins):
    p = write(
        tmp_path / "broken.py",
        "import rft\n\n@rft.hookimpl\ndef rft_register_graders(register):\n    raise RuntimeError('boom')\n",
    )
    with pytest.raises(PluginError, match=r"plugin '.*broken\.py' failed in rft_register_graders: RuntimeError: boom"):
        get_registry(get_plugin_manager([p], entry_points=False))


def fake_distribution(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """An installed distribution ``dist`` 1.2.3 in folder ``site`` declaring ``rft`` entry points."""
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[rft]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def test_entry_points_load_through_pluggy_with_their_distribution(tmp_path, monkeypatch, fresh_plugins):
    (tmp_path / "fake_rft_plugin.py").write_text(GRADER_FILE.format(name="from_entry_point"))
    fake_distribution(tmp_path, "fake-rft-plugin", {"fakeplugin": "fake_rft_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = get_plugin_manager()
    assert get_registry(pm).get("from_entry_point").plugin == "fakeplugin"
    rows = {r["name"]: r for r in list_plugins(pm)}
    assert (rows["fakeplugin"]["package"], rows["fakeplugin"]["version"]) == ("fake-rft-plugin", "1.2.3")
    assert rows["fakeplugin"]["hooks"] == ["rft_register_graders"]
    monkeypatch.setenv("RFT_DISABLE_PLUGINS", "fakeplugin")
    assert "from_entry_point" not in get_registry(get_plugin_manager())


def test_a_failing_entry_point_names_itself_and_its_distribution(tmp_path, monkeypatch, fresh_plugins):
    fake_distribution(tmp_path, "broken-rft-plugin", {"brokenplugin": "no_such_module_for_rft:plugin"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    msg = str(info.value)
    assert "'brokenplugin'" in msg and "no_such_module_for_rft:plugin" in msg and "broken-rft-plugin" in msg
    assert "RFT_DISABLE_PLUGINS=brokenplugin" in msg
    monkeypatch.setenv("RFT_DISABLE_PLUGINS", "brokenplugin")
    assert "exact_match" in get_registry(get_plugin_manager())  # blocked: the rest loads


# -- plugin references that are neither a .py file nor a module ---------------------------


@pytest.mark.parametrize(
    "ref, exists",
    [
        ("x.txt", False),  # looks like a dotted module name: not importable
        ("notes.txt", True),  # a file in the working directory that is not Python
        ("./notes.txt", True),  # a path to a file that is not Python
        ("missing/plugin.py", False),  # a path to no file
        ("my-plugin", False),  # not a module name at all
    ],
)
def test_rft_graders_with_a_bad_plugin_reference_says_what_is_accepted(tmp_path, monkeypatch, ref, exists):
    from typer.testing import CliRunner

    from rft.cli.main import app

    monkeypatch.chdir(tmp_path)
    if exists:
        (tmp_path / "notes.txt").write_text("not python\n")
    result = CliRunner().invoke(app, ["graders", "--plugin", ref])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    out = " ".join(result.output.split())
    assert ref.lstrip("./") in out and "*.py" in out and "module" in out, out
    assert "Traceback" not in out and "AssertionError" not in out
