"""Isolated subprocess execution for untrusted code (model output, ``python`` graders).

Every run gets a fresh session and process group, resource limits (CPU time, address
space, processes, file size, open files), a wall-clock timeout that kills the whole
process tree, a private size-limited working directory that is removed afterwards, a
scrubbed environment and no network. Three backends, best first:

``bwrap``
    bubblewrap (Debian package ``bubblewrap``): new PID, network, IPC and UTS
    namespaces, a read-only view of the system directories and the Python
    installation only (no ``/root``, ``/home``, ``/work``, host ``/tmp``), private
    tmpfs ``/tmp`` and working directory.
``unshare``
    util-linux ``unshare``: new PID, network, IPC, UTS and mount namespaces; private
    tmpfs over ``/tmp``, ``/var/tmp``, ``/dev/shm`` and empty ones over ``/root``,
    ``/home`` and ``/run``.
``rlimits-only``
    resource limits, a process group and (as root) an unprivileged uid; **no network
    or filesystem isolation**. Refused when isolation is required.

When rftkit runs as root, the program runs as a fresh unprivileged uid per run
(:data:`SANDBOX_UID_BASE` + random), so ``RLIMIT_NPROC`` is enforced per run (root is
exempt from it), host files are read-only to it, and every process left with that uid
is killed when the run ends. Without root, bubblewrap and ``unshare`` use an
unprivileged user namespace.

Not covered: memory is limited per process (``RLIMIT_AS``), not in total (up to
``nproc`` x ``memory_mb``; a memory cgroup would bound it); no seccomp filter; under
``rlimits-only`` as root with an interpreter an unprivileged uid cannot reach (e.g. a
pyenv Python under ``/root``) the program runs as root, so ``RLIMIT_NPROC`` does not
hold (a warning is logged once).

:func:`run` / :func:`run_python` run a program to completion; :func:`spawn` starts a
long-running one (a harness server) that talks over a stdin pipe and a side channel.

Environment:
    ``RFT_SANDBOX_BACKEND``: force a backend (``bwrap``, ``unshare``, ``rlimits-only``).
    ``RFT_SANDBOX_REQUIRE_ISOLATION=1``: refuse to run untrusted code when only
    ``rlimits-only`` is available (also a per-call / per-grader ``require_isolation``).

>>> result = run_python("print(6 * 7)", limits=Limits(wall_s=10))
>>> result.ok, result.stdout.strip()
(True, '42')
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rft.core.errors import RFTError

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "Limits",
    "SandboxError",
    "SandboxProcess",
    "SandboxResult",
    "SandboxUnavailableError",
    "SANDBOX_UID_BASE",
    "available_backends",
    "isolation_level",
    "require_isolation_default",
    "python_argv",
    "run",
    "run_python",
    "spawn",
]

#: Backends from the most to the least isolated.
BACKENDS: tuple[str, ...] = ("bwrap", "unshare", "rlimits-only")
BACKEND_ENV = "RFT_SANDBOX_BACKEND"
REQUIRE_ENV = "RFT_SANDBOX_REQUIRE_ISOLATION"
#: Sandboxed programs run as uid/gid ``SANDBOX_UID_BASE + random(2**20)`` when rftkit is root.
SANDBOX_UID_BASE = 2_000_000
#: Working directory of the program inside the bwrap sandbox.
_BWRAP_WORKDIR = "/sandbox"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Hidden behind empty tmpfs mounts by the ``unshare`` backend: (dir, writable by the program).
_HIDDEN_DIRS = (("/root", False), ("/home", False), ("/run", False), ("/var/tmp", True), ("/dev/shm", True))


class SandboxError(RFTError):
    """The sandbox itself failed (not the program in it): a backend broke or a limit is invalid."""


class SandboxUnavailableError(SandboxError):
    """Isolation is required but the backend in force does not isolate (or is missing)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run.

    Args:
        wall_s: wall-clock seconds before the whole process tree is killed.
        cpu_s: CPU seconds per process (``RLIMIT_CPU``); default ``ceil(wall_s) + 1``.
        memory_mb: address space per process (``RLIMIT_AS``), in MiB.
        nproc: processes the program may have at once (``RLIMIT_NPROC``; enforced per
            run when rftkit is root, else counted on top of the user's own processes).
        fsize_mb: largest file the program may write (``RLIMIT_FSIZE``), stdout included.
        nofile: open file descriptors (``RLIMIT_NOFILE``).
        disk_mb: size of the private tmpfs working directory and ``/tmp`` (bwrap, unshare).
        max_output_bytes: stdout/stderr kept per stream; the rest is dropped (``truncated``).
    """

    wall_s: float = 10.0
    cpu_s: int | None = None
    memory_mb: int = 2048
    nproc: int = 32
    fsize_mb: int = 64
    nofile: int = 256
    disk_mb: int = 128
    max_output_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_mb", "nproc", "fsize_mb", "nofile", "disk_mb", "max_output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise SandboxError(f"sandbox limit {name!r} must be a positive number, got {value!r}")
        if self.cpu_s is not None and (not isinstance(self.cpu_s, int) or self.cpu_s <= 0):
            raise SandboxError(f"sandbox limit 'cpu_s' must be a positive integer, got {self.cpu_s!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu_s if self.cpu_s is not None else int(self.wall_s) + 2


@dataclass
class SandboxResult:
    """What a sandboxed program did.

    Attributes:
        returncode: exit status; negative for a signal (as :mod:`subprocess`); None when
            the run was killed at the wall-clock limit.
        stdout: standard output (UTF-8, undecodable bytes replaced), at most
            ``Limits.max_output_bytes``.
        stderr: standard error, likewise.
        timed_out: the wall-clock limit was reached and the process tree killed.
        wall_s: seconds from start to the end of clean-up.
        backend: the backend that ran it (see :data:`BACKENDS`).
        truncated: stdout or stderr was longer than the limit.
        channel: what the program wrote to the side channel fd (``channel_fd`` argument
            of the program), used by harnesses to report results apart from stdout.
        uid: the host uid the program ran as.
    """

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    wall_s: float
    backend: str
    truncated: bool = False
    channel: str = ""
    uid: int = field(default=-1, repr=False)

    @property
    def ok(self) -> bool:
        """The program exited with status 0 within its time limit."""
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        """A short phrase for reasons and logs: ``exit 1``, ``killed by SIGKILL``, ``timed out``."""
        if self.timed_out:
            return "timed out"
        if self.returncode is not None and self.returncode < 0:
            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exit {self.returncode}"


# ---------------------------------------------------------------------------
# backend detection
# ---------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}  # backend -> None when usable, else why not
_logged_level: str | None = None


def _python() -> str:
    """The interpreter sandboxed Python runs on: the real file behind ``sys.executable``."""
    return os.path.realpath(sys.executable)


def _python_prefixes() -> list[str]:
    """Directories the interpreter needs (its installation), deduplicated, outermost first."""
    exe_prefix = str(Path(_python()).parent.parent)
    out: list[str] = []
    for p in sorted({os.path.realpath(sys.base_prefix), exe_prefix}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _probe(backend: str) -> str | None:
    """Run a tiny program through ``backend``; None when it works, else the reason."""
    if backend == "bwrap" and shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if backend == "unshare" and shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    try:
        res = _run(
            [_python(), "-I", "-S", "-c", "print('ok')"],
            files={},
            stdin=None,
            limits=Limits(wall_s=20.0),
            backend=backend,
        )
    except (OSError, SandboxError) as err:
        return f"{type(err).__name__}: {err}"
    if res.ok and res.stdout.strip() == "ok":
        return None
    return f"probe program failed ({res.describe()}): {res.stderr.strip()[-300:] or 'no output'}"


def _probed_reason(backend: str) -> str | None:
    with _probe_lock:
        if backend not in _probed:
            # rlimits-only needs nothing but prlimit; running a probe would only warn
            needs_probe = backend != "rlimits-only" or shutil.which("prlimit") is None
            _probed[backend] = _probe(backend) if needs_probe else None
        return _probed[backend]


def available_backends(*, refresh: bool = False) -> dict[str, str | None]:
    """Each backend mapped to None when it works on this machine, else why it does not.

    Probing runs a tiny program through each backend once per process.
    """
    if refresh:
        with _probe_lock:
            _probed.clear()
    return {b: _probed_reason(b) for b in BACKENDS}


def _forced_backend() -> str | None:
    forced = os.environ.get(BACKEND_ENV, "").strip()
    if not forced:
        return None
    if forced not in BACKENDS:
        from rft.core.errors import did_you_mean

        raise SandboxError(f"{BACKEND_ENV}={forced!r} is not a sandbox backend: {did_you_mean(forced, BACKENDS)}")
    return forced


def isolation_level(*, refresh: bool = False) -> str:
    """The isolation level untrusted code runs under here: ``bwrap``, ``unshare`` or ``rlimits-only``.

    The environment variable ``RFT_SANDBOX_BACKEND`` forces one; otherwise the most
    isolated backend that works on this machine. Logged once per process.

    >>> isolation_level() in BACKENDS
    True
    """
    global _logged_level
    forced = _forced_backend()
    if refresh:
        with _probe_lock:
            _probed.clear()
    if forced is not None:
        level = forced
    else:  # probe best first and stop at the first that works
        level = next((b for b in BACKENDS if _probed_reason(b) is None), "rlimits-only")
    if level != _logged_level:
        _logged_level = level
        if level == "rlimits-only":
            why = "; ".join(f"{b}: {r}" for b, r in _probed.items() if r)
            logger.warning(
                "sandbox isolation level: rlimits-only (no network or filesystem isolation; %s). "
                "Install bubblewrap or set %s=1 to refuse untrusted code.",
                why or f"forced by {BACKEND_ENV}",
                REQUIRE_ENV,
            )
        else:
            logger.info("sandbox isolation level: %s", level)
    return level


def require_isolation_default() -> bool:
    """True when ``RFT_SANDBOX_REQUIRE_ISOLATION`` asks to refuse unisolated runs."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _resolve_backend(backend: str | None, require_isolation: bool | None) -> str:
    if backend is None:
        backend = isolation_level()  # forced by RFT_SANDBOX_BACKEND, or the best that works
    elif backend not in BACKENDS:
        from rft.core.errors import did_you_mean

        raise SandboxError(f"unknown sandbox backend {backend!r}: {did_you_mean(backend, BACKENDS)}")
    reason = _probed_reason(backend)
    if reason is not None:
        raise SandboxUnavailableError(f"sandbox backend {backend!r} is not usable here: {reason}")
    required = require_isolation_default() if require_isolation is None else require_isolation
    if required and backend == "rlimits-only":
        raise SandboxUnavailableError(
            "refusing to run untrusted code: isolation is required (require_isolation / "
            f"{REQUIRE_ENV}=1) but only 'rlimits-only' is available; install bubblewrap "
            "(apt-get install bubblewrap) or allow unshare namespaces"
        )
    return backend


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


def _env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
    }


def _check_name(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name.startswith("-"):
        raise SandboxError(f"sandbox file name {name!r} must be a relative path inside the working directory")
    return str(p)


def _count_user_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except OSError:
                continue
    return n


def _world_traversable(path: str) -> bool:
    p = Path(path)
    for d in [p, *p.parents]:
        try:
            if not os.stat(d).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _prlimit(limits: Limits, uid: int, as_root: bool) -> list[str]:
    nproc = limits.nproc if as_root else _count_user_processes(uid) + limits.nproc
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.fsize_mb * 1024 * 1024
    return [
        "prlimit",
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds}",
        f"--as={mem}:{mem}",
        f"--nproc={nproc}:{nproc}",
        f"--fsize={fsize}:{fsize}",
        f"--nofile={limits.nofile}:{limits.nofile}",
        "--core=0:0",
        "--",
    ]


#: Dies with the process that started the run (e.g. a grader worker killed at its
#: timeout), taking the namespace along; bwrap has ``--die-with-parent`` for the same.
_PDEATHSIG = ["setpriv", "--pdeathsig=KILL", "--"]


def _drop(uid: int) -> list[str]:
    return [
        "setpriv",
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--pdeathsig=KILL",
        "--",
    ]


def _bwrap_argv(
    argv: list[str], files: Sequence[str], host_dir: str, limits: Limits, uid: int, as_root: bool
) -> list[str]:
    disk = str(limits.disk_mb * 1024 * 1024)
    cmd = ["bwrap", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        cmd.append("--unshare-user")
    cmd += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if as_root:  # setpriv inside needs these two; it drops every capability before exec
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    bound: list[str] = []
    for d in _SYSTEM_DIRS:
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
            bound.append(d)
    made: set[str] = set()
    for prefix in _python_prefixes():
        if any(prefix == b or prefix.startswith(b + "/") for b in bound):
            continue
        for parent in reversed(Path(prefix).parents):
            s = str(parent)
            if s != "/" and s not in made and not any(s == b or s.startswith(b + "/") for b in bound):
                cmd += ["--perms", "0755", "--dir", s]
                made.add(s)
        cmd += ["--ro-bind", prefix, prefix]
        bound.append(prefix)
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", disk, "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += ["--size", disk, "--perms", "0777", "--tmpfs", _BWRAP_WORKDIR]
    subdirs = sorted({str(p) for name in files for p in PurePosixPath(name).parents if str(p) != "."}, key=len)
    for d in subdirs:  # bwrap would make them 0700 root-owned
        cmd += ["--perms", "0777", "--dir", f"{_BWRAP_WORKDIR}/{d}"]
    for name in files:
        cmd += ["--ro-bind", os.path.join(host_dir, name), f"{_BWRAP_WORKDIR}/{name}"]
    cmd += ["--chdir", _BWRAP_WORKDIR, "--clearenv"]
    for k, v in _env(_BWRAP_WORKDIR).items():
        cmd += ["--setenv", k, v]
    cmd.append("--")
    if as_root:
        cmd += _drop(uid)
    return cmd + argv


#: Runs as root (or root of a user namespace) inside the new namespaces of the
#: ``unshare`` backend: mounts private tmpfs dirs, copies the input files into the new
#: working directory, forks the program as the sandbox uid and stays as PID 1 until it
#: exits (PID 1 exiting kills everything left in the PID namespace).
_UNSHARE_INIT = r"""
import ctypes, json, os, signal, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
def mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
mount(None, "/", None, MS_REC | MS_PRIVATE)
inputs = {}
for name in cfg["files"]:
    with open(os.path.join(cfg["host_dir"], name), "rb") as f:
        inputs[name] = f.read()
mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,mode=1777" % cfg["disk"])
argv = cfg["argv"]
if cfg["rebind"]:
    os.mkdir("/tmp/.rft-python", 0o755)
    mount(cfg["rebind"], "/tmp/.rft-python", None, MS_BIND | MS_REC)
    mount(None, "/tmp/.rft-python", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    if argv[0].startswith(cfg["rebind"] + "/"):
        argv[0] = "/tmp/.rft-python" + argv[0][len(cfg["rebind"]):]
for d, writable in cfg["hide"]:
    if os.path.isdir(d) and not os.path.islink(d):
        mode = "size=%d,mode=1777" % cfg["disk"] if writable else "size=4096,mode=755"
        mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, mode)
work = "/tmp/sandbox"
os.mkdir(work, 0o755)
for name, data in inputs.items():
    path = os.path.join(work, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
uid = cfg["uid"]
if uid is not None:
    for root, dirs, names in os.walk(work):
        for n in [root] + [os.path.join(root, x) for x in names + dirs]:
            os.chown(n, uid, uid)
pid = os.fork()
if pid == 0:
    try:
        os.chdir(work)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.execve(argv[0], argv, cfg["env"])
    except BaseException as err:
        os.write(2, ("sandbox: cannot start %r: %s\n" % (argv[0], err)).encode())
    os._exit(127)
libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die (and take the namespace along) with unshare
while True:
    try:
        done, status = os.wait()
    except ChildProcessError:
        os._exit(127)
    if done == pid:
        break
code = os.waitstatus_to_exitcode(status)
os._exit(128 - code if code < 0 else code)
"""


def _unshare_argv(
    argv: list[str], files: Sequence[str], host_dir: str, limits: Limits, uid: int, as_root: bool
) -> list[str]:
    rebind = None
    for prefix in _python_prefixes():
        if argv and argv[0].startswith(prefix + "/") and not _world_traversable(prefix):
            rebind = prefix
    cfg = {
        "files": list(files),
        "host_dir": host_dir,
        "disk": limits.disk_mb * 1024 * 1024,
        "argv": list(argv),
        "rebind": rebind,
        "hide": [list(h) for h in _HIDDEN_DIRS],
        "uid": uid if as_root else None,
        "env": _env("/tmp/sandbox"),
    }
    cmd = ["unshare", "--fork", "--pid", "--mount-proc", "--net", "--ipc", "--uts", "--mount", "--kill-child"]
    if not as_root:
        cmd += ["--user", "--map-root-user"]
    return cmd + ["--", _python(), "-I", "-S", "-B", "-c", _UNSHARE_INIT, json.dumps(cfg)]


_warned: set[str] = set()


def _warn_once(msg: str, *args: object) -> None:
    key = msg % args
    if key not in _warned:
        _warned.add(key)
        logger.warning(msg, *args)


def _live_processes(uid: int) -> list[int]:
    """Host pids of ``uid`` that are not zombies (a zombie is dead, only not yet reaped)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited while we looked
        if state not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def _sweep(uid: int, *, grace_s: float = 5.0) -> None:
    """Kill every process of the sandbox ``uid`` and wait until none is left alive.

    Killing is done as that uid (``kill -KILL -1`` reaches exactly its processes, also
    those in a child PID namespace and those that left the process group). Returns at
    once when nothing is left, the usual case after a normal exit.
    """
    if uid < SANDBOX_UID_BASE:  # never as root or a real user: kill -1 reaches all their processes
        raise SandboxError(f"refusing to sweep processes of uid {uid}: not a sandbox uid")
    deadline = time.monotonic() + grace_s
    while _live_processes(uid):
        if time.monotonic() > deadline:
            logger.warning(
                "sandbox: processes of uid %d survived SIGKILL for %.0fs: %s", uid, grace_s, _live_processes(uid)
            )
            return
        try:
            subprocess.run(
                ["kill", "-KILL", "--", "-1"],
                user=uid,
                group=uid,
                extra_groups=[],
                env={"PATH": "/usr/bin:/bin"},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:  # pragma: no cover - kill missing
            logger.warning("sandbox: could not sweep processes of uid %d: %s", uid, err)
            return
        time.sleep(0.002)


def _read(path: str, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


@dataclass
class _Prepared:
    """A run's host directory, uid and full command line (not started yet)."""

    host_root: str
    work: str
    uid: int
    cmd: list[str]

    def sweep(self) -> None:
        """Kill what is left of the run (only a per-run uid can be swept safely)."""
        if self.uid >= SANDBOX_UID_BASE:
            _sweep(self.uid)

    def remove(self) -> None:
        shutil.rmtree(self.host_root, ignore_errors=True)


def _prepare(argv: list[str], files: Mapping[str, str | bytes], limits: Limits, backend: str) -> _Prepared:
    as_root = os.geteuid() == 0
    uid = SANDBOX_UID_BASE + secrets.randbelow(1 << 20) if as_root else os.getuid()
    host_root = tempfile.mkdtemp(prefix="rft-sandbox-")
    try:
        os.chmod(host_root, 0o711)
        work = os.path.join(host_root, "work")
        os.mkdir(work, 0o755)
        names = []
        for name, content in files.items():
            name = _check_name(name)
            path = os.path.join(work, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content.encode() if isinstance(content, str) else content)
            os.chmod(path, 0o644)
            names.append(name)
        pre = _prlimit(limits, uid, as_root)
        if backend == "bwrap":
            cmd = pre + _bwrap_argv(argv, names, work, limits, uid, as_root)
        elif backend == "unshare":
            cmd = pre + _PDEATHSIG + _unshare_argv(argv, names, work, limits, uid, as_root)
        else:
            if as_root and not _world_traversable(argv[0]):
                # e.g. an interpreter under /root: an unprivileged uid cannot even start it
                _warn_once(
                    "sandbox rlimits-only: %s is not reachable by an unprivileged uid, so the program "
                    "runs as root (RLIMIT_NPROC is not enforced for root); install bubblewrap",
                    argv[0],
                )
                uid = 0
            if as_root and uid != 0:
                for root, dirs, fnames in os.walk(work):
                    for n in [root] + [os.path.join(root, x) for x in fnames + dirs]:
                        os.chown(n, uid, uid)
                cmd = pre + _drop(uid) + argv
            else:
                cmd = pre + _PDEATHSIG + argv
    except BaseException:
        shutil.rmtree(host_root, ignore_errors=True)
        raise
    return _Prepared(host_root, work, uid, cmd)


def _run(
    argv: list[str],
    *,
    files: Mapping[str, str | bytes],
    stdin: str | bytes | None,
    limits: Limits,
    backend: str,
    channel: bool = False,
) -> SandboxResult:
    t0 = time.perf_counter()
    prep = _prepare(argv, files, limits, backend)
    proc: subprocess.Popen[bytes] | None = None
    try:
        streams = {key: os.path.join(prep.host_root, key) for key in ("stdin", "stdout", "stderr", "channel")}
        with open(streams["stdin"], "wb") as f:
            if stdin is not None:
                f.write(stdin.encode() if isinstance(stdin, str) else stdin)
        with (
            open(streams["stdin"], "rb") as fin,
            open(streams["stdout"], "wb") as fout,
            open(streams["stderr"], "wb") as ferr,
            open(streams["channel"], "wb") as fchan,
        ):
            cmd = prep.cmd
            if channel:
                cmd = [a.replace("{channel_fd}", str(fchan.fileno())) for a in cmd]
            proc = subprocess.Popen(
                cmd,
                stdin=fin,
                stdout=fout,
                stderr=ferr,
                pass_fds=(fchan.fileno(),) if channel else (),
                cwd=prep.work,
                env=_env(prep.work),
                start_new_session=True,
            )
            timed_out = not _wait(proc, limits.wall_s)
            if timed_out:
                _kill_group(proc)
        prep.sweep()  # whatever is left with the run's own uid: daemonized grandchildren
        if backend == "rlimits-only":
            _kill_group(proc, wait=False)
        stdout, t1 = _read(streams["stdout"], limits.max_output_bytes)
        stderr, t2 = _read(streams["stderr"], limits.max_output_bytes)
        chan, _ = _read(streams["channel"], limits.max_output_bytes) if channel else ("", False)
        return SandboxResult(
            returncode=None if timed_out else _returncode(proc.returncode, backend),
            stdout=stdout,
            stderr=stderr,
            timed_out=timed_out,
            wall_s=time.perf_counter() - t0,
            backend=backend,
            truncated=t1 or t2,
            channel=chan,
            uid=prep.uid,
        )
    finally:
        if proc is not None and proc.returncode is None:
            _kill_group(proc)
        prep.remove()


def _returncode(rc: int | None, backend: str) -> int | None:
    if backend != "rlimits-only" and rc is not None and 128 < rc <= 128 + 64:
        return 128 - rc  # namespace inits report a signal death as 128 + signal
    return rc


class SandboxProcess:
    """A long-running sandboxed program that talks over pipes (see :func:`spawn`).

    Attributes:
        stdin: the program's standard input (a binary pipe).
        channel_fd: the read end of the side channel (``{channel_fd}`` in its argv).
        backend: the backend it runs under.
        uid: the host uid it runs as.
    """

    def __init__(self, proc: subprocess.Popen[bytes], prep: _Prepared, channel_fd: int, backend: str):
        self._proc = proc
        self._prep = prep
        self.stdin = proc.stdin
        self.channel_fd = channel_fd
        self.backend = backend
        self.uid = prep.uid
        self._closed = False
        self._stderr = open(os.path.join(prep.host_root, "stderr"), "rb")  # noqa: SIM115 - kept for stderr_tail

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stderr_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters the program wrote to stderr."""
        try:
            size = os.fstat(self._stderr.fileno()).st_size
            return os.pread(self._stderr.fileno(), n, max(0, size - n)).decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return ""

    def release_directory(self) -> None:
        """Remove the host directory now, once the program has read its files.

        The namespace backends keep what they need (bind mounts, a private copy), so a
        long-running program leaves nothing behind on disk even if this process is
        killed later. No-op for ``rlimits-only``, whose working directory is that one.
        """
        if self.backend != "rlimits-only":
            self._prep.remove()

    def close(self) -> None:
        """Kill the program and everything it started; remove its directory."""
        if self._closed:
            return
        self._closed = True
        if self.stdin is not None:
            with contextlib.suppress(OSError):  # the program may have closed its end already
                self.stdin.close()
        if self._proc.returncode is None:
            _kill_group(self._proc)
        self._prep.sweep()
        if self.backend == "rlimits-only":
            _kill_group(self._proc, wait=False)
        os.close(self.channel_fd)
        self._stderr.close()
        self._prep.remove()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spawn(
    argv: Sequence[str],
    *,
    files: Mapping[str, str | bytes] | None = None,
    limits: Limits | None = None,
    backend: str | None = None,
    require_isolation: bool | None = None,
) -> SandboxProcess:
    """Start a long-running program in the sandbox, with a stdin pipe and a side channel.

    Same isolation and limits as :func:`run` except that no wall-clock limit applies
    (the caller decides when to :meth:`SandboxProcess.close` it) and ``{channel_fd}`` in
    ``argv`` is the write end of a pipe the caller reads from ``channel_fd``. Standard
    output and error go to files (see :meth:`SandboxProcess.stderr_tail`). The program
    should exit when its stdin reaches end of file, which happens when the caller closes
    it or dies.
    """
    chosen = _resolve_backend(backend, require_isolation)
    argv = _resolve_argv(argv)
    limits = limits or Limits()
    prep = _prepare(argv, files or {}, limits, chosen)
    read_fd, write_fd = os.pipe()
    try:
        cmd = [a.replace("{channel_fd}", str(write_fd)) for a in prep.cmd]
        with (
            open(os.path.join(prep.host_root, "stdout"), "wb") as fout,
            open(os.path.join(prep.host_root, "stderr"), "wb") as ferr,
        ):
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=fout,
                stderr=ferr,
                pass_fds=(write_fd,),
                cwd=prep.work,
                env=_env(prep.work),
                start_new_session=True,
            )
    except BaseException:
        os.close(read_fd)
        prep.remove()
        raise
    finally:
        os.close(write_fd)
    return SandboxProcess(proc, prep, read_fd, chosen)


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for ``proc`` at most ``timeout`` seconds; True when it exited.

    Uses a pidfd where the kernel has one (exact wake-up); ``Popen.wait(timeout=)``
    polls with sleeps of up to 50 ms, which would dominate short runs.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or poller.poll(left * 1000):
                break
    finally:
        os.close(fd)
    try:
        proc.wait(timeout=0 if time.monotonic() >= deadline else 1)
        return True
    except subprocess.TimeoutExpired:
        return False


def _kill_group(proc: subprocess.Popen[bytes], *, wait: bool = True) -> None:
    """SIGKILL the run's session (its process group); namespace backends take their PID
    namespace down with it (bwrap's ``--die-with-parent``, unshare's ``--kill-child``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # already gone: the group has no members left
    if wait:
        proc.wait()


def _resolve_argv(argv: Sequence[str]) -> list[str]:
    out = [str(a) for a in argv]
    if not out:
        raise SandboxError("the sandbox needs a command to run")
    if not os.path.isabs(out[0]):
        found = shutil.which(out[0], path="/usr/local/bin:/usr/bin:/bin")
        if found is None:
            raise SandboxError(f"command {out[0]!r} not found in /usr/local/bin:/usr/bin:/bin")
        out[0] = found
    return out


def run(
    argv: Sequence[str],
    *,
    files: Mapping[str, str | bytes] | None = None,
    stdin: str | bytes | None = None,
    limits: Limits | None = None,
    backend: str | None = None,
    require_isolation: bool | None = None,
    channel: bool = False,
) -> SandboxResult:
    """Run a command in the sandbox and wait for it (at most ``limits.wall_s`` seconds).

    Args:
        argv: the command; ``argv[0]`` is looked up on the sandbox's ``PATH``
            (``/usr/local/bin:/usr/bin:/bin``) unless it is absolute.
        files: files created in the private working directory (read-only under
            bwrap) before the run, name → content.
        stdin: the program's standard input.
        limits: resource limits (default :class:`Limits`).
        backend: force a backend; default :func:`isolation_level`.
        require_isolation: refuse ``rlimits-only``; default from ``RFT_SANDBOX_REQUIRE_ISOLATION``.
        channel: open a side channel; ``{channel_fd}`` in ``argv`` becomes its fd
            number and what the program writes there is returned as ``result.channel``.

    Returns:
        A :class:`SandboxResult`; a program that fails, crashes or times out is a
        result, not an exception.

    Raises:
        SandboxUnavailableError: isolation is required but unavailable, or the forced
            backend does not work here.
        SandboxError: a file name escapes the working directory, or the sandbox broke.
    """
    chosen = _resolve_backend(backend, require_isolation)
    return _run(
        _resolve_argv(argv),
        files=dict(files or {}),
        stdin=stdin,
        limits=limits or Limits(),
        backend=chosen,
        channel=channel,
    )


def python_argv(*args: str) -> list[str]:
    """The command line that runs sandboxed Python: ``python -I -S -B *args``.

    Isolated mode (no environment variables, no user site), no site-packages (the
    standard library only, and a 3x faster start) and no bytecode files.
    """
    return [_python(), "-I", "-S", "-B", *args]


def run_python(
    source: str,
    *,
    args: Sequence[str] = (),
    files: Mapping[str, str | bytes] | None = None,
    stdin: str | bytes | None = None,
    limits: Limits | None = None,
    backend: str | None = None,
    require_isolation: bool | None = None,
    channel: bool = False,
) -> SandboxResult:
    """Run Python ``source`` in the sandbox as ``main.py`` (standard library only).

    The interpreter is the one running rftkit, started with ``-I -S -B`` (isolated
    mode, no site-packages, no bytecode files). Other arguments as :func:`run`.

    >>> r = run_python("import sys; print(sys.stdin.read().upper())", stdin="hi")
    >>> r.stdout.strip(), r.backend in BACKENDS
    ('HI', True)
    """
    all_files = dict(files or {})
    all_files["main.py"] = source
    return run(
        python_argv("main.py", *args),
        files=all_files,
        stdin=stdin,
        limits=limits,
        backend=backend,
        require_isolation=require_isolation,
        channel=channel,
    )
