"""What a sandboxed run may use and what it did: :class:`Limits`, :class:`SandboxResult`, the errors."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from rft.core.errors import RFTError

__all__ = ["Limits", "SandboxError", "SandboxResult", "SandboxUnavailableError"]


class SandboxError(RFTError):
    """The sandbox itself failed (not the program in it): a backend broke or a limit is invalid."""


class SandboxUnavailableError(SandboxError):
    """Isolation is required but the backend in force does not isolate (or is missing)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed run.

    Args:
        wall_s: wall-clock seconds before the whole process tree is killed.
        cpu_s: CPU seconds per process (``RLIMIT_CPU``); default ``int(wall_s) + 2``.
        memory_mb: address space per process (``RLIMIT_AS``), in MiB.
        nproc: processes the program may have at once (``RLIMIT_NPROC``; enforced per
            run when rftkit is root, else counted on top of the user's own processes).
        fsize_mb: largest file the program may write (``RLIMIT_FSIZE``), stdout included.
        nofile: open file descriptors (``RLIMIT_NOFILE``).
        disk_mb: size of the private tmpfs working directory and ``/tmp`` (bwrap, unshare).
        max_output_bytes: stdout/stderr kept per stream; the rest is dropped (``truncated``).

    Raises:
        SandboxError: a limit is not a positive number (``cpu_s``: not a positive integer).

    >>> Limits(wall_s=3).cpu_seconds
    5
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
        """The ``RLIMIT_CPU`` a process of the run gets."""
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
        backend: the backend that ran it (see :data:`rft.sandbox.BACKENDS`).
        truncated: stdout or stderr was longer than the limit.
        channel: what the program wrote to the side channel fd (``channel_fd`` argument
            of the program), used by harnesses to report results apart from stdout.
        uid: the host uid the program ran as.

    >>> SandboxResult(-9, "", "", False, 0.1, "unshare").describe()
    'killed by SIGKILL'
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
