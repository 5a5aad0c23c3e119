"""Event ids and time stamps for ``emit``: cheap on the caller's thread, even with cold caches.

::

    new_event_id(now_ns) -> str     UUIDv7 (RFC 9562 §5.7) for the instant now_ns (time.time_ns())
    format_time_ns(now_ns) -> str   the same instant as YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC)
    restock()                       make the next batch of random text (a background thread)

``emit`` reads the clock once (``time.time_ns()``): the id and the event's ``time`` both come from
that reading. The id is made on the caller's thread (``emit`` returns it); the ``time`` text is
written on the spooler thread (:func:`trailseal.sdk.envelope.complete`).

Why not :func:`trailseal.core.ids.new_event_id` (same layout): an application that emits now and
then runs ``emit`` with cold caches, where a call costs what it touches — code and data — far
more than the instructions it runs. The core generator takes a lock and, when calls are more than
a millisecond apart, formats its timestamp and parses hex to re-seed its counter at every call.
Here an id is a few integer operations, look-ups in small tables and random text made in
advance: in ``emit``, about 40% of the core generator's cold cost (``bench/sdk.py --cold``).

UUIDv7 layout of the 128 bits, most significant first (RFC 9562 §5.7), and where each part of the
text comes from::

    unix_ts_ms (48) | ver = 0b0111 (4) | rand_a (12) | var = 0b10 (2) | rand_b (62)
    tttttttt-tt tt  - 7                  ccc         - vrrr-rrrrrrrrrrrr
    (per 256 ms)(_HEX2)                  (_HEX1, _HEX2)  (made _BATCH ids at a time)

- ``rand_a`` is a 12-bit counter (RFC 9562 §6.2 method 1, "fixed bit-length dedicated counter"):
  the low 12 bits of one process-wide ``itertools.count`` started at a random value. ``next()``
  on it is one C call, atomic under the GIL, so no lock is taken (a free-threaded interpreter
  gets a locked variant). It is not re-seeded at each millisecond.
- ``rand_b`` is the variant and 62 fresh random bits for every id, from ``os.urandom`` (§6.9),
  made as text ``_BATCH`` ids at a time — by :func:`restock` on the client's spooler thread, so
  that ``emit`` seldom pays for it.
- The timestamp never goes back: if the clock steps back, the last one is reused (§6.2); when the
  counter wraps within a millisecond, the timestamp is advanced by one (§6.2, "counter rollover
  handling"). So ids made one after the other increase. Ids that threads make at the same time
  are ordered by millisecond only: without a lock (which would cost ``emit`` a tenth of its cold
  time), a thread can take a counter value, lose the GIL, and get its timestamp after another
  thread wrapped the counter. They are unique all the same: each id gets 62 random bits of its
  own (no batch text is handed out twice), which also keep processes apart.

A forked child gets a new counter start and new random bits (``os.register_at_fork``).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["format_time_ns", "new_event_id", "restock"]

_HEX1 = [f"{value:x}" for value in range(16)]
_HEX2 = [f"{value:02x}" for value in range(256)]
_BATCH = 256  # ids per batch of random text (2 KiB from os.urandom)
# The first byte of rand_b: the variant 0b10 in its top two bits (RFC 9562 §4.1), 6 random bits.
_VARIANT = bytes(0x80 | value & 0x3F for value in range(256))


def _new_counter() -> Iterator[int]:
    return itertools.count(int.from_bytes(os.urandom(2), "big"))


def _tails() -> Iterator[str]:
    """``_BATCH`` texts ``vrrr-rrrrrrrrrrrr``: rand_b (the variant and 62 random bits) of one id
    each, as hex with the hyphen where the UUID text has it."""
    first = bytearray(os.urandom(2 * _BATCH))
    first[::2] = first[::2].translate(_VARIANT)
    rest = os.urandom(6 * _BATCH)
    # hex(sep, n) groups n bytes per "-": 2 bytes ("vrrr") and 6 bytes ("rrrrrrrrrrrr") per id.
    pairs = zip(first.hex("-", 2).split("-"), rest.hex("-", 6).split("-"), strict=True)
    return iter(list(map("-".join, pairs)))


_counter = _new_counter()
_tail = _tails()  # the batch in use: next() on it is atomic, so threads may share it
_spare: Iterator[str] | None = None  # the next batch, made by restock()
_last_ms = 0  # the timestamp of the last id: no later id gets an earlier one
_head: tuple[int, str] = (-1, "")  # (unix_ms >> 8, "tttttttt-tt"): the timestamp's text but for
# its last 8 bits, which change every millisecond and come from _HEX2


def _reset_after_fork() -> None:
    # A forked child must neither continue the parent's counter nor reuse its random bits.
    global _counter, _tail, _spare
    _counter, _tail, _spare = _new_counter(), _tails(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def restock() -> None:
    """Make the next batch of random text now unless it is made (about 0.05 ms): the client's
    spooler thread calls this, so that ``emit`` seldom makes a batch itself."""
    global _spare
    if _spare is None:
        _spare = _tails()


def _new_event_id(now_ns: int) -> str:
    """See :func:`new_event_id`; relies on the GIL: ``next()`` on the counter and on the batch
    are atomic, and from reading ``_last_ms`` to writing it there is no call, so no other thread
    runs in between (CPython switches threads at calls and backward jumps)."""
    global _last_ms, _head, _tail, _spare
    count = next(_counter) & 0xFFF
    unix_ms = now_ns // 1_000_000
    last = _last_ms
    if unix_ms < last:  # the clock stepped back, or a wrap advanced the timestamp: keep the order
        unix_ms = last
    if not count and unix_ms == last:  # the counter wrapped within this millisecond (§6.2)
        unix_ms += 1
    _last_ms = unix_ms
    key, head = _head
    if unix_ms >> 8 != key:
        # The 6 timestamp bytes as hex with a "-" after the first 4 ("tttttttt-tttt"), less the
        # last two digits.
        head = unix_ms.to_bytes(6, "big").hex("-", -4)[:-2]
        _head = (unix_ms >> 8, head)
    tail = next(_tail, None)
    while tail is None:  # the batch is used up: take the spare, or make one. Threads may share a
        batch = _spare or _tails()  # batch (next() is atomic); none is ever used twice.
        _tail, _spare = batch, None
        tail = next(batch, None)
    return f"{head}{_HEX2[unix_ms & 0xFF]}-7{_HEX1[count >> 8]}{_HEX2[count & 0xFF]}-{tail}"


def _locked(generate: Callable[[int], str]) -> Callable[[int], str]:
    lock = threading.Lock()

    def new_event_id(now_ns: int) -> str:
        with lock:
            return generate(now_ns)

    return new_event_id


# Without a GIL (a free-threaded build) the counter, the batches and _last_ms need a lock.
new_event_id: Callable[[int], str] = (
    _new_event_id if getattr(sys, "_is_gil_enabled", lambda: True)() else _locked(_new_event_id)
)
new_event_id.__doc__ = """Return a new UUIDv7 for the instant ``now_ns`` (nanoseconds since the
Unix epoch, from ``time.time_ns()``), e.g. ``0190f3a2-7b1c-7d4e-9a2b-3c4d5e6f7a8b``: lowercase,
hyphenated, 36 characters, unique, greater than the ids made before it unless other threads make
ids at the same time (see the module docstring). Thread-safe."""


_second: tuple[int, str] = (-1, "")  # the last second formatted: one strftime per second


def format_time_ns(now_ns: int) -> str:
    """``now_ns`` (nanoseconds since the Unix epoch) as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC,
    truncated to microseconds): the form :func:`trailseal.core.ids.normalize_time` gives."""
    global _second
    seconds, micros = divmod(now_ns // 1000, 1_000_000)
    cached, prefix = _second
    if seconds != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"
