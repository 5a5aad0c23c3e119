"""Producer order across concurrent requests: a producer may keep several batches in flight and
still have its events sequenced in the order it numbered them.

A producer that stamps ``producer.id`` and a gap-free ``producer.seq`` (the SDK does) and sends a
batch before the previous one is answered opens a race: two requests of the same producer are
read, parsed and staged side by side, and whichever reaches the sequencer queue first is
sequenced first. This gate closes it, as Kafka's idempotent producer does with its sequence
numbers: a request whose events are one producer's contiguous run ``[first, last]`` is handed to
the sequencer only once ``first - 1`` has been handed over (or is known to be stored), so the
queue — first in, first out — receives each producer's batches in ``seq`` order.

* A request that arrives early waits (asynchronously; other requests go on) for the one before it,
  at most ``order_wait_seconds``. If that one never comes (the producer lost it, or its seq numbers
  have a gap), the request goes ahead after the wait: order is a promise about what arrives, not a
  reason to stall a producer; the gap is counted by producer tracking (docs/pipeline.md).
* If the request before it fails with an answer the producer retries (429, 503, 5xx), the waiting
  one is answered 503 with ``Retry-After`` too, so the producer resends both, in order. A request
  refused for good (4xx) releases the ones after it.
* After a restart the gate starts from the highest ``seq`` producer tracking stored for the
  producer, so batches retried after a crash are put back in order as well.

Requests without a producer run pass at once. A producer the store has no record of is expected
to start at seq 0 (a batch starting later waits, once, for the ones before it). The state is per
API process, seeded from the store: behind a load balancer that spreads one producer over several
nodes, order holds per node (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from trailseal.core.errors import (
    AccessError,
    ConflictError,
    FormatError,
    InvalidEvent,
    LimitExceeded,
    NotFoundError,
    OverloadedError,
    RateLimited,
)

__all__ = ["ProducerOrder", "producer_run"]

_MAX_PRODUCERS = 100_000  # producers remembered per process (least recently seen forgotten)


def producer_run(raws: Sequence[Any]) -> tuple[str, int, int] | None:
    """``(producer id, first seq, last seq)`` when the request's first and last events carry the
    same producer id and seq numbers ``last - first == len - 1``; else None (no ordering)."""
    if not raws:
        return None
    head, tail = raws[0], raws[-1]
    if type(head) is not dict or type(tail) is not dict:
        return None
    first_producer, last_producer = head.get("producer"), tail.get("producer")
    if type(first_producer) is not dict or type(last_producer) is not dict:
        return None
    producer_id, first, last = first_producer.get("id"), first_producer.get("seq"), last_producer.get("seq")
    if type(producer_id) is not str or last_producer.get("id") != producer_id:
        return None
    if type(first) is not int or type(last) is not int or last - first != len(raws) - 1:
        return None
    return producer_id, first, last


@dataclass
class _Producer:
    handed: int  # highest seq handed to the sequencer (or stored), in order
    waiters: list[tuple[int, asyncio.Future[bool]]] = field(default_factory=list)


class ProducerOrder:
    """The gate; one per API process (see the module docstring).

    ``stored(log)`` returns the highest stored ``seq`` per producer id of ``log`` (read once per
    log, the first time a producer of it is seen).
    """

    def __init__(self, wait_seconds: float, stored: Callable[[str], Mapping[str, int]]) -> None:
        self.wait_seconds = wait_seconds
        self._stored = stored
        self._seeds: dict[str, Mapping[str, int]] = {}
        self._producers: OrderedDict[tuple[str, str], _Producer] = OrderedDict()
        self.waited = 0  # requests that had to wait for an earlier batch (for tests and metrics)
        self.timed_out = 0  # ... and went ahead after order_wait_seconds without it

    @contextmanager
    def hand_over(self, log: str, run: tuple[str, int, int] | None) -> Iterator[None]:
        """Around staging and handing one request to the sequencer: ``await`` :meth:`turn` inside,
        just before the hand-over; the block's end marks ``run`` handed over, or failed."""
        try:
            yield
        except BaseException as exc:
            if run is not None:
                self._settle(log, run, failed=exc)
            raise
        if run is not None:
            self._settle(log, run, failed=None)

    async def turn(self, log: str, run: tuple[str, int, int] | None) -> None:
        """Return when ``run`` may be handed to the sequencer; raise ``OverloadedError`` when the
        batch before it failed with an answer its producer retries."""
        if run is None or self.wait_seconds <= 0:
            return
        producer_id, first, _last = run
        state = self._state(log, producer_id, first)
        if state.handed >= first - 1:
            return
        self.waited += 1
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        state.waiters.append((first, future))
        try:
            go = await asyncio.wait_for(asyncio.shield(future), self.wait_seconds)
        except TimeoutError:
            self.timed_out += 1
            return
        finally:
            if (first, future) in state.waiters:
                state.waiters.remove((first, future))
        if not go:
            raise OverloadedError(
                f"producer {producer_id}: the batch before seq {first} failed and will be retried; "
                "resend this one after it"
            )

    def _state(self, log: str, producer_id: str, first: int) -> _Producer:
        key = (log, producer_id)
        state = self._producers.get(key)
        if state is not None:
            self._producers.move_to_end(key)
            return state
        seeds = self._seeds.get(log)
        if seeds is None:
            seeds = self._seeds[log] = dict(self._stored(log))
        stored = seeds.get(producer_id)
        # A producer the store has no record of starts at seq 0: a batch that starts later waits
        # for the ones before it like any other (a producer with a backlog sends two at once).
        state = _Producer(-1 if stored is None else stored)
        self._producers[key] = state
        if len(self._producers) > _MAX_PRODUCERS:
            self._producers.popitem(last=False)
        return state

    def _settle(self, log: str, run: tuple[str, int, int], failed: BaseException | None) -> None:
        producer_id, first, last = run
        state = self._producers.get((log, producer_id))
        if state is None:
            return
        retry = failed is not None and _retried(failed)
        if not retry:
            state.handed = max(state.handed, last)
        for waiter_first, future in list(state.waiters):
            if future.done():
                continue
            if retry and first <= waiter_first - 1 <= last:
                future.set_result(False)  # the batch it waits for will come again: so must it
            elif state.handed >= waiter_first - 1:
                future.set_result(True)


_FINAL = (InvalidEvent, LimitExceeded, FormatError, ConflictError, NotFoundError, AccessError)
"""Answers a producer does not retry as they are (4xx); every other failure (429, 503, 5xx) it does.
``RateLimited`` (429) is an ``AccessError`` but is retried."""


def _retried(exc: BaseException) -> bool:
    """Whether the producer will send the failed batch again (a 429, 503 or 5xx answer)."""
    return isinstance(exc, RateLimited) or not isinstance(exc, _FINAL)
