"""Running the test harness in the sandbox for the sandboxed graders (``code_exec``, ``python``).

:class:`SandboxedGrader` holds the sandbox parameters shared by both graders and runs a
harness job (:mod:`graders.programs.code_harness`) either in a fresh sandbox per call
(``persistent: false``) or in one of a few long-lived harness servers per grader instance
(``persistent: true``): a completion then runs in a process forked from the server, and
a completion that kills the server is retried once in a fresh one.

A harness that dies on a job twice is an ``infrastructure`` outcome
(:class:`HarnessKilledError`), one that stops answering a ``timeout``
(:class:`HarnessTimeoutError`): never a score, since no test result came back.
"""

from __future__ import annotations

import atexit
import logging
import marshal
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import rft.sandbox as sandbox
from graders.code_jobs import parse_literal, parse_records
from rft.core.errors import ConfigError, GraderInfrastructureError

logger = logging.getLogger(__name__)

__all__ = ["HarnessKilledError", "HarnessTimeoutError", "SandboxedGrader", "harness_source"]

#: CPU seconds of a harness server itself (each job gets its own ``time_limit`` in CPU).
_SERVER_CPU_S = 24 * 3600
#: Seconds a server may take beyond a job's time limit (clean-up) before it is replaced.
_SERVER_GRACE_S = 15.0
#: Idle servers kept per grader instance.
_MAX_IDLE = 8


def harness_source() -> str:
    """The source of the harness program, run in the sandbox as ``main.py``.

    >>> "def serve(" in harness_source()
    True
    """
    return sandbox.program_source("graders.programs", "code_harness")


class HarnessKilledError(GraderInfrastructureError):
    """The harness running a job died (twice, in fresh sandboxes), most likely killed by
    the program under test; no test result came back, so the call is recorded as kind
    ``infrastructure``, never as a score."""


class HarnessTimeoutError(HarnessKilledError):
    """The harness did not answer within the job's time limit plus a grace period (twice),
    or the job ran out of time before its tests started; recorded as kind ``timeout``."""

    outcome_kind = "timeout"


class _Server:
    """A harness in server mode in one long-lived sandbox: jobs in, one result line out."""

    def __init__(self, owner: SandboxedGrader):
        level = owner.backend or sandbox.isolation_level()
        isolated = level in ("bwrap", "unshare")
        argv = sandbox.python_argv(
            "main.py", "{channel_fd}", "serve", str(int(isolated)), str(sandbox.SANDBOX_UID_BASE)
        )
        limits = sandbox.Limits(wall_s=owner.time_limit, cpu_s=_SERVER_CPU_S, memory_mb=owner.memory_mb)
        self.proc = sandbox.spawn(
            argv,
            files=owner._harness_files(),
            limits=limits,
            backend=owner.backend,
            require_isolation=owner.require_isolation,
            read_only=owner._read_only(),
        )
        self.backend = self.proc.backend
        self.pid = os.getpid()
        self._buf = b""
        self._k = 0
        self.hung = False  # the last wait ended at its deadline, not at the server's exit
        if self._read_until(lambda rec: rec.get("ready") is True, _SERVER_GRACE_S * 4) is None:
            tail = self.proc.stderr_tail(500).strip() or "no output"
            self.proc.close()
            raise sandbox.SandboxError(f"the harness server did not start in the sandbox ({self.backend}): {tail}")
        self.proc.release_directory()

    def _read_until(self, want: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.channel_fd
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                rec = parse_literal(line)
                if isinstance(rec, dict) and want(rec):
                    return rec
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.hung = True
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

    def get(self, owner: SandboxedGrader) -> _Server:
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


class SandboxedGrader:
    """Shared parameters and sandbox plumbing of the sandboxed graders."""

    limits: sandbox.Limits
    time_limit: float
    memory_mb: int
    backend: str | None
    require_isolation: bool | None
    persistent: bool

    def _init_sandbox(
        self,
        time_limit: float,
        memory_mb: int,
        backend: str | None,
        require_isolation: bool | None,
        persistent: bool,
        who: str,
    ) -> None:
        """Check and keep the sandbox parameters; refuse at load time what cannot run.

        Raises:
            ConfigError: a bad limit or backend, or isolation is required and only
                ``rlimits-only`` is available.
        """
        try:
            self.limits = sandbox.Limits(wall_s=float(time_limit), memory_mb=int(memory_mb))
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

    def _harness_files(self) -> dict[str, str]:
        """The files the harness runs from: ``main.py`` (run first) and what it reads.

        The harness itself by default; the python grader puts a program in front of it
        that offers its libraries (:mod:`graders.programs.python_libraries`).
        """
        return {"main.py": harness_source()}

    def _read_only(self) -> tuple[str, ...]:
        """Host directories the harness may read (none by default; the python grader's libraries)."""
        return ()

    def _run(self, job: Mapping[str, Any]) -> tuple[sandbox.SandboxResult, list[dict[str, Any]]]:
        """Run the harness on ``job``; the result and the harness's records.

        Raises:
            GraderInfrastructureError: the sandbox could not run the harness at all
                (a broken backend, limits too small for the interpreter): never a 0.
            HarnessKilledError: the program killed the harness, in two fresh sandboxes
                (kind ``infrastructure``).
            HarnessTimeoutError: the harness hung past the time limit and its grace,
                in two fresh sandboxes (kind ``timeout``).
        """
        if self.persistent:
            return self._run_served(job)
        files: dict[str, str | bytes] = {**self._harness_files(), "job.bin": marshal.dumps(dict(job))}
        try:
            result = sandbox.run(
                sandbox.python_argv("main.py", "{channel_fd}"),
                files=files,
                limits=self.limits,
                backend=self.backend,
                require_isolation=self.require_isolation,
                channel=True,
                read_only=self._read_only(),
            )
        except sandbox.SandboxError as err:
            raise GraderInfrastructureError(f"sandbox: {err}") from err
        records = parse_records(result.channel)
        if not records and not result.timed_out:
            tail = result.stderr.strip()[-500:] or "no output"
            raise GraderInfrastructureError(
                f"the sandbox ({result.backend}) did not start the harness ({result.describe()}): {tail}"
            )
        return result, records

    def _run_served(self, job: Mapping[str, Any]) -> tuple[sandbox.SandboxResult, list[dict[str, Any]]]:
        pool = _pool(self)
        job = {**job, "time_limit": self.time_limit}
        hung = False
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
                hung = server.hung
                logger.info(
                    "sandbox harness %s on a job (%s); retrying in a fresh one",
                    "hung" if hung else "died",
                    server.proc.stderr_tail(300),
                )
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
            return result, parse_records(result.channel)
        if hung:
            raise HarnessTimeoutError(
                f"the sandboxed test harness did not answer within {self.time_limit:g}s + {_SERVER_GRACE_S:g}s "
                "(twice, in fresh sandboxes); no test result came back"
            )
        raise HarnessKilledError(
            "the program killed the sandboxed test harness (twice, in fresh sandboxes); no test result came back"
        )
