"""``code_exec`` and the OpenAI ``python`` grader: scores, reasons, error kinds, and the
scoring engine (local worker processes and Ray) still scoring after hostile programs."""

from __future__ import annotations

import marshal
import os
import pickle
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

import rft.sandbox as sandbox
from graders.code import CodeExec
from graders.code_jobs import build_program, split_check
from graders.programs import code_harness
from graders.python_grader import PythonGrader
from graders.sandboxed import HarnessKilledError, harness_source
from rft.core import GraderSet, OutcomeKind, Sample, as_grader
from rft.core.errors import ConfigError
from rft.plugins import grader_set_from_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

#: A HumanEval-shaped row: the prompt is a stub with a docstring, `check` has three asserts.
ADD = {
    "prompt": 'def add(a, b):\n    """Add two numbers."""\n',
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n    assert candidate(2, 2) == 4\n",
    "entry_point": "add",
}
INC = {"tests": ["assert inc(1) == 2", "assert inc(-1) == 0", "assert inc(10) == 12"]}
DOUBLE = {"io": [{"input": "2\n", "output": "4\n"}, {"input": "5", "output": "10"}, {"input": "x", "output": "0"}]}


@pytest.fixture(scope="module")
def code_exec() -> CodeExec:
    return CodeExec(time_limit=10)


@pytest.mark.parametrize(
    ("completion", "row", "score", "reason_start"),
    [
        # a HumanEval body continuing the prompt's signature: all three asserts pass
        ("    return a + b\n", ADD, 1.0, "3/3 tests passed"),
        # a full definition in a fenced block replaces the prompt's stub
        ("Here:\n```python\ndef add(a, b):\n    return b + a\n```", ADD, 1.0, "3/3 tests passed"),
        # a*b: 1*2 != 3 and -1*1 != 0 fail, 2*2 == 4 passes: each assert counts on its own
        ("    return a * b\n", ADD, 1 / 3, "1/3 tests passed; first failure: test 1: assert candidate(1, 2) == 3"),
        # a syntax error fails every test
        ("    return a +\n", ADD, 0.0, "0/3 tests passed; first failure: test 1:"),
        # assert list: inc(10) == 12 is wrong in the row on purpose, so 2 of 3 pass
        (
            "def inc(x):\n    return x + 1\n",
            INC,
            2 / 3,
            "2/3 tests passed; first failure: test 3: assert inc(10) == 12",
        ),
        # stdin/stdout: "x" makes int() raise, the two numeric cases pass
        ("print(int(input()) * 2)", DOUBLE, 2 / 3, "2/3 tests passed; first failure: test 3: input 'x' → ValueError"),
        # an empty completion has no code to run
        ("", INC, 0.0, "no code in the completion"),
    ],
)
def test_code_exec_scores_share_of_tests_passed(code_exec, completion, row, score, reason_start):
    grade = code_exec(completion, row)
    assert grade.score == pytest.approx(score)
    assert grade.reason.startswith(reason_start), grade.reason


def test_all_or_nothing_gives_zero_unless_every_test_passes():
    g = CodeExec(all_or_nothing=True)
    # 2 of 3 pass: zero under all-or-nothing; all pass: one
    assert (g("def inc(x):\n    return x + 1\n", INC).score, g("    return a + b\n", ADD).score) == (0.0, 1.0)


def test_infinite_loop_keeps_credit_for_tests_before_it():
    row = {"tests": ["assert f(1) == 1", "assert f(0) == 0", "assert f(2) == 2"]}
    grade = CodeExec(time_limit=1.5)("def f(x):\n    while x == 0:\n        pass\n    return x\n", row)
    # test 1 passed, test 2 hangs until the wall-clock limit, test 3 never ran
    assert grade.score == pytest.approx(1 / 3)
    assert grade.reason.endswith("first failure: test 2: timed out after 1.5s"), grade.reason


def test_io_case_timeout_fails_only_that_case():
    row = {"io": [{"input": "1", "output": "1"}, {"input": "0", "output": "0"}, {"input": "2", "output": "2"}]}
    src = "n = int(input())\nwhile n == 0:\n    pass\nprint(n)"
    grade = CodeExec(case_timeout=0.5, time_limit=10)(src, row)
    # the hanging case is killed after 0.5 s; the cases after it still run and pass
    assert grade.score == pytest.approx(2 / 3)
    assert "test 2: input '0' → timed out after 0.5s" in grade.reason


@pytest.mark.parametrize(
    ("completion", "why"),
    [
        # exiting before the tests run must not count as passing
        ("import sys\nsys.exit(0)\n", "SystemExit"),
        ("import os\nos._exit(0)\n", "stopped early"),
        # printing what looks like passing records on stdout does not count either
        ("print({'total': 1})\nprint({'t': 0, 'ok': True})\nprint({'done': True})\n", "NameError"),
    ],
)
def test_gaming_the_harness_scores_zero(code_exec, completion, why):
    grade = code_exec(completion, {"tests": ["assert inc(1) == 2"]})
    assert grade.score == 0.0 and why in grade.reason, grade.reason


def test_reason_is_trimmed():
    row = {"tests": ["assert f() == 1"]}
    grade = CodeExec()(f"def f():\n    raise ValueError({'x' * 2000!r})\n", row)
    assert grade.score == 0.0 and len(grade.reason) < 400


def test_row_without_tests_is_a_grader_error_not_a_zero():
    out = as_grader(CodeExec()).grade([Sample("def f(): pass", item={"question": "?"})])[0]
    assert out.kind is OutcomeKind.GRADER_ERROR
    assert "needs `test` + `entry_point`" in out.error and "question" in out.error


def test_split_check_makes_each_assert_statement_a_test():
    test = "def check(f):\n    xs = [1, 2]\n    for x in xs:\n        assert f(x) > 0\n    assert f(0) == 0\n"
    code, srcs = split_check(test)
    # set-up stays; a loop of asserts is one test; the plain assert is another
    assert srcs == ["for x in xs:\n        assert f(x) > 0", "assert f(0) == 0"]
    assert "_rft_fail(1, _rft_e)" in code


def test_build_program_keeps_prompt_imports_for_a_full_solution():
    row = {**ADD, "prompt": "import math\n" + ADD["prompt"]}
    mode, job = build_program("def add(a, b):\n    return math.fsum([a, b])\n", row)
    assert mode == "check" and job["code"].startswith("import math\n")


# ---------------------------------------------------------------------------
# the harness program itself, imported and called in this process (harmless input)
# ---------------------------------------------------------------------------


def _harness(mode: str, job: dict) -> list[dict]:
    """Run one harness mode in-process; the records it emitted, in order."""
    records: list[dict] = []
    code_harness.MODES[mode]({"mode": mode, **job}, records.append)
    return records


def test_harness_source_is_the_module_file():
    # what runs in the sandbox is exactly the module the tests below import
    assert harness_source() == Path(code_harness.__file__).read_text(encoding="utf-8")


def test_harness_asserts_mode_reports_each_test():
    recs = _harness("asserts", {"code": "def inc(x):\n    return x + 1\n", "tests": INC["tests"], "setup": ""})
    # the total first, then one verdict per assert; a failing assert does not stop the next
    assert recs[0] == {"total": 3}
    assert [r["ok"] for r in recs[1:]] == [True, True, False]
    assert recs[3]["err"] == "AssertionError" and recs[3]["src"] == "assert inc(10) == 12"


def test_harness_asserts_mode_reports_a_broken_solution_once():
    recs = _harness("asserts", {"code": "def inc(x) return x", "tests": INC["tests"], "setup": ""})
    # a syntax error stops everything: no verdicts, one error
    assert recs[0] == {"total": 3} and len(recs) == 2
    assert recs[1]["error"].endswith("SyntaxError: expected ':'") and 'File "solution.py", line 1' in recs[1]["error"]


def test_harness_check_mode_runs_split_asserts():
    test, srcs = split_check(ADD["test"])
    job = {"code": ADD["prompt"] + "    return a * b\n", "test": test, "srcs": srcs, "entry_point": "add"}
    recs = _harness("check", job)
    # a*b passes only candidate(2, 2) == 4
    assert recs[0] == {"total": 3}
    assert [r["ok"] for r in recs[1:]] == [False, False, True]
    # a missing entry point is an error, not a pass
    missing = _harness("check", {**job, "entry_point": "sub"})
    assert missing[-1] == {"error": "NameError: the solution does not define 'sub'"}


def test_harness_io_mode_compares_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the case files (.case_in, …) are written to the cwd
    # a forked case reads and prints through fds 0 and 1, as in the sandbox (pytest's
    # capture objects would not follow the dup2)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        monkeypatch.setattr(sys, name, open(fd, mode, closefd=False))
    job = {"code": "print(int(input()) * 2)", "io": DOUBLE["io"], "compare": "lines", "case_timeout": 5}
    recs = _harness("io", job)
    # "x" makes int() raise in the forked case process: that case fails with the exception
    assert [r.get("ok") for r in recs[1:]] == [True, True, False]
    assert recs[3]["err"].startswith("ValueError") and recs[3]["src"] == "input 'x'"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("return 0.5", {"value": 0.5}),
        # not JSON-like: reported by repr and type, for the grader to reject
        ("return {1, 2}", {"value": "{1, 2}", "type": "set"}),
    ],
)
def test_harness_grade_mode_reports_the_value(body, expected):
    recs = _harness("grade", {"source": f"def grade(sample, item):\n    {body}\n", "sample": {}, "item": {}})
    assert recs == [{"started": True}, expected]


def test_harness_grade_mode_reports_the_exception():
    recs = _harness("grade", {"source": "def grade(sample, item):\n    return 1 / 0\n", "sample": {}, "item": {}})
    assert recs[-1]["error"] == "ZeroDivisionError: division by zero" and "grader.py" in recs[-1]["traceback"]


def test_harness_one_shot_main_writes_records_to_the_fd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = {"mode": "asserts", "code": "x = 1", "tests": ["assert x == 1"], "setup": ""}
    (tmp_path / "job.bin").write_bytes(marshal.dumps(job))
    r, w = os.pipe()
    try:
        code_harness.main(["main.py", str(w)])  # closes w when its writer is dropped
        lines = os.read(r, 65536).decode().splitlines()
    finally:
        os.close(r)
    assert lines == ["{'total': 1}", "{'t': 0, 'ok': True}", "{'done': True}"]


def test_harness_clean_removes_only_what_a_job_added(tmp_path):
    (tmp_path / "main.py").write_text("kept")
    (tmp_path / "left.txt").write_text("x")
    (tmp_path / "d" / "e").mkdir(parents=True)
    os.chmod(tmp_path / "d", 0o500)  # even a directory the job made read-only goes
    code_harness.clean(str(tmp_path), {"main.py"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.py"]


def test_code_under_test_does_not_inherit_the_harness_future_imports(code_exec):
    # the harness module uses `from __future__ import annotations`; the code it runs must
    # not: its annotations stay evaluated objects, in-process and in the sandbox
    code = "def f(x: int) -> int:\n    return x\n"
    row = {"tests": ["assert f.__annotations__['x'] is int"]}
    recs = _harness("asserts", {"code": code, "tests": row["tests"], "setup": ""})
    assert recs[1] == {"t": 0, "ok": True}
    assert code_exec(code, row).score == 1.0


# ---------------------------------------------------------------------------
# hostile completions against one long-lived harness server per backend
# ---------------------------------------------------------------------------

ISOLATED = [b for b in ("bwrap", "unshare") if sandbox.available_backends().get(b) is None]


@pytest.fixture(
    scope="module", params=ISOLATED or [pytest.param(None, marks=pytest.mark.skip(reason="no isolating backend"))]
)
def served(request) -> CodeExec:
    """One CodeExec per isolating backend: its harness server lives across the tests below."""
    return CodeExec(time_limit=1.5, backend=request.param)


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmd and state != b"Z":
                found.append(int(entry.name))
    return found


def test_hostile_completions_score_zero_and_leave_the_host_alone(served, tmp_path, monkeypatch):
    monkeypatch.setenv("RFT_TEST_SECRET", "hunter2")
    token = uuid.uuid4().hex
    outside = [tmp_path / "escaped", Path(tempfile.gettempdir()) / f"rft-escape-{token}"]
    os.chmod(tmp_path, 0o777)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    passes = {"tests": ["assert done"]}  # the hostile code sets `done = True` when it succeeded
    cases = {
        "infinite loop": "while True:\n    pass\ndone = True\n",
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "memory bomb": "x = bytearray(16 * 1024 ** 3)\ndone = True\n",
        "10 GB file": "f = open('big', 'wb')\nfor _ in range(10240):\n    f.write(b'x' * 2 ** 20)\ndone = True\n",
        "host secret": "import os\ndone = os.environ.get('RFT_TEST_SECRET') == 'hunter2'\n",
        "write outside": "done = False\nfor p in %r:\n    try:\n        open(p, 'w').write('x')\n        done = True\n    except OSError:\n        pass\n"
        % [str(p) for p in outside],
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\ndone = True\n",
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndone = True\n",
    }
    try:
        for name, code in cases.items():
            if name == "kill the parent":  # no test result came back: an infrastructure error, not a score
                with pytest.raises(HarnessKilledError):
                    served(code, passes)
                continue
            grade = served(code, passes)
            if name != "write outside":  # a private /tmp may accept the write; the host must not see it
                assert grade.score == 0.0, (name, grade.reason)
        # and nothing reached the host
        assert [p for p in outside if p.exists()] == []
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
        for p in outside:
            p.unlink(missing_ok=True)
    # the same grader still scores normally afterwards
    assert served("    return a + b\n", ADD).score == 1.0


def test_grandchild_of_a_job_is_gone_when_the_call_returns(served):
    marker = f"grandchild-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(99)', {marker!r}], start_new_session=True)\n"
        "done = True\n"
    )
    # the job itself passes; what it started in its own session must still be killed
    assert served(code, {"tests": ["assert done"]}).score == 1.0
    assert _host_processes_with(marker) == []


def test_a_job_cannot_leave_files_for_the_next_one(served):
    plant = "open('/tmp/answer', 'w').write('42')\nopen('left.txt', 'w').write('42')\ndone = True\n"
    assert served(plant, {"tests": ["assert done"]}).score == 1.0
    # the next job of the same server sees neither the /tmp file nor the working-directory one
    probe = "import os\nseen = os.path.exists('/tmp/answer') or os.path.exists('left.txt')\n"
    assert served(probe, {"tests": ["assert not seen"]}).score == 1.0


def test_killing_the_harness_costs_only_that_sample(served):
    killer = Sample("import os\nos.kill(os.getppid(), 9)\n", item={"tests": ["assert True"]})
    out = as_grader(served).grade([killer])[0]
    # no test result came back: an infrastructure outcome, never a silent 0
    assert out.kind is OutcomeKind.INFRASTRUCTURE and "killed the sandboxed test harness" in out.error
    assert served("    return a + b\n", ADD).score == 1.0


def test_rlimits_only_server_still_scores_and_times_out():
    # the weakest level (no namespaces; as root it may even keep uid 0): jobs still run,
    # time out and are cleaned up by process group, and nothing else is signalled
    g = CodeExec(backend="rlimits-only", time_limit=1.5, require_isolation=False)
    assert g("def inc(x):\n    return x + 1\n", INC).score == pytest.approx(2 / 3)
    assert g("while True:\n    pass\n", INC).score == 0.0
    assert g("def inc(x):\n    return x + 1\n", INC).score == pytest.approx(2 / 3)


def test_one_shot_mode_scores_like_the_server():
    one_shot = CodeExec(persistent=False)
    # same row, same completions, same scores with a fresh sandbox per call
    assert one_shot("    return a * b\n", ADD).score == pytest.approx(1 / 3)
    assert one_shot("print(int(input()) * 2)", DOUBLE).score == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------
# the python grader
# ---------------------------------------------------------------------------

EXACT = "def grade(sample, item):\n    return float(sample['output_text'].strip() == item['answer'])\n"


@pytest.mark.parametrize(
    ("source", "completion", "item", "score"),
    [
        (EXACT, "42\n", {"answer": "42"}, 1.0),  # exact after strip
        (EXACT, "41", {"answer": "42"}, 0.0),
        # output_json is the completion parsed as JSON (all of it is JSON)
        ("def grade(sample, item):\n    return sample['output_json']['n'] / 10\n", '{"n": 7}', {}, 0.7),
        # a bool is a valid score
        ("def grade(sample, item):\n    return 'x' in sample['output_text']\n", "xyz", {}, 1.0),
    ],
)
def test_python_grader_scores(source, completion, item, score):
    out = as_grader(PythonGrader(source)).grade([Sample(completion, item=item)])[0]
    assert (out.kind, out.score) == (OutcomeKind.SCORE, pytest.approx(score))


@pytest.mark.parametrize(
    ("body", "kind", "text"),
    [
        ("return 1 / 0", OutcomeKind.GRADER_ERROR, "ZeroDivisionError"),  # grade raised
        ("return {'score': 1}", OutcomeKind.INVALID_OUTPUT, "dict"),  # not a number
        ("return float('nan')", OutcomeKind.INVALID_OUTPUT, "nan"),
        ("import os\n    os._exit(0)", OutcomeKind.GRADER_ERROR, "stopped without a result"),  # process died
        ("while True:\n        pass", OutcomeKind.TIMEOUT, "time limit of 1s"),
    ],
)
def test_python_grader_faults_have_their_error_kind(body, kind, text):
    g = PythonGrader(f"def grade(sample, item):\n    {body}\n", time_limit=1)
    out = as_grader(g).grade([Sample("x")])[0]
    assert out.kind is kind and text in out.error, out.error


def test_python_grader_never_runs_in_the_grading_process(monkeypatch):
    monkeypatch.setenv("RFT_TEST_SECRET", "hunter2")
    src = "import os\ndef grade(sample, item):\n    return 0.0 if os.environ.get('RFT_TEST_SECRET') is None else 1.0\n"
    assert PythonGrader(src)("x", {}) == 0.0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "must be Python code"),
        ("def score(sample, item):\n    return 1\n", "must define a top-level function grade"),
        ("def grade(sample, item)\n    return 1\n", "line 1"),
    ],
)
def test_python_grader_source_is_checked_at_load(source, message):
    with pytest.raises(ConfigError, match=message):
        PythonGrader(source)


def test_openai_python_grader_object_loads_as_is():
    obj = {"type": "python", "name": "exact", "source": EXACT, "image_tag": "2025-05-08", "pass_threshold": 0.5}
    gs = grader_set_from_config(obj)
    entry = gs["exact"]
    assert entry.grader.name == "python"
    out = entry.grader.grade([Sample("42", item={"answer": "42"})])[0]
    # the score, plus OpenAI's pass mark as a metric
    assert (out.score, out.metrics) == (1.0, {"passed": 1.0})


def test_both_graders_keep_the_grader_contract():
    from rft.testing import check_grader

    # inputs resolve, results are valid, pickle round trip and repeated calls agree
    check_grader(
        CodeExec(time_limit=5), [Sample("    return a + b\n", item=ADD), Sample("    return a * b\n", item=ADD)]
    )
    check_grader(PythonGrader(EXACT), [Sample("42", item={"answer": "42"}), Sample("7", item={"answer": "42"})])


def test_graders_survive_a_pickle_round_trip():
    for g in (CodeExec(all_or_nothing=True, time_limit=3), PythonGrader(EXACT)):
        clone = pickle.loads(pickle.dumps(as_grader(g)))
        assert clone.identity == as_grader(g).identity


def test_require_isolation_refuses_at_load_time(monkeypatch):
    monkeypatch.setenv(sandbox.REQUIRE_ENV, "1")
    with pytest.raises(ConfigError, match="requires an isolated sandbox"):
        CodeExec(backend="rlimits-only")
    with pytest.raises(ConfigError, match="requires an isolated sandbox"):
        PythonGrader(EXACT, backend="rlimits-only")


def test_graders_listing_shows_isolation_level():
    from rft.cli.grading import _grader_notes

    notes = _grader_notes()
    assert notes["code_exec"] == notes["python"] == f"sandbox: {sandbox.isolation_level()}"


# ---------------------------------------------------------------------------
# through the scoring engine
# ---------------------------------------------------------------------------

HOSTILE = [
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",  # fork bomb
    "x = bytearray(16 * 1024 ** 3)\n",  # memory bomb
    "while True:\n    pass\n",  # infinite loop
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)\n",  # kill the parent
    "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(99)', 'MARK'], start_new_session=True)\n",
]


def _engine_set() -> GraderSet:
    return grader_set_from_config(
        {
            "graders": [
                {"name": "code_exec", "time_limit": 1, "timeout": 30},
                {"type": "python", "name": "exact", "source": EXACT, "timeout": 30},
            ]
        }
    )


def _samples(tag: str) -> list[Sample]:
    good = [
        Sample("def inc(x):\n    return x + 1\n", item={**INC, "answer": "def inc(x):\n    return x + 1", "tag": tag})
    ]
    return (
        good
        + [Sample(h, item={**INC, "answer": "?", "tag": tag}) for h in HOSTILE]
        + [Sample("```python\ndef inc(x):\n    return x + 1\n```", item={**INC, "answer": "no", "tag": tag})]
    )


def _check_batch(result) -> None:
    code = result.scores("code_exec")
    # the good completions score 2/3 (the row's third assert is wrong on purpose);
    # every hostile one scores 0 and costs only its own sample, except the one that
    # kills its harness: no test result came back, an infrastructure error, not a 0
    killer = 3
    assert code[0] == pytest.approx(2 / 3) and code[-1] == pytest.approx(2 / 3)
    assert code[1:-1] == [None if i == killer else 0.0 for i in range(len(HOSTILE))]
    assert result.scores("exact") == [1.0] + [0.0] * (len(HOSTILE) + 1)
    assert [(i, gid, o.kind.value) for i, gid, o in result.errors()] == [(1 + killer, "code_exec", "infrastructure")]


#: The engine tests run fork and memory bombs on the default backend: never without isolation.
needs_isolation = pytest.mark.skipif(
    sandbox.isolation_level() == "rlimits-only", reason="hostile programs need an isolating sandbox backend"
)


@pytest.mark.slow
@needs_isolation
def test_local_engine_scores_normally_after_hostile_programs():
    from rft.scoring import ScoringOptions, make_executor

    with make_executor(_engine_set(), "local", ScoringOptions(num_workers=2, cache=False)) as ex:
        _check_batch(ex.score(_samples(uuid.uuid4().hex)))
        # the same pool, again: nothing was broken by the first batch
        _check_batch(ex.score(_samples(uuid.uuid4().hex)))


@pytest.mark.slow
@pytest.mark.ray
@needs_isolation
def test_ray_engine_scores_code_graders(ray_cluster):
    from rft.scoring import ScoringOptions, make_executor

    with make_executor(_engine_set(), "ray", ScoringOptions(num_workers=2, cache=False)) as ex:
        _check_batch(ex.score(_samples(uuid.uuid4().hex)))
