"""JetStream consumer in process (real NATS): acknowledgements come only after the commit, and a
redelivery of committed events (a crash between commit and ack) is sequenced once."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.factories import make_event
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.cluster import ClusterSequencer, LocalLeases
from trailseal.sequencer.jetstream import JetStreamBus
from trailseal.sequencer.types import Prepared
from trailseal.storage.memory import MemoryStore

LOG = "default"
ORIGIN = "test.example/default"
KEYRING = Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z")
NOW = "2026-11-28T10:15:31.000000Z"


class CrashBeforeAck(JetStreamBus):
    """Commits like the real consumer but 'dies' before acknowledging anything."""

    async def _settle(self, log: str, decoded: Sequence[tuple[Any, Prepared]],
                      future: concurrent.futures.Future[Any] | None) -> None:
        if future is not None:
            await asyncio.wrap_future(future)


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def stream(nats_url: str) -> Iterator[str]:
    name = f"TS_TEST_{uuid.uuid4().hex[:10].upper()}"
    yield name
    bus = JetStreamBus(nats_url, name)
    bus.start()
    bus.delete_stream()
    bus.close()


def sequencer_with(bus: JetStreamBus, store: MemoryStore) -> ClusterSequencer:
    seq = ClusterSequencer(store, lambda log: KEYRING, lambda log: ORIGIN, lambda: NOW, leases=LocalLeases())
    bus.sequencer = seq
    seq.hooks.append(bus)
    seq.start()
    return seq


def test_redelivered_committed_events_are_sequenced_once(nats_url: str, stream: str) -> None:
    store = MemoryStore()
    store.ensure_log(LOG, ORIGIN, NOW)
    items = [prepare({**make_event(), "id": f"ev-{n}"}, log=LOG, received_at=NOW) for n in range(300)]

    crashing = CrashBeforeAck(nats_url, stream, ack_wait=1.0, fetch_batch=100)
    crashing.start()
    asyncio.run(crashing.publish(LOG, items))
    asyncio.run(crashing.publish(LOG, items[:50]))  # a producer's retry: dropped by Nats-Msg-Id
    first = sequencer_with(crashing, store)
    wait_for(lambda: store.tree_size(LOG) == 300)
    assert crashing.backlog(LOG) == 300, "nothing acknowledged: all of it will be redelivered"
    first.close()
    crashing.close()

    bus = JetStreamBus(nats_url, stream, ack_wait=1.0, fetch_batch=100)
    bus.start()
    second = sequencer_with(bus, store)
    try:
        wait_for(lambda: bus.backlog(LOG) == 0)
    finally:
        second.close()
        bus.close()
    assert store.tree_size(LOG) == 300, "redelivery did not add leaves"
    assert sorted(i for i, _ in store.lookup_ids(LOG, [f"ev-{n}" for n in range(300)]).values()) == list(range(300))
