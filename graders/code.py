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
harness is retried once in a fresh sandbox and then scores 0 ("killed the sandboxed test
harness"), costing only its own sample. ``persistent: false`` starts a fresh sandbox per
completion instead (slower, nothing shared at all).

``python`` is OpenAI's python grader, ``{"type": "python", "source": "def grade(sample,
item) -> float: …"}``, run in the sandbox, never in the grading process.

The sandbox (:mod:`rft.sandbox`) is the security boundary for the host. The harness is
not a boundary against the code it grades: a program written to forge the harness's
report from inside its own process can do so, like in every in-process test runner.
"""

from __future__ import annotations

import ast
import atexit
import functools
import io
import json
import logging
import marshal
import os
import re
import select
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import rft
import rft.sandbox as sandbox
from rft.core import Grade
from rft.core.errors import ConfigError, GraderFailure, GraderInfrastructureError
from rft.core.parsing import completion_text, extract_code, extract_json

logger = logging.getLogger(__name__)

__all__ = ["CodeExec", "PythonGrader", "build_program"]

#: Longest failure text kept in ``Grade.reason``.
REASON_CHARS = 300
#: OpenAI's limit on a python grader's source.
MAX_SOURCE_BYTES = 256 * 1024

# The harness runs inside the sandbox as ``main.py``. One-shot (``main.py FD``): the job
# is in ``job.bin`` (marshal: reading it needs no import, which keeps interpreter
# start-up short). Server (``main.py FD serve``): jobs arrive on stdin as 4-byte
# big-endian length + marshal, each runs in a forked child in a fresh directory with its
# own CPU limit; after it, every other process of the sandbox uid is killed and the
# directory and /tmp are wiped, then one line {"job": k, "out": …, "timed_out": …,
# "status": …, "stderr": …} goes to the channel. Jobs report Python literals, one per
# line: {"total": n}, then {"t": i, "ok": bool, "err": str, "src": str} per test,
# {"error": str} when the program cannot run further, and {"done": True} at the end.
_HARNESS = r"""
import marshal, os, sys

def _err(e):
    import traceback
    return "".join(traceback.format_exception_only(type(e), e)).strip()

def _check_mode(job, emit):
    srcs = job["srcs"]
    emit({"total": max(len(srcs), 1)})
    g = {"__name__": "__main__"}
    g["_rft_pass"] = lambda i: emit({"t": i, "ok": True})
    g["_rft_fail"] = lambda i, e: emit({"t": i, "ok": False, "err": _err(e), "src": srcs[i]})
    try:
        exec(compile(job["code"], "solution.py", "exec"), g)
        exec(compile(job["test"], "test.py", "exec"), g)
        entry = job["entry_point"]
        if entry not in g:
            raise NameError("the solution does not define %r" % entry)
        g["check"](g[entry])
        if not srcs:
            emit({"t": 0, "ok": True})
    except BaseException as e:
        emit({"error": _err(e)})

def _asserts_mode(job, emit):
    tests = job["tests"]
    emit({"total": len(tests)})
    g = {"__name__": "__main__"}
    try:
        exec(compile(job["code"], "solution.py", "exec"), g)
        if job.get("setup"):
            exec(compile(job["setup"], "setup.py", "exec"), g)
    except BaseException as e:
        emit({"error": _err(e)})
        return
    for i, src in enumerate(tests):
        try:
            exec(compile(src, "test_%d.py" % i, "exec"), g)
        except Exception as e:
            emit({"t": i, "ok": False, "err": _err(e), "src": src})
        else:
            emit({"t": i, "ok": True})

def _norm(text, how):
    if how == "exact":
        return text
    if how == "tokens":
        return text.split()
    return [line.rstrip() for line in text.rstrip().splitlines()]

def _io_mode(job, emit):
    import select, signal
    cases = job["io"]
    emit({"total": len(cases)})
    try:
        code = compile(job["code"], "solution.py", "exec")
    except BaseException as e:
        emit({"error": _err(e)})
        return
    limit = job.get("case_timeout")
    for i, case in enumerate(cases):
        with open(".case_in", "w") as f:
            f.write(case["input"])
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                for fd, (name, flags) in enumerate(((".case_in", os.O_RDONLY), (".case_out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), (".case_err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))):
                    os.dup2(os.open(name, flags, 0o644), fd)
                try:
                    exec(code, {"__name__": "__main__"})
                except SystemExit as e:
                    if e.code is None or isinstance(e.code, int):
                        status = e.code or 0
                    else:
                        print(e.code, file=sys.stderr)
                        status = 1
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    status = 1
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(status)
        timed_out = False
        if limit:
            fd = os.pidfd_open(pid)
            if not select.select([fd], [], [], limit)[0]:
                os.kill(pid, signal.SIGKILL)
                timed_out = True
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        code_ = os.waitstatus_to_exitcode(status)
        with open(".case_out", errors="replace") as f:
            out = f.read()
        with open(".case_err", errors="replace") as f:
            err = f.read()
        src = "input %r" % case["input"][:80]
        if timed_out:
            emit({"t": i, "ok": False, "err": "timed out after %ss" % limit, "src": src})
        elif code_ != 0:
            last = err.strip().splitlines()[-1] if err.strip() else "exit status %d" % code_
            emit({"t": i, "ok": False, "err": last, "src": src})
        elif _norm(out, job["compare"]) != _norm(case["output"], job["compare"]):
            emit({"t": i, "ok": False, "err": "expected %r, got %r" % (case["output"][:80], out[:80]), "src": src})
        else:
            emit({"t": i, "ok": True})

def _plain(v):
    if type(v) in (bool, int, str, type(None)):
        return True
    if type(v) is float:
        return v == v and v not in (float("inf"), float("-inf"))
    if type(v) in (list, tuple):
        return all(_plain(x) for x in v)
    if type(v) is dict:
        return all(type(k) is str and _plain(x) for k, x in v.items())
    return False

def _grade_mode(job, emit):
    emit({"started": True})
    g = {"__name__": "__grader__"}
    try:
        exec(compile(job["source"], "grader.py", "exec"), g)
        value = g["grade"](job["sample"], job["item"])
    except BaseException as e:
        import traceback
        emit({"error": _err(e), "traceback": traceback.format_exc()[-4000:]})
        return
    if _plain(value):
        emit({"value": value})
    else:
        emit({"value": repr(value)[:200], "type": type(value).__name__})

_MODES = {"check": _check_mode, "asserts": _asserts_mode, "io": _io_mode, "grade": _grade_mode}

def _writer(fd):
    f = os.fdopen(fd, "w")
    def emit(obj):
        f.write(repr(obj) + "\n")
        f.flush()
    return emit

def _others():
    # live processes of our uid other than us: what a job left behind
    me, uid, out = os.getpid(), os.getuid(), []
    for n in os.listdir("/proc"):
        if n.isdigit() and int(n) != me:
            try:
                if os.stat("/proc/" + n).st_uid != uid:
                    continue
                with open("/proc/%s/stat" % n, "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                out.append(int(n))
    return out

def _reap():
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass

def _kill_all(pgid, sweep):
    import time
    if not sweep:  # uid 0 or a shared uid: only the job's own process group is ours to kill
        try:
            os.killpg(pgid, 9)
        except OSError:
            pass
        return
    deadline = time.monotonic() + 5
    while _others():
        if time.monotonic() > deadline:
            raise SystemExit("harness: processes of a job survived SIGKILL")
        try:
            os.kill(-1, 9)  # every process of our uid but us (we are its only survivor)
        except ProcessLookupError:
            pass
        _reap()
        time.sleep(0.001)

def _remove(p):
    if os.path.isdir(p) and not os.path.islink(p):
        for root, dirs, files in os.walk(p, topdown=False):
            os.chmod(root, 0o700)
            for n in files:
                os.unlink(os.path.join(root, n))
            for n in dirs:
                q = os.path.join(root, n)
                os.unlink(q) if os.path.islink(q) else os.rmdir(q)
        os.rmdir(p)
    else:
        os.unlink(p)

def _clean(path, keep):
    # remove what a job added to `path` (everything but the entries in `keep`)
    for n in os.listdir(path):
        if n not in keep:
            _remove(os.path.join(path, n))

_job_imports = (
    "typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string",
    "random", "fractions", "decimal", "statistics", "json", "traceback", "copy", "operator",
    "datetime", "hashlib",
)

def _serve(chan_fd, isolated, sandbox_uid_base):
    # kill(-1) after a job is safe in our own PID namespace, or as a per-run sandbox uid;
    # never as a shared uid outside a namespace (it would reach the user's other processes)
    sweep = isolated or os.getuid() >= sandbox_uid_base
    private_tmp = isolated
    import resource, select, time
    try:  # not dumpable: a job (same uid) cannot ptrace us or reopen our fds via /proc
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    for name in _job_imports:  # imported once here, so a forked job finds them loaded
        try:
            __import__(name)
        except ImportError:
            pass
    emit = _writer(chan_fd)
    emit({"ready": True})
    base = os.getcwd()
    keep = {base: set(os.listdir(base))}
    if private_tmp:
        keep["/tmp"] = set(os.listdir("/tmp"))
    inp = os.fdopen(0, "rb")
    k = 0
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        job = marshal.loads(inp.read(int.from_bytes(head, "big")))
        k += 1
        t0 = time.monotonic()
        jobdir = os.path.join(base, "job")
        os.mkdir(jobdir, 0o700)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.close(chan_fd)
                os.setpgid(0, 0)
                os.chdir(jobdir)
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                out = os.open(".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(out, 1)
                os.dup2(out, 2)
                cpu = int(job["time_limit"]) + 1
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
                job_emit = _writer(w)
                _MODES[job["mode"]](job, job_emit)
                job_emit({"done": True})
                sys.stdout.flush(); sys.stderr.flush()
            except BaseException:
                pass
            os._exit(0)
        os.close(w)
        pidfd = os.pidfd_open(pid)
        buf, watch, timed_out = bytearray(), [pidfd, r], False
        while True:
            left = t0 + job["time_limit"] - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready = select.select(watch, [], [], left)[0]
            if r in ready:
                data = os.read(r, 65536)
                if not data:
                    watch.remove(r)
                elif len(buf) < 4_000_000:
                    buf += data
            if pidfd in ready:
                break
        if timed_out:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
        _kill_all(pid, sweep)
        os.set_blocking(r, False)
        while r in watch:
            try:
                data = os.read(r, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            if len(buf) < 4_000_000:
                buf += data
        os.close(r)
        os.close(pidfd)
        try:
            with open(os.path.join(jobdir, ".out"), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 1000))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            tail = ""
        for path, names in keep.items():
            _clean(path, names)
        code = None if timed_out else os.waitstatus_to_exitcode(status)
        emit({"job": k, "out": buf.decode("utf-8", "replace"), "timed_out": timed_out, "status": code, "stderr": tail})

if len(sys.argv) > 2 and sys.argv[2] == "serve":
    _serve(int(sys.argv[1]), sys.argv[3] == "1", int(sys.argv[4]))
else:
    with open("job.bin", "rb") as _f:
        _job = marshal.load(_f)
    _emit = _writer(int(sys.argv[1]))
    _MODES[_job["mode"]](_job, _emit)
    _emit({"done": True})
"""


def _trim(text: str, n: int = REASON_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


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
        prompt = item.get("prompt") if isinstance(item.get("prompt"), str) else ""
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


def _literal(line: bytes | str) -> Any:
    """A Python literal written by the harness; None when the line is not one."""
    try:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        return ast.literal_eval(text)  # literals only: nothing is executed
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _records(channel: str) -> list[dict[str, Any]]:
    return [rec for rec in map(_literal, channel.splitlines()) if isinstance(rec, dict)]


def _limits(time_limit: float, memory_mb: int) -> sandbox.Limits:
    return sandbox.Limits(wall_s=float(time_limit), memory_mb=int(memory_mb))


#: CPU seconds of a harness server itself (each job gets its own ``time_limit`` in CPU).
_SERVER_CPU_S = 24 * 3600
#: Seconds a server may take beyond a job's time limit (clean-up) before it is replaced.
_SERVER_GRACE_S = 15.0
#: Idle servers kept per grader instance.
_MAX_IDLE = 8


class HarnessKilledError(Exception):
    """The program under test killed the harness that was running it (twice)."""


class _Server:
    """A harness in server mode in one long-lived sandbox: jobs in, one result line out."""

    def __init__(self, owner: _SandboxedGrader):
        level = owner.backend or sandbox.isolation_level()
        isolated = level in ("bwrap", "unshare")
        argv = sandbox.python_argv(
            "main.py", "{channel_fd}", "serve", str(int(isolated)), str(sandbox.SANDBOX_UID_BASE)
        )
        limits = sandbox.Limits(wall_s=owner.time_limit, cpu_s=_SERVER_CPU_S, memory_mb=owner.memory_mb)
        self.proc = sandbox.spawn(
            argv,
            files={"main.py": _HARNESS},
            limits=limits,
            backend=owner.backend,
            require_isolation=owner.require_isolation,
        )
        self.backend = self.proc.backend
        self.pid = os.getpid()
        self._buf = b""
        self._k = 0
        if self._read_until(lambda rec: rec.get("ready") is True, _SERVER_GRACE_S * 4) is None:
            tail = self.proc.stderr_tail(500).strip() or "no output"
            self.proc.close()
            raise sandbox.SandboxError(f"the harness server did not start in the sandbox ({self.backend}): {tail}")
        self.proc.release_directory()

    def _read_until(self, want: Any, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.channel_fd
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                rec = _literal(line)
                if isinstance(rec, dict) and want(rec):
                    return rec
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk

    def run(self, job: Mapping[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one job and wait for its result line; None when the server died or hung."""
        data = marshal.dumps(dict(job))
        self._k += 1
        stdin = self.proc.stdin
        if stdin is None:  # spawn() always makes the pipe; a closed server has none
            return None
        try:
            stdin.write(len(data).to_bytes(4, "big") + data)
            stdin.flush()
        except OSError:
            return None
        k = self._k
        return self._read_until(lambda rec: rec.get("job") == k, timeout)

    def close(self) -> None:
        self.proc.close()


class _Pool:
    """Idle harness servers of one grader instance, shared by its threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[_Server] = []

    def get(self, owner: _SandboxedGrader) -> _Server:
        with self.lock:
            while self.idle:
                server = self.idle.pop()
                if server.pid == os.getpid() and server.proc.alive():
                    return server
        return _Server(owner)

    def put(self, server: _Server) -> None:
        with self.lock:
            if server.proc.alive() and len(self.idle) < _MAX_IDLE:
                self.idle.append(server)
                return
        server.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for server in idle:
            if server.pid == os.getpid():
                server.close()


_POOLS: weakref.WeakKeyDictionary[Any, _Pool] = weakref.WeakKeyDictionary()
_POOLS_LOCK = threading.Lock()


def _pool(owner: Any) -> _Pool:
    with _POOLS_LOCK:
        pool = _POOLS.get(owner)
        if pool is None:
            pool = _POOLS[owner] = _Pool()
            weakref.finalize(owner, pool.close)
        return pool


@atexit.register
def _close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    for pool in pools:
        pool.close()


class _SandboxedGrader:
    """Shared parameters and sandbox plumbing of the sandboxed graders."""

    def _init_sandbox(
        self,
        time_limit: float,
        memory_mb: int,
        backend: str | None,
        require_isolation: bool | None,
        persistent: bool,
        who: str,
    ) -> None:
        try:
            self.limits = _limits(time_limit, memory_mb)
        except sandbox.SandboxError as err:
            raise ConfigError(f"grader {who!r}: {err}") from None
        if backend is not None and backend not in sandbox.BACKENDS:
            raise ConfigError(
                f"grader {who!r}: unknown sandbox backend {backend!r}; valid: {', '.join(sandbox.BACKENDS)}"
            )
        self.time_limit = float(time_limit)
        self.memory_mb = int(memory_mb)
        self.backend = backend
        self.require_isolation = require_isolation
        self.persistent = bool(persistent)
        required = sandbox.require_isolation_default() if require_isolation is None else require_isolation
        if required and (backend or sandbox.isolation_level()) == "rlimits-only":
            # refuse at load time, not at step 100
            raise ConfigError(
                f"grader {who!r} requires an isolated sandbox, but only 'rlimits-only' is available here; "
                "install bubblewrap (apt-get install bubblewrap) or allow unshare namespaces"
            )

    def _run(self, job: Mapping[str, Any]) -> tuple[sandbox.SandboxResult, list[dict[str, Any]]]:
        """Run the harness on ``job``; the result and the harness's records.

        Raises:
            GraderInfrastructureError: the sandbox could not run the harness at all
                (a broken backend, limits too small for the interpreter): never a 0.
            HarnessKilledError: the program killed the harness, in two fresh sandboxes.
        """
        if self.persistent:
            return self._run_served(job)
        try:
            result = sandbox.run_python(
                _HARNESS,
                args=["{channel_fd}"],
                files={"job.bin": marshal.dumps(dict(job))},
                limits=self.limits,
                backend=self.backend,
                require_isolation=self.require_isolation,
                channel=True,
            )
        except sandbox.SandboxError as err:
            raise GraderInfrastructureError(f"sandbox: {err}") from err
        records = _records(result.channel)
        if not records and not result.timed_out:
            tail = result.stderr.strip()[-500:] or "no output"
            raise GraderInfrastructureError(
                f"the sandbox ({result.backend}) did not start the harness ({result.describe()}): {tail}"
            )
        return result, records

    def _run_served(self, job: Mapping[str, Any]) -> tuple[sandbox.SandboxResult, list[dict[str, Any]]]:
        pool = _pool(self)
        job = {**job, "time_limit": self.time_limit}
        for _attempt in range(2):
            t0 = time.perf_counter()
            try:
                server = pool.get(self)
            except sandbox.SandboxError as err:
                raise GraderInfrastructureError(f"sandbox: {err}") from err
            rec = server.run(job, self.time_limit + _SERVER_GRACE_S)
            if rec is None:
                # the harness died or hung on this job: maybe the job killed it, maybe
                # not; either way, try once more in a fresh sandbox
                logger.info("sandbox harness died on a job (%s); retrying in a fresh one", server.proc.stderr_tail(300))
                server.close()
                continue
            pool.put(server)
            result = sandbox.SandboxResult(
                returncode=rec.get("status"),
                stdout="",
                stderr=str(rec.get("stderr") or ""),
                timed_out=bool(rec.get("timed_out")),
                wall_s=time.perf_counter() - t0,
                backend=server.backend,
                channel=str(rec.get("out") or ""),
                uid=server.proc.uid,
            )
            return result, _records(result.channel)
        raise HarnessKilledError("the program killed the sandboxed test harness (twice, in fresh sandboxes)")


@rft.grader(name="code_exec", range=(0.0, 1.0))
class CodeExec(_SandboxedGrader):
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
        try:
            result, records = self._run(job)
        except HarnessKilledError as err:
            return Grade(0.0, f"0 tests passed; {err}", {"passed": 0.0, "total": 0.0})
        return self._grade(result, records)

    def _grade(self, result: sandbox.SandboxResult, records: list[dict[str, Any]]) -> Grade:
        total = next((int(r["total"]) for r in records if isinstance(r.get("total"), int)), 0)
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
            r = verdicts.get(t)
            if r is None:
                why = error or (f"timed out after {self.time_limit:g}s" if result.timed_out else None)
                if why is None and not done:
                    why = f"the program stopped early ({result.describe()})"
                    tail = result.stderr.strip().splitlines()[-1:] or []
                    why += f": {tail[0]}" if tail else ""
                failure = f"test {t + 1}: {why or 'not run'}"
                break
            if not r.get("ok"):
                src = str(r.get("src") or "").strip()
                failure = f"test {t + 1}: {src + ' → ' if src else ''}{r.get('err', 'failed')}"
                break
        if total == 0:  # timed out before the harness said anything: a loaded machine or a tiny limit
            failure = f"timed out after {self.time_limit:g}s before the tests started"
        score = passed / total if total else 0.0
        if self.all_or_nothing:
            score = 1.0 if total and passed == total else 0.0
        reason = f"{passed}/{total} tests passed"
        if failure:
            reason += f"; first failure: {_trim(failure)}"
        if result.timed_out and "timed out" not in (failure or ""):
            reason += f" (timed out after {self.time_limit:g}s)"
        metrics = {"passed": float(passed), "total": float(total)}  # latency: the engine's latency_s
        return Grade(score, reason, metrics)


class PythonGraderError(GraderFailure):
    """The ``grade`` function of a python grader raised (or crashed its process) in the sandbox."""

    outcome_kind = "grader_error"


class SandboxTimeoutError(GraderFailure):
    """A python grader's ``grade`` ran past its ``time_limit``; recorded as kind ``timeout``."""

    outcome_kind = "timeout"


@rft.grader(name="python")
class PythonGrader(_SandboxedGrader):
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
        persistent: reuse long-lived sandboxed harness servers (see :class:`CodeExec`).

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


@rft.hookimpl
def rft_register_graders(register):
    register(CodeExec)
    register(PythonGrader)
