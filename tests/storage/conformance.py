"""The ``Store`` conformance suite: every backend's test module subclasses ``StoreConformance``.

A backend test provides a ``store`` fixture; everything else is here, so memory, SQLite and
PostgreSQL are held to exactly the same contract.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from trailseal.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.errors import ConflictError
from trailseal.core.hashing import leaf_hash
from trailseal.core.keys import Keyring
from trailseal.core.tiles import TILE_HEIGHT, TILE_WIDTH
from trailseal.storage.base import CheckpointRecord, LeafEntry, Store, TileReader, TileWrite

LOG = "conformance"
ORIGIN = "test.example/conformance"
KEYRING = Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z")


def entry(log: str, leaf_index: int, event_id: str | None = None, body: bytes | None = None) -> LeafEntry:
    """A synthetic entry; the body is unique per index unless given."""
    body = body or f'{{"id":"e{leaf_index}","n":{leaf_index}}}'.encode()
    return LeafEntry(
        log=log, leaf_index=leaf_index, event_id=event_id or f"e{leaf_index}",
        leaf_hash=leaf_hash(body), content_hash=hashlib.sha256(body).digest(), body=body,
        time="2026-01-01T00:00:00.000000Z", received_at="2026-01-01T00:00:01.000000Z",
        action="test.append", actor_id="tester", resource_type="thing", resource_id=str(leaf_index),
        outcome="success", request_id=f"req-{leaf_index % 3}", trace_id=None, source_service="svc",
    )


def append_leaves(store: Store, log: str, count: int, *, start: int | None = None) -> CheckpointRecord:
    """Append ``count`` entries the way the sequencer does (tiles + signed checkpoint)."""
    size = store.tree_size(log) if start is None else start
    tree = CompactRange.from_nodes(size, _reader_nodes(store, log)) if size else CompactRange()
    edges: dict[int, bytearray] = {}
    level = 0
    while (size >> (TILE_HEIGHT * level)) > 0:
        count_at = size >> (TILE_HEIGHT * level)
        width = count_at % TILE_WIDTH
        data = store.read_tile(log, level, count_at // TILE_WIDTH) if width else b""
        edges[level] = bytearray((data or b"")[: width * 32])
        level += 1
    tiles: dict[tuple[int, int], bytes] = {}

    def visit(lv: int, index: int, digest: bytes) -> None:
        if lv % TILE_HEIGHT == 0:
            tl = lv // TILE_HEIGHT
            edge = edges.setdefault(tl, bytearray())
            edge += digest
            tiles[(tl, index // TILE_WIDTH)] = bytes(edge)
            if len(edge) == TILE_WIDTH * 32:
                edges[tl] = bytearray()

    entries = [entry(log, size + i) for i in range(count)]
    for e in entries:
        tree.append(e.leaf_hash, visit)
    root = tree.root_hash()
    new_size = tree.end

    def sign(read: TileReader) -> CheckpointRecord:
        note = sign_checkpoint(Checkpoint(ORIGIN, new_size, root), KEYRING.signer)
        return CheckpointRecord(log, new_size, root, note, "2026-01-01T00:00:02Z")

    return store.append(log, entries, [TileWrite(lv, ix, d) for (lv, ix), d in tiles.items()], sign)


def _reader_nodes(store: Store, log: str):  # type: ignore[no-untyped-def]
    from trailseal.storage.proofs import node_reader

    return node_reader(store, log)


class StoreConformance:
    """Subclass and provide a ``store`` fixture yielding a fresh, empty store."""

    def test_logs(self, store: Store) -> None:
        assert store.get_log(LOG) is None
        info = store.ensure_log(LOG, ORIGIN, "2026-01-01T00:00:00Z")
        assert (info.name, info.origin) == (LOG, ORIGIN)
        again = store.ensure_log(LOG, "other/origin", "2027-01-01T00:00:00Z")
        assert again.origin == ORIGIN, "the stored origin wins"
        store.ensure_log("another", "x/another", "2026-01-01T00:00:00Z")
        assert [log.name for log in store.list_logs()] == ["another", LOG]

    def test_empty_log(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        assert store.tree_size(LOG) == 0
        assert store.latest_checkpoint(LOG) is None
        assert store.get_entry(LOG, 0) is None
        assert list(store.iter_entries(LOG)) == []
        assert store.lookup_ids(LOG, ["nope"]) == {}

    def test_append_and_read_back(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        record = append_leaves(store, LOG, 10)
        assert record.tree_size == 10 and store.tree_size(LOG) == 10
        got = store.get_entry(LOG, 3)
        assert got == entry(LOG, 3)
        assert store.get_entry_by_id(LOG, "e7") == entry(LOG, 7)
        assert [e.leaf_index for e in store.iter_entries(LOG, 2, 5)] == [2, 3, 4]
        assert store.latest_checkpoint(LOG) == record
        cp, _ = open_checkpoint(record.note, KEYRING.verifiers())
        assert cp.tree_size == 10 and cp.root_hash == record.root_hash

    def test_checkpoints_and_covering(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        first = append_leaves(store, LOG, 5)
        second = append_leaves(store, LOG, 7)
        assert [c.tree_size for c in store.iter_checkpoints(LOG)] == [5, 12]
        assert store.checkpoint_covering(LOG, 0) == first
        assert store.checkpoint_covering(LOG, 4) == first
        assert store.checkpoint_covering(LOG, 5) == second
        assert store.checkpoint_covering(LOG, 12) is None
        assert store.get_checkpoint(LOG, 5) == first
        assert store.get_checkpoint(LOG, 6) is None

    def test_lookup_ids(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        append_leaves(store, LOG, 1200)
        ids = [f"e{i}" for i in range(0, 1200, 7)] + ["missing"]
        found = store.lookup_ids(LOG, ids)
        assert set(found) == set(ids) - {"missing"}
        assert found["e14"] == (14, entry(LOG, 14).content_hash)

    def test_append_must_continue_the_log(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        append_leaves(store, LOG, 3)

        def sign(read: TileReader) -> CheckpointRecord:
            raise AssertionError("must not be reached")

        with pytest.raises(ConflictError):
            store.append(LOG, [entry(LOG, 5)], [], sign)
        with pytest.raises(ConflictError):
            store.append(LOG, [entry(LOG, 3, event_id="e1")], [], sign)
        assert store.tree_size(LOG) == 3

    def test_failed_sign_stores_nothing(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        append_leaves(store, LOG, 3)
        before = store.read_tile(LOG, 0, 0)

        def sign(read: TileReader) -> CheckpointRecord:
            assert read(0, 0) == b"x" * 32 * 4, "sign sees the tiles written in this transaction"
            raise RuntimeError("refuse")

        with pytest.raises(RuntimeError):
            store.append(LOG, [entry(LOG, 3)], [TileWrite(0, 0, b"x" * 32 * 4)], sign)
        assert store.tree_size(LOG) == 3
        assert store.read_tile(LOG, 0, 0) == before
        assert store.get_entry(LOG, 3) is None
        assert store.latest_checkpoint(LOG).tree_size == 3  # type: ignore[union-attr]

    def test_tiles_grow_across_levels(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        for chunk in (100, 156, 300, 65536 - 556 + 5):
            append_leaves(store, LOG, chunk)
        size = store.tree_size(LOG)
        assert size == 65536 + 5
        level0 = store.read_tile(LOG, 0, 0)
        assert level0 is not None and len(level0) == TILE_WIDTH * 32
        assert level0[:32] == entry(LOG, 0).leaf_hash
        level1 = store.read_tile(LOG, 1, 0)
        assert level1 is not None and len(level1) == TILE_WIDTH * 32
        level2 = store.read_tile(LOG, 2, 0)
        assert level2 is not None and len(level2) == 32
        from trailseal.core.merkle import root_hash
        from trailseal.storage.proofs import node_reader

        leaves = [entry(LOG, i).leaf_hash for i in range(size)]
        assert CompactRange.from_nodes(size, node_reader(store, LOG)).root_hash() == root_hash(leaves)
        assert store.latest_checkpoint(LOG).root_hash == root_hash(leaves)  # type: ignore[union-attr]

    def test_logs_are_separate(self, store: Store) -> None:
        store.ensure_log(LOG, ORIGIN, "t")
        store.ensure_log("other", "x/other", "t")
        append_leaves(store, LOG, 4)
        append_leaves(store, "other", 2)
        assert store.tree_size(LOG) == 4 and store.tree_size("other") == 2
        assert store.get_entry_by_id("other", "e3") is None
        assert store.lookup_ids("other", ["e3"]) == {}


def sizes(records: Sequence[CheckpointRecord]) -> list[int]:
    """Tree sizes of checkpoint records."""
    return [r.tree_size for r in records]
