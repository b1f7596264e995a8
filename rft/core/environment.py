"""Environments for agentic RFT: tools the model calls, a state per episode, a success signal.

An environment is declared in a plugin file next to its graders, with no boilerplate beyond
the functions themselves::

    import rft

    @rft.tool(timeout=2)
    def lookup(key: str, state: dict) -> str:
        \"\"\"Look a key up in the table.

        Args:
            key: the key to look up.
        \"\"\"
        return state["table"][key]

    def solved(state: dict, messages: list) -> bool:
        return state["answer"] in (messages[-1].get("content") or "")

    @rft.environment(tools=[lookup], max_turns=3, success=solved)
    def inventory(row: dict) -> dict:
        \"\"\"One episode's state, from its dataset row.\"\"\"
        return {"table": row["table"], "answer": row["answer"]}

- A **tool** is a plain function; the model sees the JSON schema transformers derives from
  its signature, type hints and Google-style docstring (the chat template's tool format).
  A parameter named ``state`` receives the episode's state and is hidden from the model.
  What the tool returns is sent back as the ``tool`` message (``str()`` of it; JSON for a
  dict or list). A tool that raises, hangs past its timeout or is called with bad arguments
  returns the error text to the model and is counted (``tool_errors`` of the episode).
- The **setup** function (the decorated one) makes the state of one episode from its
  dataset row; without one the state is an empty dict.
- ``success(state[, messages])`` — True, False or None (no signal) at the end of an
  episode; the built-in ``task_success`` grader reads it. ``done(state)`` ends an episode
  early (later tool calls get "the episode is over"). ``max_turns`` bounds the rounds of
  tool calls; the model always gets one more turn to answer after the last round.
- ``feedback(state[, messages])`` — the optional step for a reply without tool calls: a
  string goes back to the model as a ``user`` message and it replies again (each such round
  counts toward ``max_turns``); None ends the episode. Tool calls in a reply to feedback are
  not run (TRL's tool loop has ended by then); the episode ends with that reply.

Registered environments come from the ``rft_register_environments`` hook, or from the
module-level :class:`Environment` objects of a plugin file (:mod:`rft.plugins.environments`).
A run picks one with ``environment: NAME`` (:mod:`rft.train.episodes` runs the episodes).
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from rft.core.errors import ConfigError

__all__ = ["STATE_PARAM", "Environment", "Tool", "environment", "tool", "tool_result_text"]

#: The tool parameter that receives the episode's state (never shown to the model).
STATE_PARAM = "state"
#: Names a tool may not take: the environment protocol of TRL's ``environment_factory`` uses them.
_RESERVED = frozenset({"reset", "get_reward"})


@dataclass(frozen=True)
class Tool:
    """A plain function the model may call, with its timeout.

    Args:
        fn: the function (sync); its signature, type hints and docstring make the schema.
        name: the name the model calls (default: the function's name).
        timeout: seconds one call may take before the model gets a timeout error
            (None: the environment's ``tool_timeout``).
    """

    fn: Callable[..., Any]
    name: str
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError(f"tool {self.name!r}: {self.fn!r} is not callable")
        if not self.name.isidentifier() or self.name.startswith("_") or self.name in _RESERVED:
            raise ConfigError(
                f"tool name {self.name!r} is not allowed: use an identifier that does not start with '_' "
                f"and is not one of {sorted(_RESERVED)}"
            )
        if inspect.iscoroutinefunction(self.fn):
            raise ConfigError(f"tool {self.name!r} is async; tools are plain (sync) functions")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise ConfigError(f"tool {self.name!r}: timeout must be a positive number of seconds, got {self.timeout!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    @property
    def takes_state(self) -> bool:
        """True when the function has a ``state`` parameter (filled with the episode's state)."""
        return STATE_PARAM in inspect.signature(self.fn).parameters

    @property
    def signature(self) -> inspect.Signature:
        """The signature the model sees: the function's, without ``state``."""
        sig = inspect.signature(self.fn)
        return sig.replace(parameters=[p for n, p in sig.parameters.items() if n != STATE_PARAM])

    @property
    def annotations(self) -> dict[str, Any]:
        """The type hints the model sees (``state`` left out)."""
        hints = dict(getattr(self.fn, "__annotations__", {}))
        hints.pop(STATE_PARAM, None)
        return hints

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def schema(self) -> dict[str, Any]:
        """The OpenAI function schema (``{"type": "function", "function": {...}}``) the chat
        template renders, made by transformers from the signature, hints and docstring.

        Raises:
            ConfigError: transformers cannot make one (no docstring, an argument without a
                description or a type hint); the message names the tool and the fix.
        """
        from transformers.utils import get_json_schema

        try:
            return dict(get_json_schema(self.as_function()))
        except Exception as err:
            raise ConfigError(
                f"tool {self.name!r} ({_where(self.fn)}): cannot make its JSON schema: {err}. A tool needs type hints "
                "on every argument and a Google-style docstring with a description and an `Args:` line per argument"
            ) from err

    def as_function(self) -> Callable[..., Any]:
        """A stand-in function with the tool's name, the signature the model sees and its
        docstring (what transformers reads); calling it calls the tool without a state."""

        def call(**kwargs: Any) -> Any:
            return self.fn(**kwargs)

        call.__name__ = call.__qualname__ = self.name
        call.__doc__ = self.doc
        call.__signature__ = self.signature  # type: ignore[attr-defined]
        call.__annotations__ = self.annotations
        call.__module__ = getattr(self.fn, "__module__", __name__)
        return call


def _where(fn: Any) -> str:
    code = getattr(inspect.unwrap(fn), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else repr(fn)


@overload
def tool(fn: Callable[..., Any], *, name: str | None = None, timeout: float | None = None) -> Tool: ...
@overload
def tool(
    fn: None = None, *, name: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, timeout: float | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a plain function a :class:`Tool` (``@rft.tool`` or ``@rft.tool(timeout=2)``).

    The result is still callable like the function, so tools stay testable on their own.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name or f.__name__, timeout)

    return wrap(fn) if fn is not None else wrap


def _as_tool(obj: Any) -> Tool:
    if isinstance(obj, Tool):
        return obj
    if callable(obj) and getattr(obj, "__name__", None):
        return Tool(obj, obj.__name__)
    raise ConfigError(f"{obj!r} is not a tool: pass plain functions or @rft.tool objects")


def _call_with(fn: Callable[..., Any], **available: Any) -> Any:
    """Call ``fn`` with those of ``available`` its signature names (all of them with ``**kwargs``)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**available)
    return fn(**{k: v for k, v in available.items() if k in params})


@dataclass(frozen=True)
class Environment:
    """Tools, a state per episode, an optional success signal (see the module docs).

    Args:
        name: the name a config picks it by (``environment: NAME``).
        tools: the tools the model may call.
        setup: makes an episode's state from its dataset row (``setup(row)``); None: ``{}``.
        success: ``success(state[, messages])`` → True/False/None at the end of an episode.
        done: ``done(state)`` → True ends the episode early.
        feedback: ``feedback(state[, messages])`` → a user message answering a reply
            without tool calls, or None (the episode ends).
        max_turns: most rounds of tool calls per episode (one more turn answers).
        tool_timeout: seconds per tool call unless the tool sets its own.
        description: one line for listings.
    """

    name: str
    tools: tuple[Tool, ...]
    setup: Callable[..., Any] | None = None
    success: Callable[..., bool | None] | None = None
    done: Callable[..., bool] | None = None
    feedback: Callable[..., str | None] | None = None
    max_turns: int = 4
    tool_timeout: float = 10.0
    description: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"environment name {self.name!r} must be an identifier")
        tools = tuple(_as_tool(t) for t in self.tools)
        object.__setattr__(self, "tools", tools)
        names = [t.name for t in tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"environment {self.name!r}: two tools are named {dupes[0]!r}")
        if not tools:
            raise ConfigError(f"environment {self.name!r} has no tools; give it at least one")
        if not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise ConfigError(f"environment {self.name!r}: max_turns must be an integer >= 1, got {self.max_turns!r}")
        if not isinstance(self.tool_timeout, (int, float)) or self.tool_timeout <= 0:
            raise ConfigError(f"environment {self.name!r}: tool_timeout must be positive, got {self.tool_timeout!r}")

    def tool(self, name: str) -> Tool:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(name)

    def timeout_of(self, t: Tool) -> float:
        """The tool's own timeout, else the environment's."""
        return float(t.timeout if t.timeout is not None else self.tool_timeout)

    def new_state(self, row: Mapping[str, Any]) -> Any:
        """A fresh state for an episode on ``row`` (the setup function's, else ``{}``).

        Raises:
            ConfigError: the setup function raised; the message names the environment.
        """
        if self.setup is None:
            return {}
        try:
            return _call_with(self.setup, row=copy.deepcopy(dict(row)))
        except Exception as err:
            raise ConfigError(
                f"environment {self.name!r}: its setup ({_where(self.setup)}) failed on a row: "
                f"{type(err).__name__}: {err}"
            ) from err

    def is_done(self, state: Any) -> bool:
        return bool(self.done(state)) if self.done is not None else False

    def succeeded(self, state: Any, messages: Sequence[Mapping[str, Any]]) -> bool | None:
        """The success signal at the end of an episode (None: the environment gives none).

        Raises:
            ConfigError: the success function raised or returned something not a bool or None.
        """
        value = self._ask("success", state, messages, bool, "True, False or None")
        return value if value is None else bool(value)

    def feedback_for(self, state: Any, messages: Sequence[Mapping[str, Any]]) -> str | None:
        """The feedback step's message for a reply without tool calls (None: no feedback).

        Raises:
            ConfigError: the feedback function raised or returned something not a str or None.
        """
        value = self._ask("feedback", state, messages, str, "a str or None")
        return value if value is None else str(value)

    def _ask(self, which: str, state: Any, messages: Sequence[Mapping[str, Any]], kind: type, want: str) -> Any:
        """Call the ``success`` or ``feedback`` function; its value must be ``kind`` or None."""
        fn = getattr(self, which)
        if fn is None:
            return None
        try:
            value = _call_with(fn, state=state, messages=list(messages))
        except Exception as err:
            raise ConfigError(
                f"environment {self.name!r}: its {which} function ({_where(fn)}) raised {type(err).__name__}: {err}"
            ) from err
        if value is None or isinstance(value, kind):
            return value
        raise ConfigError(f"environment {self.name!r}: its {which} function returned {value!r}; return {want}")

    def schemas(self) -> list[dict[str, Any]]:
        """Every tool's JSON schema (raises :class:`ConfigError` naming a tool that has none)."""
        return [t.schema() for t in self.tools]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tools": [t.name for t in self.tools],
            "max_turns": self.max_turns,
            "tool_timeout": self.tool_timeout,
            "success_signal": self.success is not None,
            "feedback": self.feedback is not None,
            "description": self.description,
        }


def tool_result_text(value: Any) -> str:
    """What the model reads back from a tool: JSON for dicts/lists, ``str()`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def environment(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    tools: Sequence[Any] = (),
    success: Callable[..., bool | None] | None = None,
    done: Callable[..., bool] | None = None,
    feedback: Callable[..., str | None] | None = None,
    max_turns: int = 4,
    tool_timeout: float = 10.0,
) -> Any:
    """Declare an environment around its setup function (``@rft.environment(tools=[...])``).

    The decorated function makes one episode's state from its dataset row; the result is an
    :class:`Environment` named after the function (or ``name``).
    """

    def wrap(f: Callable[..., Any]) -> Environment:
        doc = (inspect.getdoc(f) or "").split("\n")[0]
        return Environment(
            name=name or f.__name__,
            tools=tuple(tools),
            setup=f,
            success=success,
            done=done,
            feedback=feedback,
            max_turns=max_turns,
            tool_timeout=tool_timeout,
            description=doc,
            meta={"module": getattr(f, "__module__", None)},
        )

    return wrap(fn) if fn is not None else wrap
