"""Time values in queries: absolute RFC 3339, dates, ``now`` and relative offsets; durations.

A time value denotes a *period* ``[start, end)`` so that comparisons read naturally at any
precision::

    2026-11-28                 the whole UTC day          [2026-11-28T00:00:00Z, 2026-11-29T00:00:00Z)
    2026-11-28T10:15:30Z       that second                [10:15:30, 10:15:31)
    2026-11-28T10:15:30.25Z    an instant                 start == end
    now, -2h, now-30m, now+1d  an instant relative to the query's clock

``time:X`` is ``start <= time < end`` (``time == X`` for an instant), ``time:>X`` is
``time >= end`` (``time > X`` for an instant), ``time:>=X`` is ``time >= start``,
``time:<X`` is ``time < start``, ``time:<=X`` is ``time < end`` (``<= X`` for an instant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from trailseal.core.errors import FormatError, InvalidEvent
from trailseal.core.event import format_time, normalize_time

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w))+")
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_RELATIVE = re.compile(r"(?:now)?(?:([+-])(.+))?")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_NO_ZONE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")
_FRACTION = re.compile(r":[0-9]{2}\.[0-9]+")
_SECONDS = re.compile(r".*[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})")


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` as normalized UTC strings; ``start == end`` for an instant."""

    start: str
    end: str

    @property
    def instant(self) -> bool:
        """True when the value named a single moment (relative times, fractional seconds)."""
        return self.start == self.end


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``2h``, ``1h30m``, ``7d``, ``1w``, ``250ms`` as a ``timedelta``.

    Raises :class:`FormatError` for anything else (including a bare number: say the unit).
    """
    if not _DURATION.fullmatch(text):
        raise FormatError(
            f"duration {text!r}: want a number and a unit (ms, s, m, h, d, w), like 2h or 1h30m"
        )
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def to_datetime(normalized: str) -> datetime:
    """A normalized UTC string (``...ffffffZ``) as an aware ``datetime``."""
    return datetime.fromisoformat(normalized[:-1]).replace(tzinfo=UTC)


def parse_time(text: str, now: datetime) -> Period:
    """The period a query time value denotes (see the module docstring).

    Raises :class:`FormatError` naming what is wrong; ``now`` must be timezone-aware.
    """
    value = text.strip()
    relative = _RELATIVE.fullmatch(value)
    if value and relative is not None and (value.startswith(("now", "-", "+"))):
        moment = now
        if relative.group(1):
            delta = parse_duration(relative.group(2))
            moment = now + delta if relative.group(1) == "+" else now - delta
        stamp = format_time(moment)
        return Period(stamp, stamp)
    date = _DATE.fullmatch(value)
    if date is not None:
        try:
            day = datetime(int(date[1]), int(date[2]), int(date[3]), tzinfo=UTC)
        except ValueError as exc:
            raise FormatError(f"time {text!r}: {exc}") from None
        return Period(format_time(day), format_time(day + timedelta(days=1)))
    if _NO_ZONE.fullmatch(value):
        raise FormatError(f"time {text!r}: add Z or an offset like +02:00 (times are UTC-exact)")
    candidate = value.replace(" ", "T", 1)
    try:
        start = normalize_time(candidate)
    except InvalidEvent:
        raise FormatError(
            f"time {text!r}: want RFC 3339 (2026-11-28T10:00:00Z), a date (2026-11-28), now, "
            f"or a relative time like -2h"
        ) from None
    if _FRACTION.search(candidate):
        return Period(start, start)  # fractional seconds: an instant
    if not _SECONDS.fullmatch(candidate):
        raise FormatError(f"time {text!r}: want seconds, like 2026-11-28T10:00:00Z")
    return Period(start, format_time(to_datetime(start) + timedelta(seconds=1)))
