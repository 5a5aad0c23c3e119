"""Conformance suite of the retention extension (``RetentionStore``): memory and SQLite."""

from __future__ import annotations

import pytest

from tests.storage.conformance import LOG, ORIGIN, append_leaves
from trailseal.core.errors import ConflictError
from trailseal.storage.base import PruneMark, Store
from trailseal.storage.retention import (
    HoldRecord,
    HoldsChanged,
    PolicyRecord,
    RunRecord,
    SegmentRecord,
    retention_store,
)


def segment(start: int, end: int) -> SegmentRecord:
    return SegmentRecord(LOG, f"{start}-{end}", start, end, end, b"s" * 32, b"d" * 32, "file:///a",
                         f"{LOG}/{start}-{end}.ndjson.zst", f"{LOG}/{start}-{end}.manifest",
                         100, 10, "2026-01-01T00:00:00Z")


def hold(hold_id: str) -> HoldRecord:
    return HoldRecord(hold_id, LOG, "CASE-1", "legal", {"kind": "tenant"}, "2026-01-01T00:00:00Z", "t")


class RetentionStoreConformance:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    @pytest.fixture
    def filled(self, store: Store) -> Store:
        store.ensure_log(LOG, ORIGIN, "t")
        append_leaves(store, LOG, 20)
        return store

    def test_extension_is_one_per_store(self, filled: Store) -> None:
        assert retention_store(filled) is retention_store(filled)

    def test_policies(self, filled: Store) -> None:
        ext = retention_store(filled)
        ext.put_policy(PolicyRecord("b", LOG, "auth.*", 90, "t1", "t1"))
        ext.put_policy(PolicyRecord("a", "*", "*", None, "t1", "t1"))
        ext.put_policy(PolicyRecord("b", LOG, "auth.*", 30, "t1", "t2"))
        assert [(p.name, p.keep_days) for p in ext.list_policies()] == [("a", None), ("b", 30)]
        assert ext.delete_policy("a") and not ext.delete_policy("a")

    def test_holds_bump_the_version(self, filled: Store) -> None:
        ext = retention_store(filled)
        assert ext.holds_version(LOG) == 0
        ext.put_hold(hold("h1"))
        ext.put_hold(hold("h2"))
        assert ext.holds_version(LOG) == 2
        assert [h.hold_id for h in ext.list_holds(LOG)] == ["h1", "h2"]
        assert ext.get_hold("h1") == hold("h1") and ext.get_hold("nope") is None
        assert ext.list_holds("other") == []

    def test_segments_are_contiguous(self, filled: Store) -> None:
        ext = retention_store(filled)
        ext.add_segment(segment(0, 8))
        ext.add_segment(segment(0, 8))  # idempotent
        with pytest.raises(ConflictError, match="want 8"):
            ext.add_segment(segment(10, 12))
        ext.add_segment(segment(8, 12))
        assert ext.archived_end(LOG) == 12
        assert [s.segment_id for s in ext.list_segments(LOG)] == ["0-8", "8-12"]

    def test_prune_needs_the_archive_and_keeps_leaf_hashes(self, filled: Store) -> None:
        ext = retention_store(filled)
        before = filled.get_entry(LOG, 3)
        assert before is not None
        mark = PruneMark("p", "2026-02-01T00:00:00.000000Z", "0-8")
        with pytest.raises(ConflictError, match="not archived"):
            ext.prune(LOG, [(3, mark)], "run-1", 0)
        ext.add_segment(segment(0, 8))
        with pytest.raises(ConflictError, match="not archived"):  # all or nothing
            ext.prune(LOG, [(3, mark), (9, mark)], "run-1", 0)
        assert filled.get_entry(LOG, 3) == before
        assert ext.prune(LOG, [(3, mark), (5, mark)], "run-1", 0) == 2
        assert ext.prune(LOG, [(3, mark)], "run-2", 0) == 0  # already pruned
        after = filled.get_entry(LOG, 3)
        assert after is not None and after.pruned == mark
        assert after.leaf_hash == before.leaf_hash and after.event_id == before.event_id
        assert after.action == "" and after.received_at == before.received_at
        assert filled.get_entry_by_id(LOG, before.event_id) == after
        assert filled.lookup_ids(LOG, [before.event_id]) == {before.event_id: (3, before.content_hash)}
        record = ext.get_prune_record(LOG, 3)
        assert record is not None and record.mark == mark and record.run_id == "run-1"
        assert [r.leaf_index for r in ext.prune_records(LOG)] == [3, 5]
        assert ext.count_pruned(LOG) == (2, 0)

    def test_prune_refuses_when_holds_changed(self, filled: Store) -> None:
        ext = retention_store(filled)
        ext.add_segment(segment(0, 8))
        version = ext.holds_version(LOG)
        ext.put_hold(hold("h1"))
        with pytest.raises(HoldsChanged):
            ext.prune(LOG, [(1, PruneMark("p", "t", "0-8"))], "run-1", version)
        entry = filled.get_entry(LOG, 1)
        assert entry is not None and entry.pruned is None

    def test_restore_only_over_tombstones_with_the_same_leaf_hash(self, filled: Store) -> None:
        ext = retention_store(filled)
        ext.add_segment(segment(0, 8))
        original = [filled.get_entry(LOG, i) for i in range(3)]
        ext.prune(LOG, [(i, PruneMark("p", "t", "0-8")) for i in range(2)], "run-1", 0)
        assert all(e is not None for e in original)
        count = ext.restore(LOG, [e for e in original if e is not None], "t2", "t3")
        assert count == 2  # leaf 2 was never pruned
        assert [filled.get_entry(LOG, i) for i in range(3)] == original
        record = ext.get_prune_record(LOG, 0)
        assert record is not None and record.state == "restored" and record.restored_until == "t3"
        assert ext.count_pruned(LOG) == (0, 2)
        assert [r.leaf_index for r in ext.restored_records(LOG)] == [0, 1]
        assert ext.prune(LOG, [(0, PruneMark("p", "t4", "0-8"))], "run-2", 0) == 1  # again
        assert ext.count_pruned(LOG) == (1, 1)
        assert [r.leaf_index for r in ext.restored_records(LOG)] == [1]

    def test_run_journal(self, filled: Store) -> None:
        ext = retention_store(filled)
        run = RunRecord("r1", LOG, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "t")
        ext.put_run(run)
        assert ext.open_runs(LOG) == [run]
        done = RunRecord("r1", LOG, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "t",
                         state="done", pruned=3, recorded=True, detail={"a": 1})
        ext.put_run(done)
        assert ext.open_runs() == [] and ext.list_runs(LOG) == [done]
