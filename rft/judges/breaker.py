"""The circuit breaker of a judge endpoint: closed, open after repeated failures, half-open
for one probe after a cooldown. Import these names from :mod:`rft.judges.client`, which
re-exports them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rft.core.errors import GraderInfrastructureError

logger = logging.getLogger(__name__)

__all__ = ["CircuitBreaker", "CircuitOpenError"]


class CircuitOpenError(GraderInfrastructureError):
    """The endpoint failed too often in a row; calls fail fast until the cooldown ends."""


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → half-open after ``cooldown``.

    While open every call fails fast with :class:`CircuitOpenError`. After the
    cooldown one call (the probe) is let through; its success closes the circuit,
    its failure opens it for another cooldown. Meant for one event loop, so no locks.
    (A dozen lines of state did not justify a dependency: the async breakers on PyPI
    either keep global registries or are unmaintained.)

    >>> b = CircuitBreaker(failures=2, cooldown=60, name="http://h/v1")
    >>> b.record_failure(); b.record_failure(); b.state
    'open'
    """

    def __init__(self, failures: int, cooldown: float, *, name: str = "", clock: Any = time.monotonic):
        self.failures = failures
        self.cooldown = cooldown
        self.name = name
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self.opens = 0

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown:
            return "half-open"
        return "open"

    def before_call(self) -> bool:
        """Raise :class:`CircuitOpenError` unless a call may go out now.

        Returns True when this call is the half-open probe; a probe that ends without
        :meth:`record_success` or :meth:`record_failure` (cancelled) must be handed
        back with :meth:`abandon_probe`.
        """
        state = self.state
        if state == "closed":
            return False
        if state == "half-open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        self._refuse()
        return False  # pragma: no cover - _refuse raises

    def _refuse(self) -> None:
        opened = self._opened_at if self._opened_at is not None else self._clock()
        left = max(0.0, self.cooldown - (self._clock() - opened))
        raise CircuitOpenError(
            f"circuit open for {self.name}: {self._consecutive} consecutive failures; failing fast for "
            f"{left:.0f}s more before one probe request (is the server up? check base_url/url)"
        )

    def check(self) -> None:
        """Raise :class:`CircuitOpenError` if a call now would be refused (takes no probe)."""
        if self.state == "open" or (self.state == "half-open" and self._probe_in_flight):
            self._refuse()

    @property
    def probe_in_flight(self) -> bool:
        return self._probe_in_flight

    def abandon_probe(self) -> None:
        """Let another call be the probe (this one was cancelled before an answer)."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._consecutive += 1
        probe_failed = self._probe_in_flight
        self._probe_in_flight = False
        if probe_failed or (self._opened_at is None and self._consecutive >= self.failures):
            if self._opened_at is None:
                self.opens += 1
                logger.warning("circuit opened for %s after %d consecutive failures", self.name, self._consecutive)
            self._opened_at = self._clock()
