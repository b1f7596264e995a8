"""Parsing helpers shared by graders: JSON inside completions, tool calls, fenced code."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "bfcl_call",
    "decode_arguments",
    "extract_json",
    "parse_tool_calls",
    "normalize_tool_call",
    "reference_tool_calls",
    "extract_code",
    "completion_text",
    "find_numbers",
    "message_text",
    "message_tool_calls",
]

_FENCE = re.compile(r"```(?:[\w+-]*)\s*\n(.*?)```", re.DOTALL)


def message_text(message: Any) -> str:
    """The text of one chat message: its ``content``, OpenAI content parts joined, None as ``""``.

    >>> message_text({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]})
    'ab'
    """
    if not isinstance(message, dict):
        return str(message)
    content = message.get("content")
    if isinstance(content, list):  # OpenAI content parts
        return "".join(str(p.get("text") or "") if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's ``[{"role": "assistant", "content": …}]``.

    Of a multi-turn completion (assistant messages with tool calls, tool results, the final
    reply) it is the last assistant message's text; tool results are not the model's text.

    >>> completion_text([{"role": "assistant", "content": "", "tool_calls": []},
    ...                  {"role": "tool", "content": "19"}, {"role": "assistant", "content": "It is 19."}])
    'It is 19.'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        msgs = [m for m in completion if isinstance(m, dict)]
        replies = [m for m in msgs if m.get("role") == "assistant"]
        if replies and len(replies) < len(msgs) or len(replies) > 1:
            return message_text(replies[-1])
        return "".join(message_text(m) for m in msgs)
    if isinstance(completion, dict):
        return message_text(completion)
    return str(completion)


def extract_code(text: str, language: str | None = None) -> str:
    """The first fenced code block (preferring ``language``), else the whole text."""
    blocks = re.findall(r"```([\w+-]*)\s*\n(.*?)```", text, re.DOTALL)
    if language:
        for lang, body in blocks:
            if lang.lower() == language.lower():
                return body
    if blocks:
        return blocks[0][1]
    return text


def extract_json(text: str) -> tuple[bool, Any]:
    """Find a JSON value in a completion: the whole text, a fenced block, or the first
    balanced ``{…}``/``[…]``. Returns ``(found, value)``.

    >>> extract_json('Sure: ```json\\n{"a": 1}\\n```')
    (True, {'a': 1})
    """
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    for c in candidates:
        if not c:
            continue
        try:
            return True, json.loads(c)
        except ValueError:
            pass
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = dec.raw_decode(text, i)
                return True, value
            except ValueError:
                continue
    return False, None


def decode_arguments(args: Any) -> Any:
    """Tool-call arguments as a dict when they are a JSON string; an empty string is ``{}``.

    Arguments that are not valid JSON stay the string they were, so the ``tool_call``
    grader can report them as invalid rather than lose them.

    >>> decode_arguments('{"city": "Paris"}'), decode_arguments(""), decode_arguments("{oops")
    ({'city': 'Paris'}, {}, '{oops')
    """
    if not isinstance(args, str):
        return args
    if not args.strip():
        return {}
    try:
        return json.loads(args)
    except ValueError:
        return args


def normalize_tool_call(obj: Any) -> dict[str, Any] | None:
    """One tool call in OpenAI's shape ``{"type": "function", "function": {"name",
    "arguments"}}``, with ``arguments`` decoded from a JSON string where it is valid JSON;
    accepts the OpenAI shape or a bare ``{"name", "arguments"|"parameters"}``; None
    when ``obj`` is not a tool call.

    >>> normalize_tool_call({"name": "f", "arguments": '{"x": 1}'})
    {'type': 'function', 'function': {'name': 'f', 'arguments': {'x': 1}}}
    """
    if not isinstance(obj, dict):
        return None
    call: dict[str, Any]
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI tool_calls shape
        fn = obj["function"]
        call = {
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": decode_arguments(fn.get("arguments", {}))},
        }
    elif "name" in obj and ("arguments" in obj or "parameters" in obj):
        args = decode_arguments(obj.get("arguments", obj.get("parameters", {})))
        call = {"type": "function", "function": {"name": obj["name"], "arguments": args}}
    else:
        return None
    if obj.get("id") is not None:  # the id a tool message answers (``tool_call_id``)
        call["id"] = obj["id"]
    return call


def message_tool_calls(messages: Any) -> list[dict[str, Any]]:
    """Every tool call of a conversation's assistant messages, in order, as written.

    An assistant message's ``tool_calls`` when it has them, else the calls in its text
    (:func:`parse_tool_calls`); other roles are skipped. Arguments stay as given (a dict
    or OpenAI's JSON string); :func:`normalize_tool_call` decodes them.

    >>> message_tool_calls([{"role": "assistant", "tool_calls": [{"type": "function",
    ...     "function": {"name": "add", "arguments": '{"a": 1}'}}]}, {"role": "tool", "content": "1"},
    ...     {"role": "assistant", "content": "Done."}])
    [{'type': 'function', 'function': {'name': 'add', 'arguments': '{"a": 1}'}}]
    """
    calls: list[dict[str, Any]] = []
    for m in messages or ():
        if not isinstance(m, dict) or m.get("role") != "assistant":
            continue
        if m.get("tool_calls"):
            calls.extend(c for c in m["tool_calls"] if isinstance(c, dict))
        else:
            calls.extend(parse_tool_calls(message_text(m)))
    return calls


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


#: Keys of OpenAI's and the bare call shapes: a one-key dict with one of them is no BFCL call.
_CALL_KEYS = frozenset({"function", "name", "arguments", "parameters", "type", "id", "tool_calls", "ground_truth"})


def bfcl_call(obj: Any) -> tuple[str, dict[str, list[Any]]] | None:
    """A call in BFCL's ``possible_answer`` shape ``{"func": {"arg": [allowed, …]}}`` as
    ``(name, allowed values per argument)``; None when ``obj`` has another shape.

    Each argument lists the values it may take; ``""`` among them marks it optional.

    >>> bfcl_call({"math.hypot": {"x": [4], "z": ["", 0]}})
    ('math.hypot', {'x': [4], 'z': ['', 0]})
    >>> bfcl_call({"name": "f", "arguments": {}}) is None
    True
    """
    if not isinstance(obj, dict) or len(obj) != 1:
        return None
    ((name, args),) = obj.items()
    if not isinstance(name, str) or name in _CALL_KEYS or not isinstance(args, dict):
        return None
    if not all(isinstance(v, list) for v in args.values()):
        return None
    return name, args


def reference_tool_calls(value: Any) -> list[Any]:
    """The expected calls of a reference, one item per call, each still in its own shape.

    Accepts JSON text, a single call, a list of calls, OpenAI's ``{"tool_calls": [...]}``,
    a whole BFCL ``possible_answer`` entry ``{"id": …, "ground_truth": [...]}`` and chat
    messages (a reference trajectory: the calls of its assistant messages after the prompt,
    i.e. from the first assistant message on); None is no call. Each item is then read with :func:`normalize_tool_call` or
    :func:`bfcl_call`.

    >>> reference_tool_calls('{"id": "simple_1", "ground_truth": [{"f": {"x": [1]}}]}')
    [{'f': {'x': [1]}}]

    Raises:
        ValueError: the text is not valid JSON.
    """
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value)
    if _is_messages(value):
        return message_tool_calls(value)
    if isinstance(value, dict):
        for key in ("ground_truth", "tool_calls"):
            if isinstance(value.get(key), list):
                return list(value[key])
    return list(value) if isinstance(value, list) else [value]


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Tool calls in a completion, in OpenAI's shape ``{"type": "function", "function":
    {"name", "arguments"}}`` with ``arguments`` decoded to a dict where it is valid JSON.

    Understands ``<tool_call>{…}</tool_call>`` tags (Hermes/Qwen/SmolLM style), a JSON
    object or list of calls, and ``{"tool_calls": [...]}``.

    >>> parse_tool_calls('<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>')
    [{'type': 'function', 'function': {'name': 'f', 'arguments': {'x': 1}}}]
    """
    if not isinstance(text, str):
        text = completion_text(text)
    calls: list[dict[str, Any]] = []
    tagged = re.findall(r"<tool_call>\s*(.*?)\s*</tool_call>", text, re.DOTALL)
    if tagged:
        for body in tagged:
            ok, value = extract_json(body)
            call = normalize_tool_call(value) if ok else None
            if call:
                calls.append(call)
        return calls
    ok, value = extract_json(text)
    if not ok:
        return []
    if isinstance(value, dict) and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]
    values = value if isinstance(value, list) else [value]
    for v in values:
        call = normalize_tool_call(v)
        if call:
            calls.append(call)
    return calls


def find_numbers(text: str) -> list[float]:
    """Every number in ``text``, in order: integers, decimals, thousands separators
    (``1,234``), scientific notation, and simple fractions ``a/b``.

    >>> find_numbers("It costs $1,234.50, i.e. 3/4 of -2e3.")
    [1234.5, 0.75, -2000.0]
    """
    out: list[float] = []
    pattern = re.compile(
        r"(?<![\w.])([-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+\u2212]?\.\d+)"
        r"(?:([eE][-+]?\d+)|\s*/\s*(\d+(?:\.\d+)?))?"
    )
    for m in pattern.finditer(text):
        base = m.group(1).replace(",", "").replace("\u2212", "-")
        value = float(base + (m.group(2) or ""))
        if m.group(3) is not None:
            denom = float(m.group(3))
            if denom == 0:
                out.extend([value, denom])
                continue
            value /= denom
        out.append(value)
    return out
