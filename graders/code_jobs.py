"""What ``code_exec`` sends to the test harness, and what it reads back.

:func:`build_program` turns one completion of one dataset row into a harness job
(HumanEval ``check``, an assert list or stdin/stdout cases); :func:`split_check` makes each
assert statement of a HumanEval ``check`` its own test; :func:`parse_records` reads the
records the harness (:mod:`graders.programs.code_harness`) writes. Parsing only: nothing
here runs code.
"""

from __future__ import annotations

import ast
import functools
import io
import re
from collections.abc import Mapping
from typing import Any

from rft.core.parsing import completion_text, extract_code

__all__ = ["build_program", "parse_literal", "parse_records", "split_check"]


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(map(str, value))
    return str(value)


@functools.lru_cache(maxsize=1024)  # a row's test is split once, not once per completion
def _split_check_cached(test: str) -> tuple[str, tuple[str, ...]]:
    code, srcs = split_check(test)
    return code, tuple(srcs)


def split_check(test: str) -> tuple[str, list[str]]:
    """Make each top-level statement of ``check`` that contains an ``assert`` its own test.

    Returns the rewritten test code, where each such statement reports pass/fail to the
    harness instead of stopping ``check``, and the source of each test. Statements
    without asserts (set-up) run as they are. Parsing only, nothing is executed.

    Raises:
        ValueError: the test code is not valid Python.

    >>> code, srcs = split_check("def check(f):\\n    x = 1\\n    assert f(x) == 2\\n    assert f(0) == 1\\n")
    >>> srcs
    ['assert f(x) == 2', 'assert f(0) == 1']
    """
    try:
        tree = ast.parse(test, "test.py")
    except SyntaxError as err:
        raise ValueError(f"code_exec: the row's `test` is not valid Python (line {err.lineno}: {err.msg})") from None
    check = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"), None)
    if check is None:
        return test, []
    srcs: list[str] = []
    body: list[ast.stmt] = []
    # the parser's lines: \n, \r\n and \r only (str.splitlines also splits on \f, \x1c, …)
    lines = [line.encode() for line in io.StringIO(test, newline="").readlines()]

    def segment(node: ast.stmt) -> str:  # ast.get_source_segment re-splits the text per call
        end, end_col = node.end_lineno or node.lineno, node.end_col_offset
        chunk = lines[node.lineno - 1 : end]
        if not chunk or end_col is None:
            return ast.unparse(node)
        chunk[-1] = chunk[-1][:end_col]
        chunk[0] = chunk[0][node.col_offset :]
        return b"".join(chunk).decode("utf-8", "replace")

    def call(fn: str, *args: ast.expr) -> ast.Expr:
        return ast.Expr(ast.Call(ast.Name(fn, ast.Load()), list(args), []))

    for stmt in check.body:
        if not any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            body.append(stmt)
            continue
        i = ast.Constant(len(srcs))
        srcs.append(segment(stmt))
        handler = ast.ExceptHandler(
            ast.Name("Exception", ast.Load()), "_rft_e", [call("_rft_fail", i, ast.Name("_rft_e", ast.Load()))]
        )
        body.append(ast.Try(body=[stmt], handlers=[handler], orelse=[call("_rft_pass", i)], finalbody=[]))
    check.body = body
    return ast.unparse(tree), srcs  # unparsed to source: no locations needed


def build_program(completion: str, item: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The code to run and the harness job for one completion of one row.

    Returns ``(mode, job)`` where mode is ``check``, ``asserts`` or ``io``.

    Raises:
        ValueError: the row has none of the supported test fields.

    >>> mode, job = build_program("    return a + b\\n", {"prompt": "def add(a, b):\\n",
    ...     "test": "def check(f):\\n    assert f(1, 2) == 3\\n", "entry_point": "add"})
    >>> mode, job["code"]
    ('check', 'def add(a, b):\\n    return a + b\\n')
    """
    text = completion_text(completion)
    code = extract_code(text, "python")
    if isinstance(item.get("test"), str) and isinstance(item.get("entry_point"), str):
        entry = item["entry_point"]
        raw_prompt = item.get("prompt")
        prompt = raw_prompt if isinstance(raw_prompt, str) else ""
        if code is not text or _defines(code, entry):
            # a full solution: keep the prompt for its imports and helpers; the
            # solution's own definition replaces the prompt's stub
            program = f"{prompt}\n{code}" if prompt else code
        else:
            program = prompt + code  # a function body continuing the prompt (HumanEval)
        test, srcs = _split_check_cached(item["test"])
        return "check", {"mode": "check", "code": program, "test": test, "srcs": list(srcs), "entry_point": entry}
    tests = item.get("tests", item.get("test_list"))
    if isinstance(tests, list) and tests and all(isinstance(t, str) for t in tests):
        setup = item.get("test_setup", item.get("test_setup_code")) or ""
        return "asserts", {"mode": "asserts", "code": code, "tests": list(tests), "setup": setup}
    cases = item.get("io")
    if isinstance(cases, list) and cases and all(isinstance(c, Mapping) and "output" in c for c in cases):
        io = [{"input": _text(c.get("input")), "output": _text(c["output"])} for c in cases]
        return "io", {"mode": "io", "code": code, "io": io}
    raise ValueError(
        "code_exec: the row has no tests; it needs `test` + `entry_point` (HumanEval), "
        "`tests` (a list of assert statements) or `io` (a list of {input, output}) "
        f"(columns: {', '.join(sorted(map(str, item))) or 'none'})"
    )


def parse_literal(line: bytes | str) -> Any:
    """A Python literal written by the harness; None when the line is not one.

    >>> parse_literal(b"{'t': 0, 'ok': True}"), parse_literal("__import__('os')")
    ({'t': 0, 'ok': True}, None)
    """
    try:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        return ast.literal_eval(text)  # literals only: nothing is executed
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def parse_records(channel: str) -> list[dict[str, Any]]:
    """The harness's records (dicts), one per line of ``channel``; other lines are skipped.

    >>> parse_records("{'total': 2}\\nnoise\\n{'done': True}\\n")
    [{'total': 2}, {'done': True}]
    """
    return [rec for rec in map(parse_literal, channel.splitlines()) if isinstance(rec, dict)]
