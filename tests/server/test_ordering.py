"""The producer-order gate (server/ordering.py) on its own: who waits, who goes, who is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from tests.factories import make_event
from trailseal.core.errors import InvalidEvent, OverloadedError
from trailseal.server.ordering import ProducerOrder, producer_run


def batch(producer: str, first: int, count: int) -> list[dict[str, Any]]:
    return [make_event(producer={"id": producer, "seq": first + n}) for n in range(count)]


def gate(wait: float = 2.0, stored: Mapping[str, int] | None = None) -> ProducerOrder:
    return ProducerOrder(wait, lambda log: dict(stored or {}))


async def pass_through(order: ProducerOrder, run: tuple[str, int, int], log: list[int],
                       fail: BaseException | None = None, delay: float = 0.0) -> None:
    """One request: stage (``delay``), wait for its turn, then hand over (or fail)."""
    with order.hand_over("default", run):
        await asyncio.sleep(delay)
        await order.turn("default", run)
        if fail is not None:
            raise fail
        log.append(run[1])


def test_producer_run_needs_one_producer_and_contiguous_numbers() -> None:
    assert producer_run(batch("svc", 10, 3)) == ("svc", 10, 12)
    assert producer_run(batch("svc", 10, 1)) == ("svc", 10, 10)
    mixed = batch("svc", 10, 2) + batch("other", 12, 1)
    assert producer_run(mixed) is None
    gap = batch("svc", 10, 2) + batch("svc", 13, 1)
    assert producer_run(gap) is None
    assert producer_run([make_event()]) is None  # no producer
    assert producer_run([]) is None
    assert producer_run([{"producer": {"id": "svc", "seq": "1"}}]) is None
    assert producer_run([[1, 2]]) is None  # malformed input: the stages will say what is wrong


def test_a_batch_that_overtakes_its_predecessor_waits_for_it() -> None:
    async def scenario() -> tuple[list[int], ProducerOrder]:
        order, handed = gate(), []
        await pass_through(order, ("svc", 0, 99), handed)  # the producer is known from here on
        later = asyncio.create_task(pass_through(order, ("svc", 200, 299), handed))
        await asyncio.sleep(0.05)  # the later batch is staged and waiting
        assert handed == [0] and not later.done()
        await pass_through(order, ("svc", 100, 199), handed)
        await later
        return handed, order

    handed, order = asyncio.run(scenario())
    assert handed == [0, 100, 200]
    assert order.waited == 1 and order.timed_out == 0


def test_a_missing_predecessor_holds_the_batch_only_for_the_wait() -> None:
    async def scenario() -> tuple[list[int], float, ProducerOrder]:
        order, handed = gate(wait=0.2), []
        await pass_through(order, ("svc", 0, 9), handed)
        started = asyncio.get_running_loop().time()
        await pass_through(order, ("svc", 20, 29), handed)  # 10..19 never comes
        return handed, asyncio.get_running_loop().time() - started, order

    handed, waited, order = asyncio.run(scenario())
    assert handed == [0, 20] and 0.15 <= waited < 2.0
    assert order.timed_out == 1


def test_a_retried_failure_sends_the_batches_behind_it_back_too() -> None:
    async def scenario() -> tuple[list[int], BaseException | None]:
        order, handed = gate(), []
        await pass_through(order, ("svc", 0, 9), handed)
        later = asyncio.create_task(pass_through(order, ("svc", 20, 29), handed))
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError):
            await pass_through(order, ("svc", 10, 19), handed, fail=OverloadedError("queue full"))
        try:
            await later
        except OverloadedError as exc:
            return handed, exc
        return handed, None

    handed, refused = asyncio.run(scenario())
    assert handed == [0]  # neither 10..19 nor 20..29 went ahead of the retry
    assert refused is not None and "resend" in str(refused)


def test_a_batch_refused_for_good_lets_the_next_one_go() -> None:
    async def scenario() -> list[int]:
        order, handed = gate(), []
        await pass_through(order, ("svc", 0, 9), handed)
        later = asyncio.create_task(pass_through(order, ("svc", 20, 29), handed))
        await asyncio.sleep(0.05)
        with pytest.raises(InvalidEvent):
            await pass_through(order, ("svc", 10, 19), handed, fail=InvalidEvent("time", "bad"))
        await asyncio.wait_for(later, 1.0)  # released at once, not after the 2 s wait
        return handed

    assert asyncio.run(scenario()) == [0, 20]


def test_after_a_restart_the_stored_numbers_say_what_came_before() -> None:
    async def scenario() -> list[int]:
        order, handed = gate(stored={"svc": 99}), []  # 0..99 were stored before the restart
        later = asyncio.create_task(pass_through(order, ("svc", 200, 299), handed))
        await asyncio.sleep(0.05)
        assert not later.done()  # 100..199 (retried by the producer) must go first
        await pass_through(order, ("svc", 100, 199), handed)
        await later
        return handed

    assert asyncio.run(scenario()) == [100, 200]


def test_a_new_producers_first_two_batches_are_put_in_order() -> None:
    """A producer the store has never seen starts at seq 0: with a backlog it sends its first two
    batches at once, and the second may arrive first."""

    async def scenario() -> tuple[list[int], ProducerOrder]:
        order, handed = gate(), []
        later = asyncio.create_task(pass_through(order, ("new", 100, 199), handed))
        await asyncio.sleep(0.05)
        assert not later.done()
        await pass_through(order, ("new", 0, 99), handed)
        await later
        await pass_through(order, ("new", 0, 99), handed)  # a retry of a batch already handed over
        await pass_through(order, ("other", 0, 0), handed)  # another producer: its own order
        return handed, order

    handed, order = asyncio.run(scenario())
    assert handed == [0, 100, 0, 0] and order.waited == 1


def test_a_producer_unknown_to_the_store_that_does_not_start_at_zero_waits_once() -> None:
    async def scenario() -> list[int]:
        order, handed = gate(wait=0.1), []  # e.g. producer tracking was off before a restart
        await pass_through(order, ("old", 500, 509), handed)  # waits 0.1 s for 0..499, then goes
        await asyncio.wait_for(pass_through(order, ("old", 510, 519), handed), 0.05)  # no more waiting
        return handed

    assert asyncio.run(scenario()) == [500, 510]


def test_wait_zero_turns_the_gate_off() -> None:
    async def scenario() -> list[int]:
        order, handed = gate(wait=0.0), []
        await pass_through(order, ("svc", 0, 9), handed)
        await pass_through(order, ("svc", 20, 29), handed)
        return handed

    assert asyncio.run(scenario()) == [0, 20]
