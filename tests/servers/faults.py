"""Deterministic fault injection shared by the fake identity servers.

Faults are decided per *request*, from one request counter per :class:`Faults` instance (shared by every
server the instance is given to), never per resource: a request that was hit can simply be retried.
With every ``*_every`` at 0 (off) or >= 2 and ``server_error_burst < server_error_every`` (see
:attr:`Faults.intermittent`), some request in every window of consecutive requests succeeds, so a
retrying client always gets through eventually.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

#: Fault kinds as counted in ``server.fault_counts``.
SLOW = "slow"
RATE_LIMIT = "rate_limit"
SERVER_ERROR = "server_error"
DROP = "drop"
INVALID_JSON = "invalid_json"
DUPLICATE = "duplicate_across_pages"

SERVER_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True)
class Decision:
    """What to do with one request: extra delay, and at most one failure kind (with its status)."""

    number: int
    delay: float = 0.0
    slow: bool = False
    kind: str | None = None
    status: int | None = None


@dataclass
class Faults:
    """Fault configuration (everything off by default) plus the thread-safe request counter.

    ``n`` below is the 1-based number of the request among all requests seen by this instance.

    - ``latency``: seconds slept (in the handler thread, holding no lock) before every response.
    - ``slow_every``/``slow_seconds``: request ``n`` with ``n % slow_every == 0`` sleeps ``slow_seconds`` more.
    - ``rate_limit_every``/``retry_after``: such requests get 429 with ``Retry-After: <retry_after>``.
    - ``server_error_every``/``server_error_burst``: such a request starts a burst of ``server_error_burst``
      consecutive 5xx answers (500/502/503 picked by the seeded RNG; 502/503 have an HTML body); a burst of
      0 counts as 1 when ``server_error_every`` is set.
    - ``drop_every``: status line and headers with the full Content-Length, half the body, then close.
    - ``invalid_json_every``: 200 with the body truncated to half (invalid JSON, consistent Content-Length).
    - ``duplicate_across_pages`` (Kratos only): every page after the first starts with the last item of the
      previous page (so such a page holds up to ``page_size + 1`` items).

    Failure kinds are exclusive per request, in the priority order burst > rate limit > drop > invalid JSON;
    ``slow`` combines with any of them.
    """

    latency: float = 0.0
    slow_every: int = 0
    slow_seconds: float = 0.0
    rate_limit_every: int = 0
    retry_after: float | int = 0
    server_error_burst: int = 0
    server_error_every: int = 0
    drop_every: int = 0
    invalid_json_every: int = 0
    duplicate_across_pages: bool = False
    seed: int = 0

    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _count: int = field(default=0, init=False, repr=False, compare=False)
    _burst_left: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("latency", "slow_seconds", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in (
            "slow_every",
            "rate_limit_every",
            "server_error_burst",
            "server_error_every",
            "drop_every",
            "invalid_json_every",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off)")
        self._rng = random.Random(self.seed)

    @property
    def intermittent(self) -> bool:
        """True when a retrying client is guaranteed to get through (no fault hits every request)."""
        everies = (self.rate_limit_every, self.drop_every, self.invalid_json_every)
        if any(e == 1 for e in everies):
            return False
        if self.server_error_every:
            return self.server_error_every >= 2 and max(1, self.server_error_burst) < self.server_error_every
        return True

    @property
    def request_count(self) -> int:
        """Requests decided so far."""
        with self._lock:
            return self._count

    def reset(self) -> None:
        """Restart the request counter, the current burst and the RNG (same seed)."""
        with self._lock:
            self._count = 0
            self._burst_left = 0
            self._rng = random.Random(self.seed)

    def decide(self) -> Decision:
        """Number the next request and decide its faults (thread-safe, deterministic in arrival order)."""
        with self._lock:
            self._count += 1
            n = self._count
            slow = bool(self.slow_every) and n % self.slow_every == 0
            delay = self.latency + (self.slow_seconds if slow else 0.0)
            kind: str | None = None
            status: int | None = None
            if self._burst_left > 0:
                self._burst_left -= 1
                kind = SERVER_ERROR
            elif self.server_error_every and n % self.server_error_every == 0:
                self._burst_left = max(1, self.server_error_burst) - 1
                kind = SERVER_ERROR
            elif self.rate_limit_every and n % self.rate_limit_every == 0:
                kind, status = RATE_LIMIT, 429
            elif self.drop_every and n % self.drop_every == 0:
                kind = DROP
            elif self.invalid_json_every and n % self.invalid_json_every == 0:
                kind = INVALID_JSON
            if kind == SERVER_ERROR:
                status = self._rng.choice(SERVER_ERROR_STATUSES)
            return Decision(number=n, delay=delay, slow=slow, kind=kind, status=status)

    def retry_after_header(self) -> str:
        """``Retry-After`` value in seconds (an integer when the configured value is integral)."""
        value = float(self.retry_after)
        return str(int(value)) if value.is_integer() else repr(value)
