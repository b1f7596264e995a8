"""OpenAI's ``python`` grader, ``{"type": "python", "source": "def grade(sample, item) -> float: …"}``.

The ``grade`` function runs in the sandbox (through the test harness), never in the
grading process. Registered by the ``graders.code`` plugin.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

import rft
from graders.sandboxed import HarnessKilledError, SandboxedGrader
from rft.core import Grade
from rft.core.errors import ConfigError, GraderFailure
from rft.core.parsing import completion_text, extract_json

__all__ = ["MAX_SOURCE_BYTES", "PythonGrader", "PythonGraderError", "SandboxTimeoutError", "Unserializable"]

#: OpenAI's limit on a python grader's source.
MAX_SOURCE_BYTES = 256 * 1024


class PythonGraderError(GraderFailure):
    """The ``grade`` function of a python grader raised (or crashed its process) in the sandbox."""

    outcome_kind = "grader_error"


class SandboxTimeoutError(GraderFailure):
    """A python grader's ``grade`` ran past its ``time_limit``; recorded as kind ``timeout``."""

    outcome_kind = "timeout"


@rft.grader(name="python")
class PythonGrader(SandboxedGrader):
    """OpenAI's python grader: ``source`` defines ``grade(sample, item) -> float``; runs in the sandbox.

    ``sample`` is ``{"output_text", "output_json", "output_tools", "choices"}`` (OpenAI's
    shape) and ``item`` the dataset row. Each call runs in a fresh sandbox process with no
    network, ``memory_mb`` of memory and ``time_limit`` seconds.

    Args:
        source: Python source defining ``grade(sample, item)``.
        name: the grader's name in an OpenAI grader object (informational here).
        image_tag: OpenAI's runtime image; accepted for compatibility. The sandbox runs
            the interpreter rftkit runs on, with the standard library only.
        pass_threshold: OpenAI's pass mark; adds a ``passed`` metric (1.0 when score ≥ it).
        time_limit: wall-clock seconds per call; past it the outcome is a timeout.
        memory_mb: address space limit, in MiB.
        backend: force a sandbox backend.
        require_isolation: refuse to run when only ``rlimits-only`` is available.
        persistent: reuse long-lived sandboxed harness servers (see :class:`graders.code.CodeExec`).

    Raises:
        ConfigError: ``source`` is empty, too long, not valid Python or defines no
            top-level ``grade``; or a sandbox parameter is invalid.

    >>> g = PythonGrader("def grade(sample, item):\\n    return float(sample['output_text'] == item['answer'])")
    >>> g("42", {"answer": "42"})
    1.0
    """

    def __init__(
        self,
        source: str,
        name: str | None = None,
        image_tag: str | None = None,
        pass_threshold: float | None = None,
        time_limit: float = 10.0,
        memory_mb: int = 2048,
        backend: str | None = None,
        require_isolation: bool | None = None,
        persistent: bool = True,
    ):
        who = name or "python"
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f"python grader {who!r}: `source` must be Python code defining grade(sample, item)")
        if len(source.encode()) > MAX_SOURCE_BYTES:
            raise ConfigError(f"python grader {who!r}: `source` is over {MAX_SOURCE_BYTES // 1024} KiB")
        try:
            tree = ast.parse(source, f"<python grader {who}>")
        except SyntaxError as err:  # compiling does not run anything
            raise ConfigError(f"python grader {who!r}: `source` line {err.lineno}: {err.msg}") from None
        if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "grade" for n in tree.body):
            raise ConfigError(f"python grader {who!r}: `source` must define a top-level function grade(sample, item)")
        self.source = source
        self.name = name
        self.image_tag = image_tag
        self.pass_threshold = pass_threshold
        self._init_sandbox(time_limit, memory_mb, backend, require_isolation, persistent, who)

    def __call__(self, completion: str, item: Mapping[str, Any], sample: Any = None) -> Any:
        """Run ``grade`` in the sandbox; its value (a ``Grade`` when ``pass_threshold`` is set).

        Raises:
            PythonGraderError: ``grade`` raised, or its process died without a result.
            SandboxTimeoutError: ``grade`` ran past ``time_limit``.
        """
        text = completion_text(completion)
        found, output_json = extract_json(text)
        tools = sample.get_tool_calls() if sample is not None and hasattr(sample, "get_tool_calls") else []
        openai_sample = {
            "output_text": text,
            "output_json": output_json if found else None,
            "output_tools": tools,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }
        job = {"mode": "grade", "source": self.source, "sample": openai_sample, "item": _jsonable(item)}
        try:
            result, records = self._run(job)
        except HarnessKilledError as err:
            raise PythonGraderError(f"grade() {str(err).removeprefix('the program ')}") from None
        for r in records:
            if "error" in r:
                raise PythonGraderError(f"grade() raised {r['error']}\n{r.get('traceback', '')}".strip())
            if "value" in r:
                value = r["value"]
                if "type" in r:
                    value = Unserializable(r["type"], str(value))
                if self.pass_threshold is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                    return Grade(float(value), None, {"passed": float(value >= self.pass_threshold)})
                return value
        if result.timed_out:
            raise SandboxTimeoutError(f"python grader ran past its time limit of {self.time_limit:g}s")
        tail = result.stderr.strip()[-500:]
        raise PythonGraderError(
            f"python grader stopped without a result ({result.describe()}){': ' + tail if tail else ''}"
        )


class Unserializable:
    """A value ``grade`` returned that is not JSON (kept as its repr, rejected as invalid output)."""

    def __init__(self, type_name: str, text: str):
        self.type_name, self.text = type_name, text

    def __repr__(self) -> str:
        return f"{self.type_name} {self.text}"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
