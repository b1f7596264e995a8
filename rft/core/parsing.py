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
]

_FENCE = re.compile(r"```(?:[\w+-]*)\s*\n(.*?)```", re.DOTALL)


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or TRL's ``[{"role": "assistant", "content": …}]``."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
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
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI tool_calls shape
        fn = obj["function"]
        return {
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": decode_arguments(fn.get("arguments", {}))},
        }
    if "name" in obj and ("arguments" in obj or "parameters" in obj):
        args = decode_arguments(obj.get("arguments", obj.get("parameters", {})))
        return {"type": "function", "function": {"name": obj["name"], "arguments": args}}
    return None


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

    Accepts JSON text, a single call, a list of calls, OpenAI's ``{"tool_calls": [...]}``
    and a whole BFCL ``possible_answer`` entry ``{"id": …, "ground_truth": [...]}``;
    None is no call. Each item is then read with :func:`normalize_tool_call` or
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
