"""The public calls: :func:`run` and :func:`run_python` run a program to completion;
:func:`spawn` starts a long-running one (a harness server) that talks over a stdin pipe
and a side channel.

>>> result = run_python("print(6 * 7)", limits=Limits(wall_s=10))
>>> result.ok, result.stdout.strip()
(True, '42')
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence

from rft.sandbox.backends import resolve_backend
from rft.sandbox.commands import check_read_only, python_argv
from rft.sandbox.limits import Limits, SandboxError, SandboxResult
from rft.sandbox.process import SandboxProcess, execute, start

__all__ = ["run", "run_python", "spawn"]


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
    read_only: Sequence[str] = (),
) -> SandboxResult:
    """Run a command in the sandbox and wait for it (at most ``limits.wall_s`` seconds).

    Args:
        argv: the command; ``argv[0]`` is looked up on the sandbox's ``PATH``
            (``/usr/local/bin:/usr/bin:/bin``) unless it is absolute.
        files: files created in the private working directory (read-only under
            bwrap) before the run, name → content.
        stdin: the program's standard input.
        limits: resource limits (default :class:`Limits`).
        backend: force a backend; default :func:`rft.sandbox.isolation_level`.
        require_isolation: refuse ``rlimits-only``; default from ``RFT_SANDBOX_REQUIRE_ISOLATION``.
        channel: open a side channel; ``{channel_fd}`` in ``argv`` becomes its fd
            number and what the program writes there is returned as ``result.channel``.
        read_only: host directories the program may read, at the same paths, and never
            write (e.g. the site-packages holding libraries offered to sandboxed Python);
            see :func:`rft.sandbox.commands.check_read_only`.

    Returns:
        A :class:`SandboxResult`; a program that fails, crashes or times out is a
        result, not an exception.

    Raises:
        SandboxUnavailableError: isolation is required but unavailable, or the forced
            backend does not work here.
        SandboxError: a file name escapes the working directory, a ``read_only`` entry
            is not an absolute directory, or the sandbox broke.
    """
    chosen = resolve_backend(backend, require_isolation)
    return execute(
        _resolve_argv(argv),
        files=dict(files or {}),
        stdin=stdin,
        limits=limits or Limits(),
        backend=chosen,
        channel=channel,
        read_only=check_read_only(read_only),
    )


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
    read_only: Sequence[str] = (),
) -> SandboxResult:
    """Run Python ``source`` in the sandbox as ``main.py`` (standard library only).

    The interpreter is the one running rftkit, started with ``-I -S -B`` (isolated
    mode, no site-packages, no bytecode files). Other arguments as :func:`run`.

    >>> from rft.sandbox import BACKENDS
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
        read_only=read_only,
    )


def spawn(
    argv: Sequence[str],
    *,
    files: Mapping[str, str | bytes] | None = None,
    limits: Limits | None = None,
    backend: str | None = None,
    require_isolation: bool | None = None,
    read_only: Sequence[str] = (),
) -> SandboxProcess:
    """Start a long-running program in the sandbox, with a stdin pipe and a side channel.

    Same isolation and limits as :func:`run` except that no wall-clock limit applies
    (the caller decides when to :meth:`SandboxProcess.close` it) and ``{channel_fd}`` in
    ``argv`` is the write end of a pipe the caller reads from ``channel_fd``. Standard
    output and error go to files (see :meth:`SandboxProcess.stderr_tail`). The program
    should exit when its stdin reaches end of file, which happens when the caller closes
    it or dies.

    Raises:
        SandboxUnavailableError: as :func:`run`.
        SandboxError: as :func:`run`.
    """
    chosen = resolve_backend(backend, require_isolation)
    return start(
        _resolve_argv(argv),
        files=dict(files or {}),
        limits=limits or Limits(),
        backend=chosen,
        read_only=check_read_only(read_only),
    )
