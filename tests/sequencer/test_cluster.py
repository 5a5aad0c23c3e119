"""``ClusterSequencer`` on real PostgreSQL, in process: election, outbox forwarding, fencing,
takeover that continues the same tree."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from tests.factories import make_event
from tests.storage.pg import new_schema, schema_url
from trailseal.core.errors import ConflictError
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.cluster import ClusterSequencer, LocalLeases
from trailseal.sequencer.runner import SequencerUnavailable
from trailseal.sequencer.types import Prepared
from trailseal.storage.memory import MemoryStore
from trailseal.storage.postgres import PostgresStore
from trailseal.storage.postgres.coordination import PgCoordinator
from trailseal.verify.receipt import verify_receipt

LOG = "default"
ORIGIN = "test.example/default"
KEYRING = Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z")


def clock() -> str:
    return "2026-11-28T10:15:31.000000Z"


def events(count: int, **overrides: object) -> list[Prepared]:
    return [prepare(make_event(**overrides), log=LOG, received_at=clock()) for _ in range(count)]


Node = Callable[..., ClusterSequencer]


@pytest.fixture
def make_node(pg_dsn: str) -> Iterator[Node]:
    """Build cluster nodes on one fresh schema; everything is closed and dropped afterwards."""
    url = schema_url(pg_dsn, new_schema(), pool_max="4")
    with ExitStack() as stack:
        cleanup = PostgresStore(url, migrate=False)
        stack.callback(cleanup.close)
        stack.callback(cleanup.drop_schema)  # runs last: callbacks unwind in reverse

        def build(role: str = "all") -> ClusterSequencer:
            store = PostgresStore(url)
            stack.callback(store.close)
            coordinator = PgCoordinator(store, f"node-{time.monotonic_ns()}")
            seq = ClusterSequencer(
                store, lambda log: KEYRING, lambda log: ORIGIN, clock,
                leases=coordinator, outbox=coordinator, role=role, interval=0.1, wait_timeout=10,
            )
            store.ensure_log(LOG, ORIGIN, clock())
            seq.start()
            stack.callback(seq.close)
            return seq

        yield build


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_one_leader_and_forwarding_through_the_outbox(make_node: Node) -> None:
    leader = make_node()
    follower = make_node()
    api_only = make_node(role="api")
    assert leader.leading == [LOG] and follower.leading == [] and api_only.leading == []
    direct = leader.submit_sync(LOG, events(3))
    forwarded = follower.submit_sync(LOG, events(4), want_proofs=True)
    via_api = api_only.submit_sync(LOG, events(2))
    assert [r.leaf_index for r in direct + forwarded + via_api] == list(range(9))
    for receipt in forwarded:
        assert receipt.inclusion_proof is not None
        verify_receipt(receipt, KEYRING.verifiers())
    dup = make_event(id="dup-1")
    again = follower.submit_sync(LOG, [prepare(dup, log=LOG, received_at=clock())])
    retry = api_only.submit_sync(LOG, [prepare(dup, log=LOG, received_at="2026-11-28T11:00:00.000000Z")])
    assert retry[0].duplicate and retry[0].leaf_index == again[0].leaf_index
    with pytest.raises(ConflictError) as conflict:
        follower.submit_sync(LOG, [prepare({**dup, "action": "other.thing"}, log=LOG, received_at=clock())])
    assert conflict.value.event_id == "dup-1"


def test_takeover_continues_the_same_tree(make_node: Node) -> None:
    first = make_node()
    second = make_node()
    before = first.submit_sync(LOG, events(5))
    first.close()  # graceful: drains, then releases the lease
    wait_for(lambda: second.leading == [LOG])
    after = second.submit_sync(LOG, events(5))
    assert [r.leaf_index for r in after] == list(range(5, 10))
    assert after[-1].tree_size == 10 and before[-1].tree_size == 5
    stored = second.store.lookup_ids(LOG, [r.id for r in before + after])
    assert sorted(index for index, _ in stored.values()) == list(range(10))


def test_a_deposed_sequencer_cannot_commit(make_node: Node) -> None:
    """Its lease session is killed behind its back (it is paused and does not notice): its next
    commit is fenced by the epoch, so the log cannot fork."""
    old = make_node()
    new = make_node()
    old.submit_sync(LOG, events(3))
    old._stop.set()  # pause the old node's coordinator: it keeps believing it leads
    assert old._thread is not None
    old._thread.join()
    store = old.store
    assert isinstance(store, PostgresStore)
    with store.connection() as conn:  # a network cut or the DBA ends the lease session
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'trailseal-lease ' || %s",
            (old.leases.node,),  # type: ignore[attr-defined]
        )
    wait_for(lambda: new.leading == [LOG])
    assert old.leading == [LOG]
    with pytest.raises(SequencerUnavailable, match="sequencer changed"):
        old.submit_sync(LOG, events(2))
    assert [r.leaf_index for r in new.submit_sync(LOG, events(2))] == [3, 4]
    old._stop.clear()
    old.tick()  # wakes up: notices the lost lease, does not win it back
    assert old.leading == []
    assert [r.leaf_index for r in old.submit_sync(LOG, events(1))] == [5]  # now forwarded


def test_local_leases_sequence_everything_in_process() -> None:
    store = MemoryStore()
    seq = ClusterSequencer(store, lambda log: KEYRING, lambda log: ORIGIN, clock, leases=LocalLeases())
    store.ensure_log(LOG, ORIGIN, clock())
    seq.start()
    try:
        assert seq.leading == [LOG]
        assert [r.leaf_index for r in seq.submit_sync(LOG, events(3))] == [0, 1, 2]
        with pytest.raises(SequencerUnavailable):
            seq.submit_sync("elsewhere", events(1))
    finally:
        seq.close()


def test_close_drains_queued_batches(make_node: Node) -> None:
    node = make_node()
    futures = [node.submit_future(LOG, events(20)) for _ in range(15)]
    node.close()  # SIGTERM path: stop electing, commit what is queued, release the lease
    assert [len(f.result(timeout=0)) for f in futures] == [20] * 15
    indexes = sorted(r.leaf_index for f in futures for r in f.result())
    assert indexes == list(range(300))
