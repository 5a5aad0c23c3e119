"""Event ids: UUIDv7 (RFC 9562 §5.7), strictly increasing within a process.

Layout of the 128 bits, most significant first (RFC 9562 §5.7)::

    unix_ts_ms (48) | ver = 0b0111 (4) | rand_a (12) | var = 0b10 (2) | rand_b (62)

Monotonicity follows RFC 9562 §6.2 method 1 ("fixed bit-length dedicated counter"): a 42-bit
counter fills ``rand_a`` and the top 30 bits of ``rand_b``; the low 32 bits of ``rand_b`` are
fresh random bits for every id. The counter is seeded with 41 random bits at each new millisecond
(the clear top bit leaves at least 2**41 increments of headroom) and incremented for every further
id in the same millisecond. If the clock stands still or steps back, the last timestamp is reused
and the counter keeps counting; if the counter ever overflows, the timestamp is advanced by one
millisecond (§6.2, "counter rollover handling"). Ids therefore sort, as strings and as integers,
in the order ``new_event_id`` returned them.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

__all__ = ["new_event_id"]

_COUNTER_BITS = 42
_RAND_B_COUNTER_BITS = _COUNTER_BITS - 12  # the part of the counter that lives in rand_b
_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _reset_after_fork() -> None:
    # A forked child must not continue the parent's sequence in lockstep.
    global _last_ms, _counter
    _last_ms = 0
    _counter = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def new_event_id() -> str:
    """Return a new UUIDv7 (RFC 9562 §5.7) string, e.g. ``0190f3a2-7b1c-7d4e-9a2b-3c4d5e6f7a8b``.

    Lowercase, hyphenated, 36 characters; greater than every id this process returned before.
    Thread-safe.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = secrets.randbits(_COUNTER_BITS - 1)
        else:
            _counter += 1
            if _counter >> _COUNTER_BITS:  # RFC 9562 §6.2: on rollover, advance the timestamp
                _last_ms += 1
                _counter = secrets.randbits(_COUNTER_BITS - 1)
        unix_ts_ms, counter = _last_ms, _counter
    value = (
        (unix_ts_ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76  # version 7
        | (counter >> _RAND_B_COUNTER_BITS) << 64  # rand_a: top 12 counter bits
        | 0b10 << 62  # variant 10xx (RFC 9562 §4.1)
        | (counter & ((1 << _RAND_B_COUNTER_BITS) - 1)) << 32  # rand_b: low 30 counter bits
        | secrets.randbits(32)  # rand_b: 32 random bits
    )
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
