"""The test harness of ``code_exec`` and the ``python`` grader; runs inside the sandbox as ``main.py``.

Standard library only (the sandbox starts Python with ``-I -S``); importing this module
runs nothing. Two ways to start it:

One-shot, ``main.py FD``
    the job is in ``job.bin`` (marshal: reading it needs no import, which keeps
    interpreter start-up short); records go to file descriptor ``FD``.
Server, ``main.py FD serve ISOLATED SANDBOX_UID_BASE``
    jobs arrive on stdin as 4-byte big-endian length + marshal; each runs in a forked
    child in a fresh directory with its own CPU limit; after it, every other process of
    the sandbox uid is killed and the directory and ``/tmp`` are wiped, then one line
    ``{"job": k, "out": …, "timed_out": …, "status": …, "stderr": …}`` goes to ``FD``.

A job reports Python literals, one per line: ``{"total": n}``, then ``{"t": i, "ok": bool,
"err": str, "src": str}`` per test, ``{"error": str}`` when the program cannot run further,
and ``{"done": True}`` at the end. Job modes: ``check`` (HumanEval ``check(candidate)``),
``asserts`` (a list of assert statements), ``io`` (stdin/stdout cases), ``grade`` (an
OpenAI python grader's ``grade(sample, item)``).

Code under test is compiled with ``dont_inherit=True``, so this module's own
``from __future__`` imports never change how it runs.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False  # typing itself is not imported: a one-shot run pays for every import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    Job = dict[str, Any]
    Emit = Callable[[dict[str, Any]], None]

#: Bytes of job output a server keeps per job.
MAX_JOB_OUTPUT = 4_000_000
#: Imported once by a server, so that a forked job finds them loaded.
JOB_IMPORTS = (
    "typing",
    "math",
    "re",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "random",
    "fractions",
    "decimal",
    "statistics",
    "json",
    "traceback",
    "copy",
    "operator",
    "datetime",
    "hashlib",
)


def _compile(source: str, filename: str) -> Any:
    """Compile code under test as if on its own (no future flags inherited from here)."""
    return compile(source, filename, "exec", dont_inherit=True)


def describe_error(e: BaseException) -> str:
    """The last line of a traceback: ``ValueError: bad``.

    >>> describe_error(ValueError("bad"))
    'ValueError: bad'
    """
    import traceback

    return "".join(traceback.format_exception_only(type(e), e)).strip()


def check_mode(job: Job, emit: Emit) -> None:
    """HumanEval: run the solution, the test code, then ``check(entry_point)``.

    Each assert statement of ``check`` was rewritten (``split_check``) to call
    ``_rft_pass(i)`` or ``_rft_fail(i, error)``.
    """
    srcs = job["srcs"]
    emit({"total": max(len(srcs), 1)})
    g: dict[str, Any] = {"__name__": "__main__"}
    g["_rft_pass"] = lambda i: emit({"t": i, "ok": True})
    g["_rft_fail"] = lambda i, e: emit({"t": i, "ok": False, "err": describe_error(e), "src": srcs[i]})
    try:
        exec(_compile(job["code"], "solution.py"), g)
        exec(_compile(job["test"], "test.py"), g)
        entry = job["entry_point"]
        if entry not in g:
            raise NameError(f"the solution does not define {entry!r}")
        g["check"](g[entry])
        if not srcs:
            emit({"t": 0, "ok": True})
    except BaseException as e:
        emit({"error": describe_error(e)})


def asserts_mode(job: Job, emit: Emit) -> None:
    """Assert lists: run the solution and the set-up, then each test statement on its own."""
    tests = job["tests"]
    emit({"total": len(tests)})
    g: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(_compile(job["code"], "solution.py"), g)
        if job.get("setup"):
            exec(_compile(job["setup"], "setup.py"), g)
    except BaseException as e:
        emit({"error": describe_error(e)})
        return
    for i, src in enumerate(tests):
        try:
            exec(_compile(src, f"test_{i}.py"), g)
        except Exception as e:
            emit({"t": i, "ok": False, "err": describe_error(e), "src": src})
        else:
            emit({"t": i, "ok": True})


def normalize(text: str, how: str) -> str | list[str]:
    """Output as compared for ``compare: how`` (``exact``, ``tokens`` or ``lines``).

    >>> normalize("1  2\\n3 \\n\\n", "lines"), normalize("1  2\\n3", "tokens")
    (['1  2', '3'], ['1', '2', '3'])
    """
    if how == "exact":
        return text
    if how == "tokens":
        return text.split()
    return [line.rstrip() for line in text.rstrip().splitlines()]


def _run_case(code: Any) -> NoReturn:
    """In a forked child: run ``code`` on the case files as stdin/stdout/stderr, then exit."""
    status = 0
    try:
        streams = (
            (".case_in", os.O_RDONLY),
            (".case_out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (".case_err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        )
        for fd, (name, flags) in enumerate(streams):
            os.dup2(os.open(name, flags, 0o644), fd)
        try:
            exec(code, {"__name__": "__main__"})
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                status = e.code or 0
            else:
                sys.stderr.write(f"{e.code}\n")
                status = 1
        except BaseException:
            import traceback

            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def io_mode(job: Job, emit: Emit) -> None:
    """stdin/stdout cases: fork the compiled program once per case (files ``.case_*`` in the cwd)."""
    import select
    import signal

    cases = job["io"]
    emit({"total": len(cases)})
    try:
        code = _compile(job["code"], "solution.py")
    except BaseException as e:
        emit({"error": describe_error(e)})
        return
    limit = job.get("case_timeout")
    for i, case in enumerate(cases):
        with open(".case_in", "w") as f:
            f.write(case["input"])
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_case(code)
        timed_out = False
        if limit:
            fd = os.pidfd_open(pid)
            if not select.select([fd], [], [], limit)[0]:
                os.kill(pid, signal.SIGKILL)
                timed_out = True
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        exit_code = os.waitstatus_to_exitcode(status)
        with open(".case_out", errors="replace") as f:
            out = f.read()
        with open(".case_err", errors="replace") as f:
            err = f.read()
        src = f"input {case['input'][:80]!r}"
        if timed_out:
            emit({"t": i, "ok": False, "err": f"timed out after {limit}s", "src": src})
        elif exit_code != 0:
            last = err.strip().splitlines()[-1] if err.strip() else f"exit status {exit_code}"
            emit({"t": i, "ok": False, "err": last, "src": src})
        elif normalize(out, job["compare"]) != normalize(case["output"], job["compare"]):
            emit({"t": i, "ok": False, "err": f"expected {case['output'][:80]!r}, got {out[:80]!r}", "src": src})
        else:
            emit({"t": i, "ok": True})


def plain(v: object) -> bool:
    """``v`` is JSON-like: bool, int, finite float, str, None, and lists/tuples/str-keyed dicts of them.

    >>> plain({"a": [1, 2.5, None]}), plain(float("nan")), plain({1: 2})
    (True, False, False)
    """
    if type(v) in (bool, int, str, type(None)):
        return True
    if isinstance(v, float) and type(v) is float:
        return v == v and v not in (float("inf"), float("-inf"))
    if isinstance(v, (list, tuple)) and type(v) in (list, tuple):
        return all(plain(x) for x in v)
    if isinstance(v, dict) and type(v) is dict:
        return all(type(k) is str and plain(x) for k, x in v.items())
    return False


def grade_mode(job: Job, emit: Emit) -> None:
    """OpenAI python grader: run ``source``, then ``grade(sample, item)``; report its value."""
    emit({"started": True})
    g: dict[str, Any] = {"__name__": "__grader__"}
    try:
        exec(_compile(job["source"], "grader.py"), g)
        value = g["grade"](job["sample"], job["item"])
    except BaseException as e:
        import traceback

        emit({"error": describe_error(e), "traceback": traceback.format_exc()[-4000:]})
        return
    if plain(value):
        emit({"value": value})
    else:
        emit({"value": repr(value)[:200], "type": type(value).__name__})


MODES: dict[str, Callable[[Job, Emit], None]] = {
    "check": check_mode,
    "asserts": asserts_mode,
    "io": io_mode,
    "grade": grade_mode,
}


def writer(fd: int) -> Emit:
    """An ``emit`` that writes each record as one ``repr`` line to ``fd`` and flushes."""
    f = os.fdopen(fd, "w")

    def emit(obj: dict[str, Any]) -> None:
        f.write(repr(obj) + "\n")
        f.flush()

    return emit


def _others() -> list[int]:
    """Live processes of our uid other than us: what a job left behind."""
    me, uid, out = os.getpid(), os.getuid(), []
    for n in os.listdir("/proc"):
        if n.isdigit() and int(n) != me:
            try:
                if os.stat("/proc/" + n).st_uid != uid:
                    continue
                with open(f"/proc/{n}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state not in (b"Z", b"X"):
                out.append(int(n))
    return out


def _reap() -> None:
    """Collect every exited child (there may be none)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            continue
    except ChildProcessError:
        return  # no children left


def _kill_all(pgid: int, sweep: bool) -> None:
    """Kill what a job left: every other process of our uid, or (``sweep`` False) its group."""
    import time

    if not sweep:  # uid 0 or a shared uid: only the job's own process group is ours to kill
        try:
            os.killpg(pgid, 9)
        except OSError:
            return  # the group is gone already
        return
    deadline = time.monotonic() + 5
    while _others():
        if time.monotonic() > deadline:
            raise SystemExit("harness: processes of a job survived SIGKILL")
        try:
            os.kill(-1, 9)  # every process of our uid but us (we are its only survivor)
        except ProcessLookupError:
            pass  # nothing left to signal (only zombies): reaped below
        _reap()
        time.sleep(0.001)


def _remove(p: str) -> None:
    """Delete ``p``, a file, link or directory tree (made writable first)."""
    if os.path.isdir(p) and not os.path.islink(p):
        for root, dirs, files in os.walk(p, topdown=False):
            os.chmod(root, 0o700)
            for n in files:
                os.unlink(os.path.join(root, n))
            for n in dirs:
                q = os.path.join(root, n)
                if os.path.islink(q):
                    os.unlink(q)
                else:
                    os.rmdir(q)
        os.rmdir(p)
    else:
        os.unlink(p)


def clean(path: str, keep: set[str]) -> None:
    """Remove what a job added to directory ``path``: every entry not in ``keep``."""
    for n in os.listdir(path):
        if n not in keep:
            _remove(os.path.join(path, n))


def _run_job_child(job: Job, jobdir: str, chan_fd: int, r: int, w: int) -> NoReturn:
    """In the forked child of a server: run one job in ``jobdir`` with its CPU limit, then exit.

    Exits 0 after the job's ``done`` record; 1 (traceback on the job's output) when
    something escaped the job's mode, which the grader reports as stopping early.
    """
    import resource

    status = 1
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
        job_emit = writer(w)
        MODES[job["mode"]](job, job_emit)
        job_emit({"done": True})
        sys.stdout.flush()
        sys.stderr.flush()
        status = 0
    except BaseException:  # no "done" record: the grader reports that the program stopped early
        import traceback

        traceback.print_exc()
    finally:
        os._exit(status)  # never back into the server loop, whatever happened


def serve(chan_fd: int, isolated: bool, sandbox_uid_base: int) -> None:
    """Run jobs from stdin until it closes; one result line per job to ``chan_fd``."""
    import select
    import time

    # kill(-1) after a job is safe in our own PID namespace, or as a per-run sandbox uid;
    # never as a shared uid outside a namespace (it would reach the user's other processes)
    sweep = isolated or os.getuid() >= sandbox_uid_base
    private_tmp = isolated
    try:  # not dumpable: a job (same uid) cannot ptrace us or reopen our fds via /proc
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except (OSError, AttributeError) as e:
        sys.stderr.write(f"harness: could not make the server undumpable: {e}\n")
    for name in JOB_IMPORTS:
        try:
            __import__(name)
        except ImportError:
            continue  # optional: a job importing it pays the import itself
    emit = writer(chan_fd)
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
            _run_job_child(job, jobdir, chan_fd, r, w)
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
                elif len(buf) < MAX_JOB_OUTPUT:
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
            if len(buf) < MAX_JOB_OUTPUT:
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
            clean(path, names)
        code = None if timed_out else os.waitstatus_to_exitcode(status)
        emit({"job": k, "out": buf.decode("utf-8", "replace"), "timed_out": timed_out, "status": code, "stderr": tail})


def main(argv: list[str]) -> None:
    """Start as a server (``FD serve ISOLATED UID_BASE``) or run the one job in ``job.bin`` (``FD``)."""
    if len(argv) > 2 and argv[2] == "serve":
        serve(int(argv[1]), argv[3] == "1", int(argv[4]))
        return
    with open("job.bin", "rb") as f:
        job = marshal.load(f)
    emit = writer(int(argv[1]))
    MODES[job["mode"]](job, emit)
    emit({"done": True})


if __name__ == "__main__":
    main(sys.argv)
