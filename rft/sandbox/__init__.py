"""The sandbox: isolated subprocesses for untrusted code (model output, ``python`` graders).

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
    ``/home`` and ``/run`` (set up by :mod:`rft.sandbox.programs.unshare_init`).
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
Programs that run inside the sandbox are modules read with :func:`program_source`.

Modules: :mod:`~rft.sandbox.limits` (limits, results, errors),
:mod:`~rft.sandbox.commands` (the backends' command lines),
:mod:`~rft.sandbox.process` (the run loop), :mod:`~rft.sandbox.backends` (detection,
forcing, refusal), :mod:`~rft.sandbox.runner` (the public calls),
:mod:`~rft.sandbox.programs` (programs run inside). Import from this package.

Environment:
    ``RFT_SANDBOX_BACKEND``: force a backend (``bwrap``, ``unshare``, ``rlimits-only``).
    ``RFT_SANDBOX_REQUIRE_ISOLATION=1``: refuse to run untrusted code when only
    ``rlimits-only`` is available (also a per-call / per-grader ``require_isolation``).

>>> result = run_python("print(6 * 7)", limits=Limits(wall_s=10))
>>> result.ok, result.stdout.strip()
(True, '42')
"""

from __future__ import annotations

from rft.sandbox.backends import (
    BACKEND_ENV,
    BACKENDS,
    REQUIRE_ENV,
    available_backends,
    isolation_level,
    require_isolation_default,
)
from rft.sandbox.commands import SANDBOX_UID_BASE, python_argv
from rft.sandbox.limits import Limits, SandboxError, SandboxResult, SandboxUnavailableError
from rft.sandbox.process import SandboxProcess
from rft.sandbox.programs import program_source
from rft.sandbox.runner import run, run_python, spawn

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "REQUIRE_ENV",
    "SANDBOX_UID_BASE",
    "Limits",
    "SandboxError",
    "SandboxProcess",
    "SandboxResult",
    "SandboxUnavailableError",
    "available_backends",
    "isolation_level",
    "program_source",
    "python_argv",
    "require_isolation_default",
    "run",
    "run_python",
    "spawn",
]
