"""Code graders that run untrusted code in the sandbox: ``code_exec`` and OpenAI's ``python``.

``code_exec`` runs the code of a completion against the tests of its dataset row:

- HumanEval rows (``prompt``, ``test``, ``entry_point``): the program is the prompt
  plus the completion (or the completion alone after the prompt's imports when it
  defines ``entry_point`` itself), then the row's ``check(candidate)``. Each top-level
  statement of ``check`` that contains an ``assert`` counts as one test.
- assert lists (``tests: ["assert f(1) == 2", …]``, MBPP's ``test_list`` too, with an
  optional ``test_setup`` code string).
- stdin/stdout cases (``io: [{"input": "…", "output": "…"}, …]``).

All tests of one completion run in one process: a harness records each test's pass/fail
(a failing assert does not stop the others) and, for stdin/stdout cases, forks the
compiled program once per case instead of starting a new interpreter.

Speed: by default (``persistent: true``) each grader instance keeps a few long-lived
sandboxes, each running the harness as a small server with the common standard-library
modules already imported. A completion runs in a process forked from it (a few
milliseconds, no interpreter start-up), with its own CPU limit, in a fresh directory;
afterwards every other process of the sandbox's uid is killed (grandchildren in their
own session too) and the directory and the private ``/tmp`` are wiped, so one
completion cannot leave processes or files for the next. A completion that kills the
harness is retried once in a fresh sandbox and then recorded as an ``infrastructure``
outcome, costing only its own sample. ``persistent: false`` starts a fresh sandbox per
completion instead (slower, nothing shared at all).

No silent zeros: a harness killed, or out of time, before the tests ran is an
``infrastructure`` or ``timeout`` outcome, not 0.0 (no test result exists to score);
once the tests have started, tests that did not finish fail and the ones that passed
keep their credit.

``python`` is OpenAI's python grader, ``{"type": "python", "source": "def grade(sample,
item) -> float: …"}``, run in the sandbox, never in the grading process
(:mod:`graders.python_grader`). This module is the plugin that registers both.

The sandbox (:mod:`rft.sandbox`) is the security boundary for the host. The harness is
not a boundary against the code it grades: a program written to forge the harness's
report from inside its own process can do so, like in every in-process test runner.

Modules: :mod:`graders.code_jobs` (rows → harness jobs, records back),
:mod:`graders.sandboxed` (harness servers and one-shot runs),
:mod:`graders.programs.code_harness` (the harness itself, run in the sandbox).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rft
import rft.sandbox as sandbox
from graders.code_jobs import build_program, split_check
from graders.python_grader import PythonGrader
from graders.sandboxed import HarnessTimeoutError, SandboxedGrader
from rft.core import Grade
from rft.core.errors import ConfigError, GraderInfrastructureError
from rft.core.text import shorten

__all__ = ["CodeExec", "PythonGrader", "build_program", "split_check"]

#: Longest failure text kept in ``Grade.reason``.
REASON_CHARS = 300


@rft.grader(name="code_exec", range=(0.0, 1.0))
class CodeExec(SandboxedGrader):
    """Run the completion's code against the row's tests in the sandbox; score = share passed.

    Args:
        all_or_nothing: score 1.0 only when every test passes, else 0.0.
        time_limit: wall-clock seconds for all tests of one completion (the process
            tree is killed after it; unfinished tests fail).
        memory_mb: address space limit of the program, in MiB.
        case_timeout: seconds per stdin/stdout case (default: only ``time_limit``).
        compare: stdin/stdout comparison: ``lines`` (trailing whitespace ignored),
            ``tokens`` (whitespace-separated tokens) or ``exact``.
        backend: force a sandbox backend (default: the most isolated available).
        require_isolation: refuse to run when only ``rlimits-only`` is available
            (default: ``RFT_SANDBOX_REQUIRE_ISOLATION``).
        persistent: run completions in processes forked from long-lived sandboxed
            harness servers (fast); False starts a fresh sandbox per completion.

    >>> grade = CodeExec()("```python\\ndef inc(x):\\n    return x + 1\\n```",
    ...                    {"tests": ["assert inc(1) == 2", "assert inc(2) == 4"]})
    >>> grade.score, grade.reason.split(";")[0]
    (0.5, '1/2 tests passed')
    """

    def __init__(
        self,
        all_or_nothing: bool = False,
        time_limit: float = 10.0,
        memory_mb: int = 2048,
        case_timeout: float | None = None,
        compare: str = "lines",
        backend: str | None = None,
        require_isolation: bool | None = None,
        persistent: bool = True,
    ):
        if compare not in ("lines", "tokens", "exact"):
            raise ConfigError(f"grader 'code_exec': compare must be 'lines', 'tokens' or 'exact', got {compare!r}")
        if case_timeout is not None and (not isinstance(case_timeout, (int, float)) or case_timeout <= 0):
            raise ConfigError(f"grader 'code_exec': case_timeout must be a positive number, got {case_timeout!r}")
        self.all_or_nothing = bool(all_or_nothing)
        self.case_timeout = case_timeout
        self.compare = compare
        self._init_sandbox(time_limit, memory_mb, backend, require_isolation, persistent, "code_exec")

    def __call__(self, completion: str, item: Mapping[str, Any]) -> Grade:
        mode, job = build_program(completion, item)
        if not job["code"].strip():
            return Grade(0.0, "no code in the completion", {"passed": 0.0, "total": 0.0})
        if mode == "io":
            job.update(case_timeout=self.case_timeout, compare=self.compare)
        result, records = self._run(job)  # a harness killed twice raises: infrastructure / timeout
        return self._grade(result, records)

    def _grade(self, result: sandbox.SandboxResult, records: list[dict[str, Any]]) -> Grade:
        """Score the harness's records; tests that ran keep their credit.

        Raises:
            HarnessTimeoutError: the time limit passed before the harness started the tests.
            GraderInfrastructureError: the harness stopped before it started the tests.
        """
        total = next((int(r["total"]) for r in records if isinstance(r.get("total"), int)), 0)
        if total == 0:  # the harness writes the test count before any code under test runs
            if result.timed_out:  # a loaded machine or a tiny limit
                raise HarnessTimeoutError(
                    f"the test harness ran out of its time limit of {self.time_limit:g}s before the tests "
                    "started; no test ran (raise `time_limit` if the machine is loaded)"
                )
            tail = result.stderr.strip().splitlines()[-1:] or []
            raise GraderInfrastructureError(
                f"the test harness stopped before the tests started ({result.describe()})"
                + (f": {tail[0]}" if tail else "")
            )
        verdicts: dict[int, dict[str, Any]] = {}
        for r in records:
            t = r.get("t")
            if isinstance(t, int) and 0 <= t < total and t not in verdicts:
                verdicts[t] = r
        passed = sum(1 for r in verdicts.values() if r.get("ok") is True)
        error = next((str(r["error"]) for r in records if "error" in r), None)
        done = any(r.get("done") is True for r in records)
        failure = None
        for t in range(total):
            verdict = verdicts.get(t)
            if verdict is None:
                why = error or (f"timed out after {self.time_limit:g}s" if result.timed_out else None)
                if why is None and not done:
                    why = f"the program stopped early ({result.describe()})"
                    tail = result.stderr.strip().splitlines()[-1:] or []
                    why += f": {tail[0]}" if tail else ""
                failure = f"test {t + 1}: {why or 'not run'}"
                break
            if not verdict.get("ok"):
                src = str(verdict.get("src") or "").strip()
                failure = f"test {t + 1}: {src + ' → ' if src else ''}{verdict.get('err', 'failed')}"
                break
        score = passed / total
        if self.all_or_nothing:
            score = 1.0 if passed == total else 0.0
        reason = f"{passed}/{total} tests passed"
        if failure:
            reason += f"; first failure: {shorten(failure, REASON_CHARS)}"
        if result.timed_out and "timed out" not in (failure or ""):
            reason += f" (timed out after {self.time_limit:g}s)"
        metrics = {"passed": float(passed), "total": float(total)}  # latency: the engine's latency_s
        return Grade(score, reason, metrics)


@rft.hookimpl
def rft_register_graders(register):
    register(CodeExec)
    register(PythonGrader)
