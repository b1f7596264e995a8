"""Environments for agentic RFT: tools from plain functions, the registry, tool calls that fail."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

import rft
from rft.core.errors import ConfigError, PluginError
from rft.plugins import get_environments, get_plugin_manager
from rft.train.episodes import call_tool, episode_class

PLUGIN = textwrap.dedent(
    '''
    import time
    import rft

    @rft.tool(timeout=0.3)
    def lookup(key: str, state: dict) -> int:
        """Look a key up in this episode's table.

        Args:
            key: the key to look up.
        """
        return state["table"][key]

    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: the first.
            b: the second.
        """
        return a + b

    @rft.tool(timeout=0.2)
    def stall(seconds: float) -> str:
        """Sleep, then answer.

        Args:
            seconds: how long.
        """
        time.sleep(seconds)
        return "awake"

    def solved(state, messages):
        last = messages[-1].get("content") or ""
        return str(state["answer"]) in last

    @rft.environment(tools=[lookup, add, stall], max_turns=2, success=solved)
    def inventory(row):
        """Stock counts per item, different in every row."""
        return {"table": dict(row["table"]), "answer": row["answer"]}
    '''
)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "inventory_env.py"
    path.write_text(PLUGIN)
    return path


@pytest.fixture
def env(plugin_file: Path) -> rft.Environment:
    return get_environments(get_plugin_manager([str(plugin_file)])).get("inventory")


ROW = {"prompt": "How many apples?", "table": {"apple": 7, "pear": 2}, "answer": 7}


def test_a_plugin_file_declares_an_environment_without_boilerplate(env):
    assert [t.name for t in env.tools] == ["lookup", "add", "stall"]
    assert env.max_turns == 2 and env.description.startswith("Stock counts")
    schemas = {s["function"]["name"]: s["function"] for s in env.schemas()}
    # the model sees the signature, type hints and docstring; never the injected state
    assert schemas["lookup"]["parameters"]["properties"] == {
        "key": {"type": "string", "description": "the key to look up."}
    }
    assert schemas["add"]["parameters"]["required"] == ["a", "b"]
    assert schemas["lookup"]["description"] == "Look a key up in this episode's table."


def test_each_episode_gets_a_fresh_state_from_its_row(env):
    a, b = env.new_state(ROW), env.new_state(ROW)
    a["table"]["apple"] = 0
    assert b["table"]["apple"] == 7 and ROW["table"]["apple"] == 7


def test_tool_calls_and_their_failures_come_back_as_text(env):
    state = env.new_state(ROW)
    assert call_tool(env, env.tool("lookup"), {"key": "apple"}, state) == ("7", None)
    assert call_tool(env, env.tool("add"), {"a": 2, "b": 3}, state) == ("5", None)
    # a tool that raises: the error goes back to the model, typed
    text, kind = call_tool(env, env.tool("lookup"), {"key": "plum"}, state)
    assert kind == "raised" and "KeyError" in text and "plum" in text
    # bad arguments never reach the function
    text, kind = call_tool(env, env.tool("add"), {"a": 1}, state)
    assert kind == "bad_arguments" and "missing a required argument: 'b'" in text
    text, kind = call_tool(env, env.tool("lookup"), {"key": "apple", "state": {}}, state)
    assert kind == "bad_arguments"


def test_a_hanging_tool_times_out_on_its_own_limit(env):
    t0 = time.perf_counter()
    text, kind = call_tool(env, env.tool("stall"), {"seconds": 5}, {})
    assert kind == "timeout" and "did not return within 0.2s" in text
    assert time.perf_counter() - t0 < 2
    assert call_tool(env, env.tool("stall"), {"seconds": 0}, {}) == ("awake", None)


def test_an_episode_exposes_only_the_tools_to_trl(env):
    import inspect

    cls = episode_class(env, rows=[ROW])
    public = [n for n, _ in inspect.getmembers(cls, predicate=inspect.isfunction) if not n.startswith("_")]
    assert sorted(public) == ["add", "lookup", "reset", "stall"]  # TRL: every public method but reset is a tool
    ep = cls()
    ep.reset(prompt="x", _rft_row=0)  # TRL passes the dataset columns; the episode starts from the full row
    assert ep.lookup(key="pear") == "2"
    text = ep._call_tool("peel", {})
    assert "there is no tool 'peel'" in text
    assert [c["error"] for c in ep.calls] == [None, "unknown_tool"]
    summary = ep._summary([{"role": "user", "content": "?"}, {"role": "assistant", "content": "7 apples"}])
    assert summary["success"] is True and summary["tool_calls"] == 2 and summary["tool_errors"] == 1
    # the methods TRL renders keep the tool's schema
    from transformers.utils import get_json_schema

    assert get_json_schema(ep.lookup)["function"]["parameters"]["properties"] == {
        "key": {"type": "string", "description": "the key to look up."}
    }


def test_the_hook_registers_environments_and_clashes_name_both(tmp_path, plugin_file):
    hooked = tmp_path / "hooked_env.py"
    hooked.write_text(
        textwrap.dedent(
            '''
            import rft

            def ping() -> str:
                """Answer pong."""
                return "pong"

            @rft.hookimpl
            def rft_register_environments(register):
                register(rft.Environment(name="pinger", tools=(ping,)))
                register(rft.Environment(name="inventory", tools=(ping,)))
            '''
        )
    )
    pm = get_plugin_manager([str(plugin_file), str(hooked)])
    with pytest.raises(PluginError, match="environment name clash: 'inventory'.*hooked_env"):
        get_environments(pm)


def test_bad_declarations_are_refused_with_the_fix():
    def no_doc(x: int) -> int:
        return x

    env = rft.Environment(name="bad", tools=(no_doc,))
    with pytest.raises(ConfigError, match="tool 'no_doc'.*cannot make its JSON schema.*docstring"):
        env.schemas()
    with pytest.raises(ConfigError, match="tool name 'reset' is not allowed"):
        rft.tool(no_doc, name="reset")
    with pytest.raises(ConfigError, match="has no tools"):
        rft.Environment(name="empty", tools=())
    with pytest.raises(PluginError, match="unknown environment 'inventry'"):
        get_environments(get_plugin_manager()).get("inventry")


def test_a_setup_or_success_function_that_fails_names_the_environment(env):
    with pytest.raises(ConfigError, match="environment 'inventory': its setup .* failed on a row: KeyError"):
        env.new_state({"prompt": "no table"})
    broken = rft.Environment(name="judge", tools=env.tools, success=lambda state: "yes")
    with pytest.raises(ConfigError, match="returned 'yes'; return True, False or None"):
        broken.succeeded({}, [])


def test_rft_environments_lists_tools_with_their_schema(plugin_file):
    import json

    from typer.testing import CliRunner

    from rft.cli.main import app

    res = CliRunner().invoke(app, ["environments", "--plugin", str(plugin_file), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = [r for r in json.loads(res.output) if r["name"] == "inventory"]
    assert row["tools"] == ["lookup", "add", "stall"] and row["success_signal"] is True
    assert row["schemas"][0]["function"]["parameters"]["required"] == ["key"]
    res = CliRunner().invoke(app, ["environments", "--plugin", str(plugin_file)])
    assert res.exit_code == 0 and "lookup(key)" in res.output


def test_a_code_tool_runs_the_models_program_in_the_sandbox():
    from rft.sandbox import Limits
    from rft.sandbox.tools import python_tool

    run = python_tool(limits=Limits(wall_s=1))
    env = rft.Environment(name="calc", tools=(run,))
    assert env.schemas()[0]["function"]["parameters"]["required"] == ["code"]
    assert call_tool(env, run, {"code": "print(6 * 7)"}, {}) == ("42", None)
    # a program that fails or never ends is output the model reads, not a tool error
    text, kind = call_tool(env, run, {"code": "1/0"}, {})
    assert kind is None and "ZeroDivisionError" in text and text.endswith("[exit 1]")
    t0 = time.perf_counter()
    text, kind = call_tool(env, run, {"code": "while True: pass"}, {})
    assert kind is None and text == "[timed out]" and time.perf_counter() - t0 < 5
