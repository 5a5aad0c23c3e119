"""The retention extension of a store: policies, legal holds, archive segments, prune records.

A backend that supports retention provides a :class:`RetentionStore` next to its core
:class:`~trailseal.storage.base.Store` (SQLite: :mod:`trailseal.storage.sqlite.retention`, memory:
:mod:`trailseal.storage.memory_retention`); :func:`retention_store` finds it for a store.

The state it keeps, per log:

* ``policies`` — how long events are kept, by tenant (log or ``*``) and action pattern;
* ``holds`` — legal holds; every write bumps the log's *holds version*, which a prune batch
  checks inside its transaction so a hold created while a run is planning is never missed;
* ``segments`` — sealed archive segments, contiguous from leaf 0: ``[0, archived_end)``;
* ``pruned`` — one record per pruned (or restored) leaf: policy, date, segment, run;
* ``runs`` — the retention run journal, so a killed run resumes with the same decisions.

Pruning replaces an entry's body with a :class:`~trailseal.storage.base.PruneMark` tombstone and
clears its query columns in the same transaction that writes the prune record; it refuses any
leaf not covered by a sealed segment. Leaf hashes, ids and tiles are never touched.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from trailseal.core.errors import ConflictError
from trailseal.storage.base import LeafEntry, PruneMark, Store


class HoldsChanged(ConflictError):
    """A hold of the log was written after the run planned; plan again (nothing was pruned)."""


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """Keep events of ``log`` (or ``*``) whose action matches ``action`` for ``keep_days``.

    ``keep_days`` ``None`` keeps them forever. ``action`` is a glob over the dotted action
    (``auth.*``); ``*`` is the log's default.
    """

    name: str
    log: str
    action: str
    keep_days: int | None
    created_at: str
    updated_at: str
    updated_by: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "log": self.log, "action": self.action,
                "keep_days": self.keep_days, "created_at": self.created_at,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


@dataclass(frozen=True, slots=True)
class HoldRecord:
    """A legal hold on events of ``log``; ``selector`` says which (see retention/holds.py)."""

    hold_id: str
    log: str
    case_ref: str
    owner: str
    selector: Mapping[str, Any]
    created_at: str
    created_by: str
    reason: str = ""
    expires_at: str | None = None
    released_at: str | None = None
    released_by: str | None = None
    release_reason: str | None = None
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"hold_id": self.hold_id, "log": self.log, "case": self.case_ref,
                "owner": self.owner, "reason": self.reason, "selector": dict(self.selector),
                "created_at": self.created_at, "created_by": self.created_by,
                "expires_at": self.expires_at, "released_at": self.released_at,
                "released_by": self.released_by, "release_reason": self.release_reason,
                "updated_at": self.updated_at or self.created_at}


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """A sealed archive segment: leaves ``[start, end)`` of ``log`` written to ``target``."""

    log: str
    segment_id: str
    start: int
    end: int
    checkpoint_size: int
    segment_hash: bytes
    data_sha256: bytes
    target: str
    data_key: str
    manifest_key: str
    raw_bytes: int
    stored_bytes: int
    created_at: str
    lock_until: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (hashes in hex)."""
        return {"log": self.log, "segment": self.segment_id, "range": [self.start, self.end],
                "checkpoint_size": self.checkpoint_size, "segment_hash": self.segment_hash.hex(),
                "data_sha256": self.data_sha256.hex(), "target": self.target,
                "data_key": self.data_key, "manifest_key": self.manifest_key,
                "raw_bytes": self.raw_bytes, "stored_bytes": self.stored_bytes,
                "created_at": self.created_at, "lock_until": self.lock_until}


@dataclass(frozen=True, slots=True)
class PruneRecord:
    """Leaf ``leaf_index`` was pruned (``state`` ``pruned``) or brought back (``restored``)."""

    log: str
    leaf_index: int
    policy: str
    pruned_at: str
    segment_id: str
    run_id: str
    state: str = "pruned"
    restored_at: str | None = None
    restored_until: str | None = None

    @property
    def mark(self) -> PruneMark:
        """The tombstone mark this record vouches for."""
        return PruneMark(self.policy, self.pruned_at, self.segment_id)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One retention run of one log, as journalled. ``horizon`` is fixed when it starts."""

    run_id: str
    log: str
    started_at: str
    horizon: str
    actor: str
    state: str = "running"  # running | done
    segments: int = 0
    pruned: int = 0
    held: int = 0
    finished_at: str | None = None
    recorded: bool = False
    resumed: int = 0
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"run_id": self.run_id, "log": self.log, "started_at": self.started_at,
                "horizon": self.horizon, "actor": self.actor, "state": self.state,
                "segments": self.segments, "pruned": self.pruned, "held": self.held,
                "finished_at": self.finished_at, "recorded": self.recorded,
                "resumed": self.resumed, "detail": dict(self.detail)}


@runtime_checkable
class RetentionStore(Protocol):
    """What retention needs from a backend beyond :class:`~trailseal.storage.base.Store`."""

    # -- policies ----------------------------------------------------------------------------
    def list_policies(self) -> list[PolicyRecord]:
        """Every policy, by name."""

    def put_policy(self, policy: PolicyRecord) -> None:
        """Create or replace the policy named ``policy.name``."""

    def delete_policy(self, name: str) -> bool:
        """Remove a policy; whether it existed."""

    # -- holds -------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None:
        """Create or replace a hold and bump its log's holds version."""

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold, or ``None``."""

    def list_holds(self, log: str | None = None) -> list[HoldRecord]:
        """Holds (of ``log`` or every log), oldest first."""

    def holds_version(self, log: str) -> int:
        """A counter bumped by every hold write on ``log``."""

    # -- segments ----------------------------------------------------------------------------
    def add_segment(self, segment: SegmentRecord) -> None:
        """Record a sealed segment; it must start at :meth:`archived_end` (else ConflictError)."""

    def list_segments(self, log: str) -> list[SegmentRecord]:
        """The log's segments in leaf order."""

    def archived_end(self, log: str) -> int:
        """Leaves ``[0, archived_end)`` are in sealed segments."""

    # -- pruning -----------------------------------------------------------------------------
    def prune(
        self, log: str, items: Sequence[tuple[int, PruneMark]], run_id: str, holds_version: int
    ) -> int:
        """Tombstone each leaf and record it, atomically; return how many were pruned.

        Nothing is pruned if the log's holds version is no longer ``holds_version``
        (:class:`HoldsChanged`) or a leaf is past :meth:`archived_end` (``ConflictError``).
        Leaves already pruned are skipped.
        """

    def restore(
        self, log: str, entries: Sequence[LeafEntry], restored_at: str, restored_until: str
    ) -> int:
        """Write archived bodies back (only over a tombstone with the same leaf hash) and mark
        their prune records restored; return how many were restored."""

    def prune_records(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[PruneRecord]:
        """Prune records with ``start <= leaf_index < end`` in leaf order."""

    def restored_records(self, log: str) -> list[PruneRecord]:
        """Records in state ``restored``, in leaf order."""

    def get_prune_record(self, log: str, leaf_index: int) -> PruneRecord | None:
        """The leaf's prune record, or ``None``."""

    def count_pruned(self, log: str) -> tuple[int, int]:
        """``(pruned, restored)`` leaf counts."""

    # -- run journal -------------------------------------------------------------------------
    def put_run(self, run: RunRecord) -> None:
        """Create or replace a run record."""

    def open_runs(self, log: str | None = None) -> list[RunRecord]:
        """Runs not finished, or finished but not yet recorded as audit events."""

    def list_runs(self, log: str, limit: int = 20) -> list[RunRecord]:
        """The log's latest runs, newest first."""


_EXTENSIONS: weakref.WeakKeyDictionary[Any, RetentionStore] = weakref.WeakKeyDictionary()


def retention_store(store: Store) -> RetentionStore:
    """The retention extension of ``store`` (one per store object; tables created on first use).

    Raises :class:`TypeError` for a backend that has none yet.
    """
    if isinstance(store, RetentionStore):
        return store
    found = _EXTENSIONS.get(store)
    if found is not None:
        return found
    from trailseal.storage.memory import MemoryStore
    from trailseal.storage.sqlite.store import SQLiteStore

    made: RetentionStore
    if isinstance(store, SQLiteStore):
        from trailseal.storage.sqlite.retention import SQLiteRetentionStore

        made = SQLiteRetentionStore(store)
    elif isinstance(store, MemoryStore):
        from trailseal.storage.memory_retention import MemoryRetentionStore

        made = MemoryRetentionStore(store)
    else:
        raise TypeError(f"retention: the {type(store).__name__} backend has no retention support")
    _EXTENSIONS[store] = made
    return made


def pruned_entry(entry: LeafEntry, mark: PruneMark) -> LeafEntry:
    """``entry`` as it reads once pruned: tombstone body, query columns cleared.

    Kept: the log, leaf index, event id, leaf and content hashes (idempotency and proofs need
    them) and the two timestamps (a pruned event still reads as "from March 2025").
    """
    return LeafEntry(
        log=entry.log, leaf_index=entry.leaf_index, event_id=entry.event_id,
        leaf_hash=entry.leaf_hash, content_hash=entry.content_hash, body=mark.tombstone(),
        time=entry.time, received_at=entry.received_at, action="", actor_id="",
        resource_type="", resource_id="",
    )


def prune_record_reader(store: Store, log: str) -> Callable[[int], PruneRecord | None]:
    """``get(leaf_index)`` for leaf indexes asked in increasing order (one streaming scan).

    A backend without retention support has no prune records: every tombstone is unvouched.
    """
    try:
        records = retention_store(store).prune_records(log)
    except TypeError:
        return lambda _leaf_index: None
    current: list[PruneRecord | None] = [next(records, None)]

    def get(leaf_index: int) -> PruneRecord | None:
        record = current[0]
        while record is not None and record.leaf_index < leaf_index:
            record = current[0] = next(records, None)
        return record if record is not None and record.leaf_index == leaf_index else None

    return get
