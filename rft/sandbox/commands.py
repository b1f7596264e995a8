"""Command lines of the backends: ``prlimit`` resource limits, ``setpriv`` uid drop, bwrap and unshare.

Pure functions of the run's parameters (plus what they read from the host: which system
directories exist, where the interpreter lives); nothing here starts a process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from rft.sandbox.limits import Limits, SandboxError
from rft.sandbox.programs import program_source
from rft.sandbox.programs.unshare_init import WORKDIR as UNSHARE_WORKDIR

__all__ = [
    "PDEATHSIG",
    "SANDBOX_UID_BASE",
    "bwrap_argv",
    "check_read_only",
    "drop_argv",
    "prlimit_argv",
    "python",
    "python_argv",
    "python_prefixes",
    "sandbox_env",
    "unshare_argv",
    "world_traversable",
]

#: Sandboxed programs run as uid/gid ``SANDBOX_UID_BASE + random(2**20)`` when rftkit is root.
SANDBOX_UID_BASE = 2_000_000
#: Working directory of the program inside the bwrap sandbox.
BWRAP_WORKDIR = "/sandbox"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
#: Hidden behind empty tmpfs mounts by the ``unshare`` backend: (dir, writable by the program).
_HIDDEN_DIRS = (("/root", False), ("/home", False), ("/run", False), ("/var/tmp", True), ("/dev/shm", True))
#: Dies with the process that started the run (e.g. a grader worker killed at its
#: timeout), taking the namespace along; bwrap has ``--die-with-parent`` for the same.
PDEATHSIG = ["setpriv", "--pdeathsig=KILL", "--"]


def python() -> str:
    """The interpreter sandboxed Python runs on: the real file behind ``sys.executable``."""
    return os.path.realpath(sys.executable)


def python_prefixes() -> list[str]:
    """Directories the interpreter needs (its installation), deduplicated, outermost first."""
    exe_prefix = str(Path(python()).parent.parent)
    out: list[str] = []
    for p in sorted({os.path.realpath(sys.base_prefix), exe_prefix}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def check_read_only(dirs: Sequence[str]) -> tuple[str, ...]:
    """Host directories to show a sandboxed program read-only, checked and normalized.

    Each must be an absolute path to an existing directory; it appears at the same path
    inside the sandbox and cannot be written there (bwrap binds it read-only; the
    ``unshare`` init bind-mounts it read-only, also under a hidden directory such as
    ``/root``; ``rlimits-only`` has no filesystem isolation: the host's own permissions
    apply). Under root the files must be readable by an unprivileged uid.

    Raises:
        SandboxError: a path is relative, missing or not a directory.

    >>> check_read_only(["/usr/lib/", "/usr/lib"])
    ('/usr/lib',)
    """
    out: list[str] = []
    for d in dirs:
        if not isinstance(d, str) or not os.path.isabs(d):
            raise SandboxError(f"read-only sandbox path {d!r} must be an absolute directory path")
        real = os.path.realpath(d)
        if not os.path.isdir(real):
            raise SandboxError(f"read-only sandbox path {d!r} is not a directory on this machine")
        if real not in out:
            out.append(real)
    return tuple(out)


def python_argv(*args: str) -> list[str]:
    """The command line that runs sandboxed Python: ``python -I -S -B *args``.

    Isolated mode (no environment variables, no user site), no site-packages (the
    standard library only, and a 3x faster start) and no bytecode files.

    >>> python_argv("main.py")[1:]
    ['-I', '-S', '-B', 'main.py']
    """
    return [python(), "-I", "-S", "-B", *args]


def sandbox_env(workdir: str) -> dict[str, str]:
    """The whole environment of a sandboxed program (nothing is inherited from the host)."""
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
        # one thread per numeric library, as OpenAI's python grader runtime has one CPU;
        # thread pools would also run into RLIMIT_NPROC and RLIMIT_AS
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }


def _count_user_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except OSError:
                continue
    return n


def world_traversable(path: str) -> bool:
    """Every directory from ``/`` down to ``path`` can be entered by any uid."""
    p = Path(path)
    for d in [p, *p.parents]:
        try:
            if not os.stat(d).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def prlimit_argv(limits: Limits, uid: int, as_root: bool) -> list[str]:
    """``prlimit`` setting the run's resource limits (``RLIMIT_NPROC`` per run as root).

    Without root, the sandbox shares the user's uid, so the user's own processes are
    counted on top of ``limits.nproc``.
    """
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


def drop_argv(uid: int) -> list[str]:
    """``setpriv`` switching to ``uid``/``uid`` with no groups and no capabilities.

    >>> drop_argv(2000001)[:3]
    ['setpriv', '--reuid=2000001', '--regid=2000001']
    """
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


def _ro_binds(paths: Sequence[str], bound: list[str], made: set[str]) -> list[str]:
    """bwrap options binding each of ``paths`` read-only at its own path (its parents made
    0755), unless it lies in a directory already bound; updates ``bound`` and ``made``."""
    cmd: list[str] = []
    for path in paths:
        if any(path == b or path.startswith(b + "/") for b in bound):
            continue
        for parent in reversed(Path(path).parents):
            s = str(parent)
            if s != "/" and s not in made and not any(s == b or s.startswith(b + "/") for b in bound):
                cmd += ["--perms", "0755", "--dir", s]
                made.add(s)
        cmd += ["--ro-bind", path, path]
        bound.append(path)
    return cmd


def bwrap_argv(
    argv: list[str],
    files: Sequence[str],
    host_dir: str,
    limits: Limits,
    uid: int,
    as_root: bool,
    read_only: Sequence[str] = (),
) -> list[str]:
    """bubblewrap around ``argv``: new namespaces, read-only system and Python, private tmpfs dirs.

    Args:
        argv: the program's command line.
        files: the input files (names relative to ``host_dir``), bound read-only.
        host_dir: the run's working directory on the host.
        limits: the run's limits (``disk_mb`` sizes the tmpfs mounts).
        uid: the uid to run the program as (when ``as_root``).
        as_root: rftkit runs as root: drop to ``uid`` inside; else use a user namespace.
        read_only: host directories bound read-only at the same path (see :func:`check_read_only`).
    """
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
    cmd += _ro_binds(python_prefixes(), bound, made)
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", disk, "--perms", "1777", "--tmpfs", "/tmp"]
    cmd += ["--size", disk, "--perms", "0777", "--tmpfs", BWRAP_WORKDIR]
    # after the tmpfs mounts, so that one under /tmp is not covered (bwrap reads sources on the host)
    cmd += _ro_binds(read_only, bound, made)
    subdirs = sorted({str(p) for name in files for p in PurePosixPath(name).parents if str(p) != "."}, key=len)
    for d in subdirs:  # bwrap would make them 0700 root-owned
        cmd += ["--perms", "0777", "--dir", f"{BWRAP_WORKDIR}/{d}"]
    for name in files:
        cmd += ["--ro-bind", os.path.join(host_dir, name), f"{BWRAP_WORKDIR}/{name}"]
    cmd += ["--chdir", BWRAP_WORKDIR, "--clearenv"]
    for k, v in sandbox_env(BWRAP_WORKDIR).items():
        cmd += ["--setenv", k, v]
    cmd.append("--")
    if as_root:
        cmd += drop_argv(uid)
    return cmd + argv


def unshare_argv(
    argv: list[str],
    files: Sequence[str],
    host_dir: str,
    limits: Limits,
    uid: int,
    as_root: bool,
    read_only: Sequence[str] = (),
) -> list[str]:
    """util-linux ``unshare`` running the init program (:mod:`rft.sandbox.programs.unshare_init`).

    Arguments as :func:`bwrap_argv`. The init program gets its instructions as one JSON
    argument: the files to copy, the tmpfs size, the directories to hide, the read-only ones, the uid and
    the environment of the program.
    """
    # an interpreter the sandbox uid cannot reach (e.g. pyenv under /root) is shown
    # read-only at its own path, so that its RUNPATH finds its own libpython (the system's
    # libpython of another patch release would be loaded otherwise)
    unreachable = [p for p in python_prefixes() if argv and argv[0].startswith(p + "/") and not world_traversable(p)]
    read_only = [*unreachable, *(d for d in read_only if d not in unreachable)]
    cfg = {
        "files": list(files),
        "host_dir": host_dir,
        "disk": limits.disk_mb * 1024 * 1024,
        "argv": list(argv),
        "rebind": None,
        "hide": [list(h) for h in _HIDDEN_DIRS],
        "read_only": list(read_only),
        "uid": uid if as_root else None,
        "env": sandbox_env(UNSHARE_WORKDIR),
    }
    cmd = ["unshare", "--fork", "--pid", "--mount-proc", "--net", "--ipc", "--uts", "--mount", "--kill-child"]
    if not as_root:
        cmd += ["--user", "--map-root-user"]
    init = program_source("rft.sandbox.programs", "unshare_init")
    return cmd + ["--", *python_argv("-c", init, json.dumps(cfg))]
