"""Which backend runs untrusted code here: detection (a probe run per backend), forcing, refusal.

Probing runs a tiny program through each backend once per process; the result is
cached. ``RFT_SANDBOX_BACKEND`` forces a backend; ``RFT_SANDBOX_REQUIRE_ISOLATION=1``
refuses ``rlimits-only``.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading

from rft.core.errors import did_you_mean
from rft.sandbox.commands import python
from rft.sandbox.limits import Limits, SandboxError, SandboxUnavailableError
from rft.sandbox.process import execute

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BACKEND_ENV",
    "REQUIRE_ENV",
    "available_backends",
    "isolation_level",
    "require_isolation_default",
    "resolve_backend",
]

#: Backends from the most to the least isolated.
BACKENDS: tuple[str, ...] = ("bwrap", "unshare", "rlimits-only")
BACKEND_ENV = "RFT_SANDBOX_BACKEND"
REQUIRE_ENV = "RFT_SANDBOX_REQUIRE_ISOLATION"

_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}  # backend -> None when usable, else why not
_logged_level: str | None = None


def _probe(backend: str) -> str | None:
    """Run a tiny program through ``backend``; None when it works, else the reason."""
    if backend == "bwrap" and shutil.which("bwrap") is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if backend == "unshare" and shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if shutil.which("prlimit") is None:
        return "prlimit (util-linux) is not installed"
    try:
        res = execute(
            [python(), "-I", "-S", "-c", "print('ok')"],
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

    >>> available_backends()["rlimits-only"] is None
    True
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
        raise SandboxError(f"{BACKEND_ENV}={forced!r} is not a sandbox backend: {did_you_mean(forced, BACKENDS)}")
    return forced


def isolation_level(*, refresh: bool = False) -> str:
    """The isolation level untrusted code runs under here: ``bwrap``, ``unshare`` or ``rlimits-only``.

    The environment variable ``RFT_SANDBOX_BACKEND`` forces one; otherwise the most
    isolated backend that works on this machine. Logged once per process.

    Raises:
        SandboxError: ``RFT_SANDBOX_BACKEND`` names no backend.

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


def resolve_backend(backend: str | None, require_isolation: bool | None) -> str:
    """The backend a run uses: ``backend`` when given, else :func:`isolation_level`.

    Raises:
        SandboxError: ``backend`` names no backend.
        SandboxUnavailableError: the backend does not work here, or isolation is
            required (``require_isolation``, default ``RFT_SANDBOX_REQUIRE_ISOLATION``)
            and the backend is ``rlimits-only``.
    """
    if backend is None:
        backend = isolation_level()  # forced by RFT_SANDBOX_BACKEND, or the best that works
    elif backend not in BACKENDS:
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
