"""OpenAI's ``python`` grader, ``{"type": "python", "source": "def grade(sample, item) -> float: …"}``.

The ``grade`` function runs in the sandbox (through the test harness), never in the
grading process. Registered by the ``graders.code`` plugin.

Libraries: OpenAI's grader runtime documents a set of packages (:data:`OPENAI_LIBRARIES`:
numpy, scipy, sympy, pandas, rapidfuzz, scikit-learn, …). Those installed beside rftkit
are offered to ``grade`` (with the packages they need), read-only, by
:func:`offered_libraries`; nothing else installed is importable, and the sandbox still
has no network. A documented library that is not installed here is an ``ImportError``
inside ``grade`` (a ``grader_error`` naming it), never a score.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rft
import rft.sandbox as sandbox
from graders.sandboxed import HarnessKilledError, SandboxedGrader, harness_source
from rft.core import Grade
from rft.core.errors import ConfigError, GraderFailure
from rft.core.parsing import completion_text
from rft.core.templates import check_pass_threshold, openai_tool_calls, output_json, with_pass

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_SOURCE_BYTES",
    "OPENAI_LIBRARIES",
    "Libraries",
    "PythonGrader",
    "PythonGraderError",
    "SandboxTimeoutError",
    "Unserializable",
    "offered_libraries",
]

#: OpenAI's limit on a python grader's source.
MAX_SOURCE_BYTES = 256 * 1024

#: The packages OpenAI's python grader runtime documents (PyPI names), in its order.
OPENAI_LIBRARIES = (
    "numpy",
    "scipy",
    "sympy",
    "pandas",
    "rapidfuzz",
    "scikit-learn",
    "rouge-score",
    "deepdiff",
    "jsonschema",
    "pydantic",
    "pyyaml",
    "nltk",
    "sqlparse",
    "rdkit",
    "scikit-bio",
    "ast-grep-py",
)


#: Import names of the documented packages whose import name differs from the PyPI name.
_IMPORT_NAMES = {
    "scikit-learn": "sklearn",
    "rouge-score": "rouge_score",
    "pyyaml": "yaml",
    "scikit-bio": "skbio",
    "ast-grep-py": "ast_grep_py",
}


@dataclass(frozen=True)
class Libraries:
    """The libraries offered to sandboxed ``grade`` functions.

    Attributes:
        offered: the requested packages that are installed (PyPI names).
        missing: the requested packages that are not installed here.
        names: the top-level modules importable in the sandbox (the offered packages
            and every package they require).
        dirs: the directories holding them, shown read-only in the sandbox.
    """

    offered: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level(dist: Any) -> list[str]:
    """The top-level modules a distribution installs."""
    text = dist.read_text("top_level.txt")
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    names: list[str] = []
    for f in dist.files or ():
        first = f.parts[0]
        if first in ("..", "__pycache__") or first.endswith((".dist-info", ".data", ".libs", ".pth")):
            continue
        name = first.split(".", 1)[0] if len(f.parts) == 1 else first
        if name.isidentifier() and name not in names and (len(f.parts) > 1 or first.endswith((".py", ".so", ".pyd"))):
            names.append(name)
    return names


@functools.cache
def offered_libraries(requested: tuple[str, ...] = OPENAI_LIBRARIES) -> Libraries:
    """The installed packages of ``requested``, what they need, and where they are.

    The closure follows each package's requirements (extras left out), so that e.g.
    ``pandas`` brings ``python-dateutil`` and ``pytz``. Computed once per process.

    >>> libs = offered_libraries(("jsonschema",))
    >>> "jsonschema" in libs.names and "referencing" in libs.names, libs.missing
    (True, ())
    >>> offered_libraries(("no-such-package-here",)).missing
    ('no-such-package-here',)
    """
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    offered: list[str] = []
    missing: list[str] = []
    names: dict[str, None] = {}
    dirs: dict[str, None] = {}
    seen: set[str] = set()
    todo = [(name, True) for name in requested]
    while todo:
        name, asked = todo.pop(0)
        key = _canonical(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if asked:
                missing.append(name)
            continue
        if asked:
            offered.append(name)
        names.update(dict.fromkeys(_top_level(dist)))
        dirs[str(Path(str(dist.locate_file(""))).resolve())] = None
        for spec in dist.requires or ():
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append((req.name, False))
    return Libraries(tuple(offered), tuple(missing), tuple(names), tuple(dirs))


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
    shape: ``output_json`` is the completion parsed as JSON only when all of it is JSON,
    else None; ``output_tools`` holds Chat Completions tool calls whose
    ``function.arguments`` is the JSON string) and ``item`` the dataset row. Each call runs
    in a fresh sandbox process with no network, ``memory_mb`` of memory and
    ``time_limit`` seconds, and may import the libraries OpenAI's runtime documents that
    are installed here (see :func:`offered_libraries`), read-only.

    Args:
        source: Python source defining ``grade(sample, item)``.
        name: the grader's name in an OpenAI grader object (informational here).
        image_tag: OpenAI's runtime image; accepted for compatibility. The sandbox runs
            the interpreter rftkit runs on, with the standard library and ``libraries``.
        pass_threshold: OpenAI's pass mark; adds a ``passed`` metric (1.0 when score ≥ it).
        libraries: the packages (PyPI names) ``grade`` may import; default OpenAI's
            documented set (:data:`OPENAI_LIBRARIES`), those installed; ``[]`` for the
            standard library only. A package named here that is not installed is a
            ``ConfigError``.
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
        libraries: Sequence[str] | None = None,
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
        self.pass_threshold = check_pass_threshold(pass_threshold, f"python grader {who!r}")
        if libraries is not None and (
            isinstance(libraries, str) or not all(isinstance(x, str) and x for x in libraries)
        ):
            raise ConfigError(f"python grader {who!r}: `libraries` must be a list of package names, got {libraries!r}")
        self.libraries = None if libraries is None else tuple(libraries)
        if self.libraries:
            missing = offered_libraries(self.libraries).missing
            if missing:
                raise ConfigError(
                    f"python grader {who!r}: `libraries` names {', '.join(missing)}, not installed here; "
                    f"install it (pip install {' '.join(missing)}) or leave it out"
                )
        self._init_sandbox(time_limit, memory_mb, backend, require_isolation, persistent, who)

    def _libraries(self) -> Libraries:
        if self.libraries is None:
            return offered_libraries()
        return offered_libraries(self.libraries) if self.libraries else Libraries()

    def _harness_files(self) -> dict[str, str]:
        libs = self._libraries()
        if not libs.names:
            return super()._harness_files()
        return {
            "main.py": sandbox.program_source("graders.programs", "python_libraries"),
            "harness.py": harness_source(),
            "libraries.json": json.dumps({"dirs": list(libs.dirs), "names": list(libs.names)}),
        }

    def _read_only(self) -> tuple[str, ...]:
        return self._libraries().dirs

    def _import_hint(self, error: str) -> str:
        """What to do about a module ``grade`` could not import (empty for other errors).

        >>> g = PythonGrader("def grade(sample, item):\\n    return 1.0", libraries=[])
        >>> g._import_hint("ModuleNotFoundError: No module named 'torch'")  # doctest: +ELLIPSIS
        ' (offered to grade(): the standard library only; set `libraries` to offer installed packages)'
        """
        m = re.match(r"ModuleNotFoundError: No module named '([\w.]+)'", error)
        if m is None:
            return ""
        top = m.group(1).split(".")[0]
        libs = self._libraries()
        dist = next((d for d, mod in _IMPORT_NAMES.items() if mod == top), top)
        if dist in libs.missing:
            return (
                f" ({dist} is one of the libraries OpenAI's python grader runtime offers, but it is not "
                f"installed beside rftkit here: pip install {dist})"
            )
        offered = ", ".join(libs.offered) or "the standard library only"
        return (
            f" (offered to grade(): {offered}; other packages are not importable, as in OpenAI's runtime; "
            "set `libraries` to choose)"
            if libs.offered
            else f" (offered to grade(): {offered}; set `libraries` to offer installed packages)"
        )

    def __call__(self, completion: str, item: Mapping[str, Any], sample: Any = None) -> Any:
        """Run ``grade`` in the sandbox; its value (a ``Grade`` when ``pass_threshold`` is set).

        Raises:
            PythonGraderError: ``grade`` raised, or its process died without a result.
            SandboxTimeoutError: ``grade`` ran past ``time_limit``.
        """
        text = completion_text(completion)
        found, parsed = output_json(text)
        calls = sample.get_tool_calls() if sample is not None and hasattr(sample, "get_tool_calls") else []
        tools = openai_tool_calls(calls)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if tools:
            message["tool_calls"] = tools
        openai_sample = {
            "output_text": text,
            "output_json": parsed if found else None,
            "output_tools": tools,
            "choices": [{"index": 0, "message": message}],
        }
        job = {"mode": "grade", "source": self.source, "sample": openai_sample, "item": _jsonable(item)}
        try:
            result, records = self._run(job)
        except HarnessKilledError as err:
            raise PythonGraderError(f"grade() {str(err).removeprefix('the program ')}") from None
        for r in records:
            if "error" in r:
                hint = self._import_hint(str(r["error"]))
                raise PythonGraderError(f"grade() raised {r['error']}{hint}\n{r.get('traceback', '')}".strip())
            if "value" in r:
                value = r["value"]
                if "type" in r:
                    value = Unserializable(r["type"], str(value))
                if self.pass_threshold is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                    return with_pass(Grade(float(value)), self.pass_threshold)
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
