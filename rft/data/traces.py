"""Chat messages and tool-use traces as the row model reads them.

A tool-use trace is a row in OpenAI's function-calling fine-tuning format: ``messages``
(system/user, then assistant messages with ``tool_calls`` — arguments as JSON strings or
objects —, ``tool`` results and the final assistant message), ``tools`` and optionally
``parallel_tool_calls``. Its prompt is the messages before the first assistant message; the
rest is its reference trajectory, in OpenAI's shape with the arguments decoded to objects.
:mod:`rft.data.rows` uses these helpers; what a row means is decided there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rft.core.parsing import decode_arguments, normalize_tool_call
from rft.core.text import shorten

__all__ = [
    "call_text",
    "clean_messages",
    "is_trace",
    "message_text",
    "renders_tool_calls",
    "split_trace",
    "template_messages",
    "trace_text",
]


def message_text(msg: Mapping[str, Any]) -> str:
    """The text of a message; an assistant turn of tool calls becomes ``<tool_call>`` text."""
    content = msg.get("content")
    if isinstance(content, list):  # OpenAI content parts
        content = "".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    if content is None and msg.get("tool_calls"):
        calls = []
        for call in msg["tool_calls"]:
            fn = call.get("function", call)
            args = decode_arguments(fn.get("arguments", {}))
            calls.append("<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": args}) + "</tool_call>")
        return "\n".join(calls)
    return "" if content is None else str(content)


def clean_messages(msgs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as ``{"role", "content"}`` text (tool calls as ``<tool_call>`` text)."""
    return [{"role": m["role"], "content": message_text(m)} for m in msgs]


def is_trace(msgs: Sequence[Mapping[str, Any]]) -> bool:
    """A row's messages are a tool-use trace: they hold a ``tool`` result or an assistant message
    with ``tool_calls`` and end with the assistant's or a tool's turn. (Ending with a user turn,
    they are a prompt, tool-use examples included, and read as any chat prompt.)

    >>> call = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    >>> is_trace([{"role": "user", "content": "q"}, call]), is_trace([{"role": "user", "content": "q"}, call,
    ...     {"role": "tool", "content": "1"}, {"role": "assistant", "content": "1"}, {"role": "user", "content": "q2"}])
    (True, False)
    """
    if not msgs or msgs[-1].get("role") not in ("assistant", "tool"):
        return False
    return any(m.get("role") == "tool" or (m.get("role") == "assistant" and m.get("tool_calls")) for m in msgs)


def _structured_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls`` in OpenAI's shape, arguments decoded to objects."""
    if not isinstance(calls, list):
        raise ValueError(f"{where}.tool_calls must be a list of tool calls, got {shorten(calls)}")
    out = []
    for j, raw in enumerate(calls):
        call = normalize_tool_call(raw)
        if call is None or not isinstance(call["function"].get("name"), str) or not call["function"]["name"]:
            raise ValueError(
                f"{where}.tool_calls[{j}] is not a tool call: give "
                f"{{'type': 'function', 'function': {{'name', 'arguments'}}}}, got {shorten(raw)}"
            )
        if not isinstance(call["function"]["arguments"], dict):
            raise ValueError(
                f"{where}.tool_calls[{j}].function.arguments must be a JSON object or its JSON text, "
                f"got {shorten(raw['function'].get('arguments') if 'function' in raw else raw.get('arguments'))}"
            )
        out.append(call)
    return out


def _trace_messages(msgs: Sequence[Mapping[str, Any]], first: int) -> list[dict[str, Any]]:
    """The reference trajectory ``msgs[first:]`` in OpenAI's shape (checked; raises ``ValueError``)."""
    out: list[dict[str, Any]] = []
    calls_seen = False
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if m["role"] == "tool" and not calls_seen:
            raise ValueError(f"{where} is a tool result, but no assistant message before it calls a tool")
        if i < first:
            continue
        msg: dict[str, Any] = {"role": m["role"], "content": ""}
        if m["role"] == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _structured_calls(m["tool_calls"], where)
            calls_seen = True
            content = m.get("content")
            msg["content"] = "" if content is None else message_text({"content": content})
        else:
            msg["content"] = message_text(m)
            msg.update({k: m[k] for k in ("tool_call_id", "name") if m["role"] == "tool" and m.get(k) is not None})
        out.append(msg)
    return out


def call_text(call: Mapping[str, Any]) -> str:
    """One call as ``<tool_call>{"name", "arguments"}</tool_call>`` text (Hermes/Qwen/SmolLM style)."""
    fn = call["function"]
    return "<tool_call>" + json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments")}) + "</tool_call>"


def trace_text(msgs: Sequence[Mapping[str, Any]]) -> str:
    """A trajectory as one text (the reference of a chat template-less tokenizer, and what
    ``rft advise`` scores): assistant text and ``<tool_call>`` tags, ``<tool_response>`` results."""
    parts = []
    for m in msgs:
        if m["role"] == "tool":
            parts.append(f"<tool_response>\n{m['content']}\n</tool_response>")
            continue
        text = "\n".join([m["content"]] * bool(m["content"]) + [call_text(c) for c in m.get("tool_calls") or ()])
        parts.append(text)
    return "\n".join(parts)


def split_trace(row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The prompt and the reference trajectory of a tool-use trace row."""
    raw = row["messages"]
    first = next((i for i, m in enumerate(raw) if m["role"] == "assistant"), len(raw))
    reference = _trace_messages(raw, first)
    if "parallel_tool_calls" in row and not isinstance(row["parallel_tool_calls"], (bool, type(None))):
        raise ValueError(f"`parallel_tool_calls` must be true or false, got {shorten(row['parallel_tool_calls'])}")
    return clean_messages(raw[:first]), reference


def renders_tool_calls(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders assistant ``tool_calls`` itself (Qwen,
    Llama 3.1, TRL's templates …); else tool calls are written into the text as ``<tool_call>`` tags."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates
        template = " ".join(str(t) for t in template.values())
    return isinstance(template, str) and "tool_calls" in template


def template_messages(msgs: Sequence[Mapping[str, Any]], structured: bool) -> list[dict[str, Any]]:
    """Messages for a chat template: as they are when it renders tool calls, else flattened to text."""
    if structured:
        return [dict(m) for m in msgs]
    out = []
    for m in msgs:
        calls = [call_text(c) for c in m.get("tool_calls") or ()]
        out.append({"role": m["role"], "content": "\n".join([m["content"]] * bool(m["content"]) + calls)})
    return out
