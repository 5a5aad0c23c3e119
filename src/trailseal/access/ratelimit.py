"""Token buckets per caller: ``rate`` tokens a second up to ``burst``; one token per request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """One bucket per caller id, created full on first use.

    ``take`` returns 0 when the request may go ahead, else the seconds until a token is due (the
    ``Retry-After``). A rate of 0 means unlimited. Idle full buckets are forgotten past
    ``max_buckets`` so memory stays bounded by the number of active callers.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, updated)
        self._lock = threading.Lock()

    @staticmethod
    def _size(rate: float, burst: int) -> float:
        return float(burst) if burst > 0 else max(1.0, 2.0 * rate)

    def take(self, caller: str, rate: float | None = None, burst: int | None = None) -> float:
        """Spend a token of ``caller``'s bucket (``rate``/``burst`` override the defaults)."""
        rate = self.rate if rate is None else rate
        if rate <= 0:
            return 0.0
        size = self._size(rate, self.burst if burst is None else burst)
        now = self.clock()
        with self._lock:
            tokens, updated = self._buckets.get(caller, (size, now))
            tokens = min(size, tokens + (now - updated) * rate)
            if tokens >= 1.0:
                self._buckets[caller] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_buckets:
                    self._forget_full(now, rate, size)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1.0 - tokens) / rate

    def _forget_full(self, now: float, rate: float, size: float) -> None:
        for caller, (tokens, updated) in list(self._buckets.items()):
            if tokens + (now - updated) * rate >= size:
                del self._buckets[caller]
