"""The run loop: prepare a run's directory and command, start it, wait, kill, sweep, clean up.

Backend-agnostic: the command line comes from :mod:`rft.sandbox.commands`; which backend
to use is decided by the caller (:mod:`rft.sandbox.backends`, :mod:`rft.sandbox.runner`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from rft.sandbox.commands import (
    PDEATHSIG,
    SANDBOX_UID_BASE,
    bwrap_argv,
    drop_argv,
    prlimit_argv,
    sandbox_env,
    unshare_argv,
    world_traversable,
)
from rft.sandbox.limits import Limits, SandboxError, SandboxResult

logger = logging.getLogger(__name__)

__all__ = ["Prepared", "SandboxProcess", "execute", "prepare", "start"]

_warned: set[str] = set()


def _warn_once(msg: str, *args: object) -> None:
    key = msg % args
    if key not in _warned:
        _warned.add(key)
        logger.warning(msg, *args)


def _check_name(name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name.startswith("-"):
        raise SandboxError(f"sandbox file name {name!r} must be a relative path inside the working directory")
    return str(p)


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
class Prepared:
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
        """Remove the run's host directory."""
        shutil.rmtree(self.host_root, ignore_errors=True)


def prepare(
    argv: list[str],
    files: Mapping[str, str | bytes],
    limits: Limits,
    backend: str,
    read_only: Sequence[str] = (),
) -> Prepared:
    """Make the run's private directory with its input files, pick its uid, build its command line.

    Raises:
        SandboxError: a file name is not a relative path inside the working directory.
    """
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
        pre = prlimit_argv(limits, uid, as_root)
        if backend == "bwrap":
            cmd = pre + bwrap_argv(argv, names, work, limits, uid, as_root, read_only)
        elif backend == "unshare":
            cmd = pre + PDEATHSIG + unshare_argv(argv, names, work, limits, uid, as_root, read_only)
        else:
            if as_root and not world_traversable(argv[0]):
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
                cmd = pre + drop_argv(uid) + argv
            else:
                cmd = pre + PDEATHSIG + argv
    except BaseException:
        shutil.rmtree(host_root, ignore_errors=True)
        raise
    return Prepared(host_root, work, uid, cmd)


def execute(
    argv: list[str],
    *,
    files: Mapping[str, str | bytes],
    stdin: str | bytes | None,
    limits: Limits,
    backend: str,
    channel: bool = False,
    read_only: Sequence[str] = (),
) -> SandboxResult:
    """Run ``argv`` under ``backend`` (already checked to be usable) and wait for it.

    Standard input, output, error and the side channel are files in the run's host
    directory. At the end whatever is left of the run is killed and the directory removed.
    """
    t0 = time.perf_counter()
    prep = prepare(argv, files, limits, backend, read_only)
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
                env=sandbox_env(prep.work),
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
    """A long-running sandboxed program that talks over pipes (see :func:`rft.sandbox.spawn`).

    Attributes:
        stdin: the program's standard input (a binary pipe).
        channel_fd: the read end of the side channel (``{channel_fd}`` in its argv).
        backend: the backend it runs under.
        uid: the host uid it runs as.
    """

    def __init__(self, proc: subprocess.Popen[bytes], prep: Prepared, channel_fd: int, backend: str):
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
        """The host pid of the sandbox's outermost process."""
        return self._proc.pid

    def alive(self) -> bool:
        """The program has not exited yet."""
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


def start(
    argv: list[str],
    *,
    files: Mapping[str, str | bytes],
    limits: Limits,
    backend: str,
    read_only: Sequence[str] = (),
) -> SandboxProcess:
    """Start ``argv`` under ``backend`` with a stdin pipe and a side channel; do not wait."""
    prep = prepare(argv, files, limits, backend, read_only)
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
                env=sandbox_env(prep.work),
                start_new_session=True,
            )
    except BaseException:
        os.close(read_fd)
        prep.remove()
        raise
    finally:
        os.close(write_fd)
    return SandboxProcess(proc, prep, read_fd, backend)


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
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone: the group has no members left
        os.killpg(proc.pid, signal.SIGKILL)
    if wait:
        proc.wait()
