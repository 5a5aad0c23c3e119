"""Retry timing: exponential backoff with jitter, and ``Retry-After`` (RFC 9110 §10.2.3)."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before delivery attempt ``n + 1`` after ``n`` failures in a row.

    The base delay is ``initial * multiplier**(n - 1)``, capped at ``maximum``; "full jitter"
    spreads it over ``[base * (1 - jitter), base]`` so that producers that failed together do not
    retry together. A server's ``Retry-After`` is a floor: the wait is never shorter. There is no
    attempt limit: undelivered events stay in the spool until the server takes them.
    """

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(
                f"retry policy: want 0 < initial <= maximum, multiplier >= 1, 0 <= jitter <= 1, got {self!r}"
            )

    def delay(self, failures: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` (≥ 1) failed attempts in a row."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, failures - 1))
        wait = base * (1.0 - self.jitter * (rng or random).random())
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delay-seconds or an HTTP-date; ``None`` if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
