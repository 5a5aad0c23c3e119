"""Event ids and event times: UUIDv7 (RFC 9562 §5.7) and RFC 3339 timestamps in UTC.

::

    new_event_id() -> str          UUIDv7, strictly increasing within a process
    normalize_time(text) -> str    RFC 3339 date-time → ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC)
    format_time(moment) -> str     aware ``datetime`` → the same normalized form

UUIDv7 layout of the 128 bits, most significant first (RFC 9562 §5.7)::

    unix_ts_ms (48) | ver = 0b0111 (4) | rand_a (12) | var = 0b10 (2) | rand_b (62)

Monotonicity follows RFC 9562 §6.2 method 1 ("fixed bit-length dedicated counter"): a 26-bit
counter fills ``rand_a`` and the top 14 bits of ``rand_b``; the low 48 bits of ``rand_b`` are
fresh random bits for every id. The counter is seeded with 25 random bits at each new millisecond
(the clear top bit leaves at least 2**25 increments of headroom) and incremented for every further
id in the same millisecond. If the clock stands still or steps back, the last timestamp is reused
and the counter keeps counting; if the counter ever overflows, the timestamp is advanced by one
millisecond (§6.2, "counter rollover handling"). Ids therefore sort, as strings and as integers,
in the order ``new_event_id`` returned them.

Cost: about 1 µs. Random bits come from ``os.urandom`` (the CSPRNG, §6.9) drawn 4 KiB at a time
as hex text, so an id takes one slice of it; the timestamp part of the text is formatted once per
millisecond.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from trailseal.core.errors import InvalidEvent

__all__ = ["format_time", "new_event_id", "normalize_time"]

_COUNTER_BITS = 26  # rand_a (12) + the top 14 bits of rand_b
_SEED_HEX = 7  # hex digits drawn to seed the counter (28 bits, shifted down to 25)
_TAIL_HEX = 12  # 48 random bits per id
_POOL_BYTES = 4096
_lock = threading.Lock()
_last_ms = -1
_counter = 0
_prefix = ""  # "tttttttt-tttt-7": the text of _last_ms and the version digit
_pool = ""  # os.urandom bytes as hex text, consumed in slices
_pool_offset = 0


def _reset_after_fork() -> None:
    # A forked child must neither continue the parent's sequence nor reuse its random bytes, and
    # must not inherit the lock held by a thread that does not exist in the child.
    global _lock, _last_ms, _counter, _prefix, _pool, _pool_offset
    _lock, _last_ms, _counter, _prefix, _pool, _pool_offset = threading.Lock(), -1, 0, "", "", 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _tick(unix_ms: int, start: int) -> int:
    """Start millisecond ``unix_ms``: new prefix, counter seeded from the pool at ``start``;
    returns the pool offset after the seed. Call with ``_lock`` held."""
    global _last_ms, _counter, _prefix
    _last_ms = unix_ms
    _counter = int(_pool[start : start + _SEED_HEX], 16) >> 3  # 25 random bits
    _prefix = f"{(unix_ms >> 16) & 0xFFFF_FFFF:08x}-{unix_ms & 0xFFFF:04x}-7"
    return start + _SEED_HEX


def new_event_id() -> str:
    """Return a new UUIDv7 (RFC 9562 §5.7) string, e.g. ``0190f3a2-7b1c-7d4e-9a2b-3c4d5e6f7a8b``.

    Lowercase, hyphenated, 36 characters; greater than every id this process returned before.
    Thread-safe.
    """
    global _counter, _pool, _pool_offset
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        start = _pool_offset
        if start + _SEED_HEX + _TAIL_HEX > len(_pool):
            _pool, start = os.urandom(_POOL_BYTES).hex(), 0
        if now_ms > _last_ms:
            start = _tick(now_ms, start)
        else:
            _counter += 1
            if _counter >> _COUNTER_BITS:  # RFC 9562 §6.2: on rollover, advance the timestamp
                start = _tick(_last_ms + 1, start)
        counter = _counter
        _pool_offset = start + _TAIL_HEX
        # rand_a = the top 12 counter bits; then the variant (0b10) and the low 14 counter bits;
        # then 48 random bits.
        return f"{_prefix}{counter >> 14:03x}-{0x8000 | counter & 0x3FFF:04x}-{_pool[start : start + _TAIL_HEX]}"


# RFC 3339 §5.6 date-time; "T" and "Z" may be lowercase (§5.6 NOTE). [0-9], not \d: no other digits.
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_NORMAL_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def normalize_time(text: Any, field: str = "time") -> str:
    """Return RFC 3339 ``text`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``InvalidEvent`` if bad.

    Offsets are applied (``2024-05-01T14:00:00+02:00`` → ``2024-05-01T12:00:00.000000Z``);
    fractions beyond microseconds are truncated; a leap second (RFC 3339 §5.7) is clamped to
    ``:59.999999`` of the same minute, which keeps it ordered before the next second.
    """
    if type(text) is str and _NORMAL_TIME_RE.fullmatch(text):
        try:
            datetime.fromisoformat(text[:26])  # already normalized: only check the ranges
            return text
        except ValueError:
            pass  # a leap second or an impossible date: the general path below tells which
    value: str = text if type(text) is str else ""
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise InvalidEvent(
            field, f"must be an RFC 3339 date-time like 2024-05-01T12:00:00Z, got {text!r}"
        )
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    micro = int(match[7][:6].ljust(6, "0")) if match[7] else 0
    leap = second == 60
    try:
        moment = datetime(
            year, month, day, hour, minute, 59 if leap else second, 999_999 if leap else micro
        )
        if match[8]:  # RFC 3339 §4.2: local time = UTC + offset
            if int(match[9]) > 23 or int(match[10]) > 59:
                raise ValueError(f"offset {match[8]}{match[9]}:{match[10]} out of range")
            offset = timedelta(hours=int(match[9]), minutes=int(match[10]))
            moment = moment - offset if match[8] == "+" else moment + offset
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(field, f"invalid date-time {text!r}: {exc}") from None
    return moment.isoformat(timespec="microseconds") + "Z"


def format_time(moment: datetime) -> str:
    """Format a timezone-aware ``datetime`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"format_time: naive datetime {moment!r}; give it a tzinfo")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
