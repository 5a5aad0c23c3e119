"""In-memory ``Store``: the reference backend for tests and embedding. Not durable."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from trailseal.core.errors import ConflictError
from trailseal.storage.base import (
    CheckpointRecord,
    LeafEntry,
    LogInfo,
    SignCallback,
    TileWrite,
)


@dataclass
class _Log:
    info: LogInfo
    entries: list[LeafEntry] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    tiles: dict[tuple[int, int], bytes] = field(default_factory=dict)
    checkpoints: dict[int, CheckpointRecord] = field(default_factory=dict)


class MemoryStore:
    """Keeps everything in dicts; appends are atomic under a lock."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._lock = threading.RLock()

    def close(self) -> None:
        """Nothing to release."""

    def ensure_log(self, name: str, origin: str, created_at: str) -> LogInfo:
        """Create the log if absent; return it."""
        with self._lock:
            if name not in self._logs:
                self._logs[name] = _Log(LogInfo(name, origin, created_at))
            return self._logs[name].info

    def get_log(self, name: str) -> LogInfo | None:
        """The log, or ``None``."""
        log = self._logs.get(name)
        return log.info if log else None

    def list_logs(self) -> list[LogInfo]:
        """Every log, by name."""
        return [self._logs[n].info for n in sorted(self._logs)]

    def tree_size(self, log: str) -> int:
        """Number of stored leaves."""
        state = self._logs.get(log)
        return len(state.entries) if state else 0

    def append(
        self,
        log: str,
        entries: Sequence[LeafEntry],
        tiles: Sequence[TileWrite],
        sign: SignCallback,
    ) -> CheckpointRecord:
        """Apply a batch atomically: staged copies are swapped in only after ``sign`` succeeds."""
        with self._lock:
            state = self._logs[log]
            size = len(state.entries)
            for offset, entry in enumerate(entries):
                if entry.leaf_index != size + offset:
                    raise ConflictError(
                        f"append: leaf index {entry.leaf_index} does not continue tree size "
                        f"{size + offset}"
                    )
                if entry.event_id in state.ids:
                    raise ConflictError(f"append: duplicate event id {entry.event_id!r}")
            staged = dict(state.tiles)
            for tile in tiles:
                staged[(tile.level, tile.index)] = tile.data
            record = sign(lambda level, index: staged.get((level, index)))
            state.tiles = staged
            state.entries.extend(entries)
            for entry in entries:
                state.ids[entry.event_id] = entry.leaf_index
            state.checkpoints[record.tree_size] = record
            return record

    def read_tile(self, log: str, level: int, index: int) -> bytes | None:
        """Tile data, or ``None``."""
        state = self._logs.get(log)
        return state.tiles.get((level, index)) if state else None

    def lookup_ids(self, log: str, event_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Stored ids among ``event_ids``."""
        state = self._logs.get(log)
        if state is None:
            return {}
        found: dict[str, tuple[int, bytes]] = {}
        for event_id in event_ids:
            index = state.ids.get(event_id)
            if index is not None:
                found[event_id] = (index, state.entries[index].content_hash)
        return found

    def get_entry(self, log: str, leaf_index: int) -> LeafEntry | None:
        """Entry at ``leaf_index``."""
        state = self._logs.get(log)
        if state is None or not 0 <= leaf_index < len(state.entries):
            return None
        return state.entries[leaf_index]

    def get_entry_by_id(self, log: str, event_id: str) -> LeafEntry | None:
        """Entry by idempotency key."""
        state = self._logs.get(log)
        if state is None or event_id not in state.ids:
            return None
        return state.entries[state.ids[event_id]]

    def iter_entries(self, log: str, start: int = 0, end: int | None = None) -> Iterator[LeafEntry]:
        """Entries in ``[start, end)``."""
        state = self._logs.get(log)
        if state is None:
            return iter(())
        return iter(state.entries[start:end])

    def latest_checkpoint(self, log: str) -> CheckpointRecord | None:
        """Largest checkpoint."""
        state = self._logs.get(log)
        if state is None or not state.checkpoints:
            return None
        return state.checkpoints[max(state.checkpoints)]

    def checkpoint_covering(self, log: str, leaf_index: int) -> CheckpointRecord | None:
        """Smallest checkpoint with ``tree_size > leaf_index``."""
        state = self._logs.get(log)
        if state is None:
            return None
        sizes = [s for s in state.checkpoints if s > leaf_index]
        return state.checkpoints[min(sizes)] if sizes else None

    def get_checkpoint(self, log: str, tree_size: int) -> CheckpointRecord | None:
        """Checkpoint at exactly ``tree_size``."""
        state = self._logs.get(log)
        return state.checkpoints.get(tree_size) if state else None

    def iter_checkpoints(self, log: str) -> Iterator[CheckpointRecord]:
        """Checkpoints by increasing size."""
        state = self._logs.get(log)
        if state is None:
            return iter(())
        return iter([state.checkpoints[s] for s in sorted(state.checkpoints)])
