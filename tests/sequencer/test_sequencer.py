"""The sequencer alone: group commit, receipts, idempotency, backpressure, restore, root check."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.factories import make_event
from trailseal.core.errors import ConflictError, OverloadedError, VerificationError
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.log import LogSequencer, Request
from trailseal.sequencer.runner import Sequencer, SequencerConfig
from trailseal.storage.base import Store
from trailseal.storage.memory import MemoryStore
from trailseal.storage.proofs import node_reader
from trailseal.storage.sqlite import SQLiteStore
from trailseal.verify.receipt import verify_receipt

LOG = "default"
ORIGIN = "test.example/default"
KEYRING = Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z")


def clock() -> str:
    return "2026-11-28T10:15:31.000000Z"


def prep(**overrides: object):  # type: ignore[no-untyped-def]
    return prepare(make_event(**overrides), log=LOG, received_at=clock())


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    made.ensure_log(LOG, ORIGIN, clock())
    return made


def new_log_sequencer(store: Store) -> LogSequencer:
    return LogSequencer(store, LOG, ORIGIN, KEYRING, clock)


def test_batches_get_consecutive_indexes_and_verifiable_receipts(store: Store) -> None:
    seq = new_log_sequencer(store)
    requests = [Request([prep() for _ in range(n)], want_proofs=True) for n in (1, 5, 300)]
    seq.commit(requests)
    receipts = [r for req in requests for r in req.receipts or []]
    assert [r.leaf_index for r in receipts] == list(range(306))
    assert {r.tree_size for r in receipts} == {306}
    for receipt in receipts:
        verify_receipt(receipt, KEYRING.verifiers())
    assert store.tree_size(LOG) == 306


def test_retry_returns_the_original_receipt_and_conflict_is_refused(store: Store) -> None:
    seq = new_log_sequencer(store)
    raw = make_event(id="evt-1")
    seq.commit([Request([prepare(raw, log=LOG, received_at=clock())])])
    assert seq.tree_size == 1
    retry = prepare(raw, log=LOG, received_at="2026-11-28T11:00:00.000000Z")
    again = Request([retry], want_proofs=True)
    clash = Request([prep(id="evt-1")])
    fresh = Request([prep()])
    seq.commit([again, clash, fresh])
    assert again.receipts is not None and again.receipts[0].duplicate
    assert again.receipts[0].leaf_index == 0
    verify_receipt(again.receipts[0], KEYRING.verifiers())
    assert isinstance(clash.error, ConflictError) and clash.receipts is None
    assert fresh.receipts is not None and fresh.receipts[0].leaf_index == 1
    assert seq.tree_size == 2


def test_same_id_twice_in_one_batch(store: Store) -> None:
    seq = new_log_sequencer(store)
    a = prep(id="twice")
    req = Request([a, a])
    seq.commit([req])
    assert req.receipts is not None
    assert [r.leaf_index for r in req.receipts] == [0, 0]
    assert seq.tree_size == 1


def test_restore_continues_the_same_tree(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.ensure_log(LOG, ORIGIN, clock())
    seq = new_log_sequencer(store)
    for n in (255, 1, 1, 300):  # crosses tile boundaries
        seq.commit([Request([prep() for _ in range(n)])])
    store.close()
    store = SQLiteStore(path)
    seq = new_log_sequencer(store)
    assert seq.tree_size == 557
    req = Request([prep() for _ in range(10)], want_proofs=True)
    seq.commit([req])
    from trailseal.core.compact import CompactRange
    from trailseal.core.merkle import root_hash

    leaves = [e.leaf_hash for e in store.iter_entries(LOG)]
    assert root_hash(leaves) == store.latest_checkpoint(LOG).root_hash  # type: ignore[union-attr]
    assert CompactRange.from_nodes(567, node_reader(store, LOG)).root_hash() == root_hash(leaves)
    for receipt in req.receipts or []:
        verify_receipt(receipt, KEYRING.verifiers())


def test_sequencer_refuses_to_sign_when_stored_tiles_disagree(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.ensure_log(LOG, ORIGIN, clock())
    seq = new_log_sequencer(store)
    seq.commit([Request([prep() for _ in range(3)])])
    real_append = store.append

    def corrupting_append(log, entries, tiles, sign):  # type: ignore[no-untyped-def]
        from trailseal.storage.base import TileWrite

        bad = [TileWrite(t.level, t.index, b"\x00" * 32 + t.data[32:]) for t in tiles]
        return real_append(log, entries, bad, sign)

    store.append = corrupting_append  # type: ignore[method-assign]
    with pytest.raises(VerificationError, match="refusing to sign"):
        seq.commit([Request([prep()])])
    assert store.tree_size(LOG) == 3, "nothing of the refused batch is stored"
    assert store.latest_checkpoint(LOG).tree_size == 3  # type: ignore[union-attr]


def test_restore_refuses_a_store_whose_tail_was_cut(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.ensure_log(LOG, ORIGIN, clock())
    new_log_sequencer(store).commit([Request([prep() for _ in range(5)])])
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM entries WHERE leaf_index = 4")
    conn.commit()
    conn.close()
    with pytest.raises(VerificationError, match="does not match latest checkpoint"):
        new_log_sequencer(SQLiteStore(path))


def test_runner_group_commits_concurrent_requests(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    seq = Sequencer(store, lambda log: KEYRING, lambda log: ORIGIN, clock,
                    SequencerConfig(batch_max_events=500, batch_max_wait=0.02))
    results: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(10):
            receipts = seq.submit_sync(LOG, [prep() for _ in range(10)])
            with lock:
                results.extend(r.leaf_index for r in receipts)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worker = seq.worker(LOG)
    seq.close()
    assert sorted(results) == list(range(800))
    assert worker.batches < 80, "concurrent requests share batches (group commit)"
    assert store.latest_checkpoint(LOG).tree_size == 800  # type: ignore[union-attr]


def test_runner_backpressure_rejects_beyond_the_bound(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    seq = Sequencer(store, lambda log: KEYRING, lambda log: ORIGIN, clock,
                    SequencerConfig(queue_max_events=50, retry_after=2.0))
    worker = seq.worker(LOG)
    gate = threading.Event()
    real_commit = worker.seq.commit

    def slow_commit(requests):  # type: ignore[no-untyped-def]
        gate.wait(10)
        real_commit(requests)

    worker.seq.commit = slow_commit  # type: ignore[method-assign]
    futures = [seq.submit_future(LOG, [prep() for _ in range(10)]) for _ in range(5)]
    with pytest.raises(OverloadedError) as info:
        seq.submit_future(LOG, [prep()])
    assert info.value.retry_after == 2.0
    assert seq.queued_events == 50
    gate.set()
    assert sum(len(f.result(10)) for f in futures) == 50
    seq.close()
    assert seq.queued_events == 0
