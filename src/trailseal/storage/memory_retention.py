"""In-memory :class:`~trailseal.storage.retention.RetentionStore` over a ``MemoryStore``."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

from trailseal.core.errors import ConflictError
from trailseal.storage.base import LeafEntry, PruneMark
from trailseal.storage.memory import MemoryStore
from trailseal.storage.retention import (
    HoldRecord,
    HoldsChanged,
    PolicyRecord,
    PruneRecord,
    RunRecord,
    SegmentRecord,
    pruned_entry,
)


class MemoryRetentionStore:
    """Dicts beside the store; pruning rewrites the store's entry list under its lock."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._policies: dict[str, PolicyRecord] = {}
        self._holds: dict[str, HoldRecord] = {}
        self._holds_version: dict[str, int] = {}
        self._segments: dict[str, list[SegmentRecord]] = {}
        self._pruned: dict[str, dict[int, PruneRecord]] = {}
        self._runs: dict[str, RunRecord] = {}

    # -- policies ----------------------------------------------------------------------------
    def list_policies(self) -> list[PolicyRecord]:
        """Every policy, by name."""
        return [self._policies[name] for name in sorted(self._policies)]

    def put_policy(self, policy: PolicyRecord) -> None:
        """Create or replace."""
        self._policies[policy.name] = policy

    def delete_policy(self, name: str) -> bool:
        """Remove; whether it existed."""
        return self._policies.pop(name, None) is not None

    # -- holds -------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None:
        """Create or replace; bump the log's holds version."""
        with self._lock:
            self._holds[hold.hold_id] = hold
            self._holds_version[hold.log] = self._holds_version.get(hold.log, 0) + 1

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold, or ``None``."""
        return self._holds.get(hold_id)

    def list_holds(self, log: str | None = None) -> list[HoldRecord]:
        """Holds, oldest first."""
        found = [h for h in self._holds.values() if log is None or h.log == log]
        return sorted(found, key=lambda h: (h.created_at, h.hold_id))

    def holds_version(self, log: str) -> int:
        """The log's hold write counter."""
        return self._holds_version.get(log, 0)

    # -- segments ----------------------------------------------------------------------------
    def add_segment(self, segment: SegmentRecord) -> None:
        """Append a sealed segment; it must continue the archived range."""
        with self._lock:
            segments = self._segments.setdefault(segment.log, [])
            if any(s.segment_id == segment.segment_id for s in segments):
                return
            end = segments[-1].end if segments else 0
            if segment.start != end:
                raise ConflictError(
                    f"archive: segment {segment.segment_id} starts at {segment.start}, "
                    f"want {end} (the archived end of log {segment.log})"
                )
            segments.append(segment)

    def list_segments(self, log: str) -> list[SegmentRecord]:
        """Segments in leaf order."""
        return list(self._segments.get(log, []))

    def archived_end(self, log: str) -> int:
        """End of the archived range."""
        segments = self._segments.get(log)
        return segments[-1].end if segments else 0

    # -- pruning -----------------------------------------------------------------------------
    def prune(
        self, log: str, items: Sequence[tuple[int, PruneMark]], run_id: str, holds_version: int
    ) -> int:
        """Tombstone and record each leaf, all or nothing."""
        with self._lock, self.store._lock:
            if self.holds_version(log) != holds_version:
                raise HoldsChanged(f"retention: holds of log {log} changed during the run")
            end = self.archived_end(log)
            entries = self.store._logs[log].entries
            records = self._pruned.setdefault(log, {})
            todo: list[tuple[int, PruneMark]] = []
            for leaf_index, mark in items:
                if leaf_index >= end:
                    raise ConflictError(
                        f"retention: leaf {leaf_index} of log {log} is not archived "
                        f"(archived end {end}); refusing to prune"
                    )
                known = records.get(leaf_index)
                if known is None or known.state != "pruned":
                    todo.append((leaf_index, mark))
            for leaf_index, mark in todo:
                entries[leaf_index] = pruned_entry(entries[leaf_index], mark)
                records[leaf_index] = PruneRecord(
                    log, leaf_index, mark.policy, mark.pruned_at, mark.segment, run_id
                )
            return len(todo)

    def restore(
        self, log: str, entries: Sequence[LeafEntry], restored_at: str, restored_until: str
    ) -> int:
        """Write bodies back over tombstones with the same leaf hash."""
        with self._lock, self.store._lock:
            stored = self.store._logs[log].entries
            records = self._pruned.setdefault(log, {})
            count = 0
            for entry in entries:
                current = stored[entry.leaf_index]
                record = records.get(entry.leaf_index)
                if current.pruned is None or current.leaf_hash != entry.leaf_hash or record is None:
                    continue
                stored[entry.leaf_index] = entry
                records[entry.leaf_index] = replace(
                    record, state="restored", restored_at=restored_at,
                    restored_until=restored_until,
                )
                count += 1
            return count

    def prune_records(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[PruneRecord]:
        """Records in ``[start, end)``."""
        records = self._pruned.get(log, {})
        stop = end if end is not None else 2**63
        return iter([records[i] for i in sorted(records) if start <= i < stop])

    def restored_records(self, log: str) -> list[PruneRecord]:
        """Restored records in leaf order."""
        records = self._pruned.get(log, {})
        return [records[i] for i in sorted(records) if records[i].state == "restored"]

    def get_prune_record(self, log: str, leaf_index: int) -> PruneRecord | None:
        """The leaf's record."""
        return self._pruned.get(log, {}).get(leaf_index)

    def count_pruned(self, log: str) -> tuple[int, int]:
        """``(pruned, restored)``."""
        records = self._pruned.get(log, {}).values()
        pruned = sum(1 for r in records if r.state == "pruned")
        return pruned, len(records) - pruned

    # -- runs --------------------------------------------------------------------------------
    def put_run(self, run: RunRecord) -> None:
        """Create or replace."""
        self._runs[run.run_id] = run

    def open_runs(self, log: str | None = None) -> list[RunRecord]:
        """Unfinished or unrecorded runs, oldest first."""
        found = [r for r in self._runs.values()
                 if (log is None or r.log == log) and (r.state != "done" or not r.recorded)]
        return sorted(found, key=lambda r: r.started_at)

    def list_runs(self, log: str, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        found = sorted((r for r in self._runs.values() if r.log == log),
                       key=lambda r: r.started_at, reverse=True)
        return found[:limit]
