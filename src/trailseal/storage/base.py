"""The storage contract: records, the ``Store`` Protocol every backend implements.

A store keeps, per log (one per tenant):

* ``entries`` — one row per leaf: the canonical event bytes (the leaf input), the leaf hash, the
  idempotency key (``event_id``) with a hash of the producer's content, and a few columns
  extracted for the query layer;
* ``tiles`` — C2SP tlog-tiles (height 8) holding every stored node hash; the right edge tiles are
  partial and are rewritten as they grow;
* ``checkpoints`` — every signed checkpoint, keyed by tree size.

An append is one transaction: entries, tiles, then the checkpoint, whose signing callback runs
*inside* the transaction so it can recompute the root from what was just stored (ARCHITECTURE.md
§3, invariant 3) before anything commits. Dialect-specific SQL stays in each backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import orjson

#: Reads tile data ``(tile_level, tile_index) -> bytes | None`` as currently stored.
TileReader = Callable[[int, int], "bytes | None"]

#: A pruned entry's ``body`` starts with this: no RFC 8785 event (always ``{...}``) can.
TOMBSTONE_PREFIX = b"\x00trailseal-pruned\x00"


@dataclass(frozen=True, slots=True)
class PruneMark:
    """Why a leaf has no payload: pruned by retention ``policy`` at ``pruned_at``, archived in
    ``segment``. Its leaf hash and the tree stay; see docs/retention.md (invariant 2)."""

    policy: str
    pruned_at: str
    segment: str

    def tombstone(self) -> bytes:
        """The ``body`` stored in place of the event: prefix + JSON of this mark."""
        return TOMBSTONE_PREFIX + orjson.dumps(
            {"policy": self.policy, "pruned_at": self.pruned_at, "segment": self.segment},
            option=orjson.OPT_SORT_KEYS,
        )

    @classmethod
    def from_tombstone(cls, body: bytes) -> PruneMark | None:
        """The mark a tombstone body carries, or ``None`` for anything else."""
        if not body.startswith(TOMBSTONE_PREFIX):
            return None
        try:
            fields = orjson.loads(body[len(TOMBSTONE_PREFIX) :])
            return cls(str(fields["policy"]), str(fields["pruned_at"]), str(fields["segment"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class LeafEntry:
    """One sequenced event as stored. ``body`` is the RFC 8785 canonical leaf input.

    Once retention prunes the event, ``body`` is a tombstone instead (:attr:`pruned` reads it)
    and the query columns are cleared; ``leaf_hash``, ``event_id`` and the tiles never change.
    """

    log: str
    leaf_index: int
    event_id: str
    leaf_hash: bytes
    content_hash: bytes
    body: bytes
    time: str
    received_at: str
    action: str
    actor_id: str
    resource_type: str
    resource_id: str
    outcome: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    source_service: str | None = None

    @property
    def pruned(self) -> PruneMark | None:
        """Why the payload is gone (a tombstone body), or ``None`` for a stored event."""
        return PruneMark.from_tombstone(self.body) if self.body[:1] == b"\x00" else None


@dataclass(frozen=True, slots=True)
class TileWrite:
    """Tile data to store at ``(level, index)``; replaces any shorter (partial) version."""

    level: int
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A signed checkpoint: ``note`` is the full C2SP signed-note bytes."""

    log: str
    tree_size: int
    root_hash: bytes
    note: bytes
    created_at: str


@dataclass(frozen=True, slots=True)
class LogInfo:
    """A log and its checkpoint origin line (``<server name>/<log>``)."""

    name: str
    origin: str
    created_at: str


#: Called inside the append transaction with a reader of the tiles as just written; returns the
#: checkpoint to store. Raising aborts the transaction (nothing of the batch is stored).
SignCallback = Callable[[TileReader], CheckpointRecord]


@runtime_checkable
class Store(Protocol):
    """What the sequencer, the API and the verifier need from a backend."""

    def close(self) -> None:
        """Release connections."""

    def ensure_log(self, name: str, origin: str, created_at: str) -> LogInfo:
        """Create the log if absent; return it (the stored origin wins)."""

    def get_log(self, name: str) -> LogInfo | None:
        """The log, or ``None``."""

    def list_logs(self) -> list[LogInfo]:
        """Every log, by name."""

    def tree_size(self, log: str) -> int:
        """Number of stored leaves (0 for an unknown log)."""

    def append(
        self,
        log: str,
        entries: Sequence[LeafEntry],
        tiles: Sequence[TileWrite],
        sign: SignCallback,
    ) -> CheckpointRecord:
        """Store a batch atomically and durably; return the stored checkpoint.

        ``entries`` must continue the log exactly (first ``leaf_index`` == current tree size);
        otherwise raise :class:`~trailseal.core.errors.ConflictError` and store nothing.
        """

    def read_tile(self, log: str, level: int, index: int) -> bytes | None:
        """Tile data as stored (possibly partial), or ``None``."""

    def lookup_ids(self, log: str, event_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """For the ids already stored: ``event_id -> (leaf_index, content_hash)``."""

    def get_entry(self, log: str, leaf_index: int) -> LeafEntry | None:
        """The entry at ``leaf_index``, or ``None``."""

    def get_entry_by_id(self, log: str, event_id: str) -> LeafEntry | None:
        """The entry with that idempotency key, or ``None``."""

    def iter_entries(self, log: str, start: int = 0, end: int | None = None) -> Iterator[LeafEntry]:
        """Entries with ``start <= leaf_index < end`` in leaf order (gaps are simply absent)."""

    def latest_checkpoint(self, log: str) -> CheckpointRecord | None:
        """The checkpoint with the largest tree size, or ``None``."""

    def checkpoint_covering(self, log: str, leaf_index: int) -> CheckpointRecord | None:
        """The smallest checkpoint whose tree contains ``leaf_index``."""

    def get_checkpoint(self, log: str, tree_size: int) -> CheckpointRecord | None:
        """The checkpoint for exactly ``tree_size``, or ``None``."""

    def iter_checkpoints(self, log: str) -> Iterator[CheckpointRecord]:
        """Every checkpoint in increasing tree size."""
