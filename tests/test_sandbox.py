"""The sandbox contains hostile programs, on the best backend and on the fallback.

Every hostile test runs on each isolating backend that works here (bubblewrap, and the
``unshare`` fallback forced with ``backend=``). "Contained" means: the program gets the
outcome it deserves (killed, refused, failing) and the host is unaffected (no file
written outside the sandbox, no process left, no connection made, no secret read).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

import rft.sandbox as sandbox
from rft.sandbox import Limits, SandboxError, SandboxUnavailableError, run, run_python
from rft.sandbox.programs import unshare_init

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox needs Linux")

ISOLATED = [b for b in ("bwrap", "unshare") if sandbox.available_backends().get(b) is None]
#: Short limits keep the hostile tests quick; each is still far above what a test needs.
SHORT = Limits(wall_s=3.0, memory_mb=512, nproc=16, fsize_mb=8, disk_mb=32)


@pytest.fixture(
    params=ISOLATED or [pytest.param(None, marks=pytest.mark.skip(reason="no isolating backend works here"))]
)
def backend(request) -> str:
    """Each isolating backend that works on this machine."""
    return request.param


def _processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry.name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":  # a zombie is dead, only not reaped yet
            found.append(int(entry.name))
    return found


def _processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


# ---------------------------------------------------------------------------
# plain behaviour
# ---------------------------------------------------------------------------


def test_runs_program_with_stdin_stdout_and_exit_status(backend):
    r = run_python(
        "import sys\ndata = sys.stdin.read()\nprint(data.upper())\nsys.exit(3)", stdin="abc", backend=backend
    )
    # exit status 3 is the program's own; stdout is what it printed
    assert (r.returncode, r.stdout, r.timed_out, r.backend) == (3, "ABC\n", False, backend)


def test_files_are_in_the_working_directory_and_it_is_writable(backend):
    src = (
        "import os\nprint(open('data/in.txt').read())\nopen('out.txt', 'w').write('x')\nprint(sorted(os.listdir('.')))"
    )
    r = run_python(src, files={"data/in.txt": "hello"}, backend=backend)
    assert r.ok, r.stderr
    # the input file was placed, and the program could create a file next to it
    assert r.stdout.splitlines() == ["hello", "['data', 'main.py', 'out.txt']"]


def test_signal_death_is_a_negative_returncode(backend):
    r = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", backend=backend)
    # like subprocess: -N for "killed by signal N", also through a PID-namespace init
    assert (r.returncode, r.describe()) == (-signal.SIGKILL, "killed by SIGKILL")


def test_output_is_capped_and_marked_truncated(backend):
    r = run_python("print('x' * 100_000)", limits=Limits(max_output_bytes=1000), backend=backend)
    assert (len(r.stdout), r.truncated) == (1000, True)


def test_side_channel_is_separate_from_stdout(backend):
    src = "import os, sys\nprint('to stdout')\nos.write(int(sys.argv[1]), b'to channel')"
    r = run_python(src, args=["{channel_fd}"], channel=True, backend=backend)
    assert (r.stdout, r.channel) == ("to stdout\n", "to channel")


# ---------------------------------------------------------------------------
# hostile programs
# ---------------------------------------------------------------------------


def test_infinite_loop_is_killed_at_the_wall_clock_limit(backend):
    r = run_python("while True:\n    pass", limits=Limits(wall_s=1.0), backend=backend)
    # killed by us, not finished: no return code, marked timed out
    assert (r.timed_out, r.returncode, r.ok) == (True, None, False)


def test_fork_bomb_is_capped_and_leaves_no_process(backend):
    marker = f"forkbomb-{uuid.uuid4().hex}"
    src = f"""
import os, sys
sys.argv.append({marker!r})
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    r = run_python(src, args=[marker], limits=Limits(wall_s=2.0, nproc=16), backend=backend)
    assert not r.ok
    # nothing of the bomb is left on the host, and the host can still start processes
    assert _processes_with(marker) == []
    if os.geteuid() == 0:
        assert _processes_of_uid(r.uid) == []
    assert subprocess.run(["true"]).returncode == 0


def test_memory_bomb_gets_memory_error(backend):
    r = run_python("x = bytearray(8 * 1024 ** 3)", limits=SHORT, backend=backend)
    # RLIMIT_AS turns the 8 GiB allocation into a MemoryError inside the program
    assert r.returncode == 1 and "MemoryError" in r.stderr


def test_ten_gigabyte_file_write_is_stopped(backend, monkeypatch):
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    src = """
chunk = b"x" * (1024 * 1024)
with open("big.bin", "wb") as f:
    for _ in range(10 * 1024):
        f.write(chunk)
print("wrote 10 GiB")
"""
    r = run_python(src, limits=SHORT, backend=backend)
    # RLIMIT_FSIZE (SIGXFSZ) or the size-limited tmpfs (ENOSPC) stops the write
    assert not r.ok and "wrote 10 GiB" not in r.stdout
    # and the run's directory on the host is gone
    assert made and not os.path.exists(made[0])


def test_host_secret_in_the_environment_is_not_visible(backend, monkeypatch):
    monkeypatch.setenv("RFT_TEST_SECRET", "hunter2")
    src = f"""
import os
print(os.environ.get("RFT_TEST_SECRET"))
try:
    print(b"hunter2" in open("/proc/{os.getpid()}/environ", "rb").read())
except OSError as err:
    print(type(err).__name__)
"""
    r = run_python(src, backend=backend)
    lines = r.stdout.splitlines()
    # the environment is rebuilt from scratch, and the host's /proc entry is unreadable
    assert lines[0] == "None"
    assert lines[1] in ("False", "FileNotFoundError", "PermissionError")
    assert "hunter2" not in r.stdout


def test_writes_outside_the_working_directory_do_not_reach_the_host(backend, tmp_path):
    token = uuid.uuid4().hex
    targets = [
        tmp_path / "escaped.txt",
        Path(tempfile.gettempdir()) / f"rft-escape-{token}",
        Path.cwd() / f"escape-{token}",
    ]
    os.chmod(tmp_path, 0o777)  # even a world-writable host directory is out of reach
    src = "import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'w').write('pwned')\n    except OSError as e:\n        print(type(e).__name__)\n"
    try:
        run_python(src, args=[str(t) for t in targets], backend=backend)
        assert [t for t in targets if t.exists()] == []
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


def test_no_network_to_a_loopback_server(backend):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    src = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hi")
    print("connected")
except OSError as err:
    print(type(err).__name__)
"""
    try:
        r = run_python(src, backend=backend)
        server.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection is waiting in the backlog
            server.accept()
    finally:
        server.close()
    # a new network namespace has its own (empty) loopback: the host server is unreachable
    assert r.stdout.strip() in ("ConnectionRefusedError", "OSError", "TimeoutError")


@pytest.mark.parametrize("ending", ["exit", "loop"])
def test_grandchild_does_not_outlive_the_run(backend, ending):
    marker = f"grandchild-{uuid.uuid4().hex}"
    # the grandchild starts its own session, so killing the process group misses it
    src = f"""
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", {marker!r}], start_new_session=True)
time.sleep(0.3)
{"while True: pass" if ending == "loop" else "print('parent done')"}
"""
    r = run_python(src, limits=Limits(wall_s=2.0), backend=backend)
    # "exit": the run ended normally; "loop": it was killed at the limit. Either way the
    # grandchild is gone when run() returns.
    assert r.timed_out is (ending == "loop")
    assert _processes_with(marker) == []


def test_killing_the_parent_does_not_reach_the_host(backend):
    src = f"""
import os, signal
for pid in (os.getppid(), {os.getpid()}, {os.getppid()}):
    try:
        os.kill(pid, signal.SIGKILL)
        print("sent", pid)
    except OSError as err:
        print(type(err).__name__)
print("still here")
"""
    r = run_python(src, backend=backend)
    # this test process (and its parent) survived; the run returned a result
    assert r.backend == backend
    assert run_python("print('ok')", backend=backend).stdout == "ok\n"


def test_a_normal_run_works_after_the_hostile_ones(backend):
    r = run_python("print(sum(range(10)))", backend=backend)
    assert (r.ok, r.stdout) == (True, "45\n")


# ---------------------------------------------------------------------------
# levels, switches, errors
# ---------------------------------------------------------------------------


def test_isolation_level_is_the_best_working_backend():
    usable = sandbox.available_backends()
    expected = next(b for b in sandbox.BACKENDS if usable[b] is None)
    assert sandbox.isolation_level() == expected


def test_backend_env_forces_the_level(monkeypatch):
    monkeypatch.setenv(sandbox.BACKEND_ENV, "rlimits-only")
    assert sandbox.isolation_level() == "rlimits-only"
    monkeypatch.setenv(sandbox.BACKEND_ENV, "bwrapp")
    with pytest.raises(SandboxError, match="did you mean 'bwrap'"):
        sandbox.isolation_level()


def test_require_isolation_refuses_rlimits_only(monkeypatch):
    monkeypatch.setenv(sandbox.REQUIRE_ENV, "1")
    with pytest.raises(SandboxUnavailableError, match="refusing to run untrusted code"):
        run_python("print(1)", backend="rlimits-only")
    # the explicit argument wins over the environment
    assert run_python("print(1)", backend="rlimits-only", require_isolation=False).stdout == "1\n"


def test_rlimits_only_still_times_out_and_scrubs_the_environment(monkeypatch):
    monkeypatch.setenv("RFT_TEST_SECRET", "hunter2")
    r = run_python("import os\nprint(os.environ.get('RFT_TEST_SECRET'))", backend="rlimits-only")
    assert r.stdout == "None\n"
    r = run_python("while True:\n    pass", limits=Limits(wall_s=1.0), backend="rlimits-only")
    assert r.timed_out


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../escape.py", "a/../../b"],  # absolute, or climbing out of the directory
)
def test_file_names_must_stay_inside_the_working_directory(name):
    with pytest.raises(SandboxError, match="relative path"):
        run_python("pass", files={name: "x"})


def test_unknown_backend_and_bad_limits_are_errors():
    with pytest.raises(SandboxError, match="unknown sandbox backend 'docker'"):
        run(["true"], backend="docker")
    with pytest.raises(SandboxError, match="wall_s"):
        Limits(wall_s=0)


# ---------------------------------------------------------------------------
# the unshare backend's init program, imported and called in this process
# ---------------------------------------------------------------------------


def test_unshare_init_source_is_the_module_file():
    # what the unshare backend runs as PID 1 is exactly the module tested below
    from rft.sandbox import program_source

    assert program_source("rft.sandbox.programs", "unshare_init") == Path(unshare_init.__file__).read_text("utf-8")


def test_unshare_init_copies_the_input_files_into_the_working_directory(tmp_path):
    host = tmp_path / "host"
    (host / "data").mkdir(parents=True)
    (host / "main.py").write_bytes(b"print(1)")
    (host / "data" / "in.txt").write_bytes(b"\x00bytes")
    inputs = unshare_init.read_inputs(str(host), ["main.py", "data/in.txt"])
    work = tmp_path / "work"
    unshare_init.write_inputs(str(work), inputs, None)  # no uid: the files keep ours
    # same names, same bytes (subdirectories made on the way)
    assert {str(p.relative_to(work)): p.read_bytes() for p in work.rglob("*") if p.is_file()} == {
        "main.py": b"print(1)",
        "data/in.txt": b"\x00bytes",
    }


def test_unshare_init_moves_an_unreachable_interpreter_and_reports_signals():
    # an interpreter under a directory the sandbox uid cannot enter is bound elsewhere
    assert unshare_init.relocate(["/root/.pyenv/bin/python", "-c", "x"], "/root/.pyenv") == [
        f"{unshare_init.REBIND_DIR}/bin/python",
        "-c",
        "x",
    ]
    # a prefix that only looks alike is left alone
    assert unshare_init.relocate(["/root/.pyenv2/bin/python"], "/root/.pyenv") == ["/root/.pyenv2/bin/python"]
    # PID 1 exits with the program's status, or 128 + N for death by signal N (the
    # sandbox turns that back into -N)
    assert unshare_init.exit_status(7 << 8) == 7
    assert unshare_init.exit_status(signal.SIGSEGV) == 128 + signal.SIGSEGV


def test_unshare_command_runs_the_init_program_with_its_config():
    from rft.sandbox.commands import unshare_argv

    cmd = unshare_argv(["/usr/bin/true"], ["main.py"], "/tmp/x", SHORT, 2_000_123, True)
    source, cfg = cmd[-2], json.loads(cmd[-1])
    assert cmd[-3] == "-c" and "def main(" in source
    # the init program gets the files, the uid and the program's environment
    assert (cfg["files"], cfg["uid"], cfg["argv"]) == (["main.py"], 2_000_123, ["/usr/bin/true"])
    assert cfg["env"]["HOME"] == unshare_init.WORKDIR and "RFT_TEST_SECRET" not in cfg["env"]
