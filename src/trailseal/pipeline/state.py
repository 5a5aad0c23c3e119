"""The pipeline's per-tenant state behind small Protocols, with in-memory implementations.

=================  ====================================================================
protocol           holds (per log)
=================  ====================================================================
SchemaStore        registered schema versions (:mod:`trailseal.schema.registry`)
QuarantineStore    quarantined events: violations, redacted view, sealed original
PolicyStore        the tenant policy: unknown actions, redaction, sampling
ProducerStore      producer sequence counters (:mod:`trailseal.pipeline.producers`)
CountStore         sampling counts not yet written to the trail
=================  ====================================================================

SQLite implementations: :mod:`trailseal.pipeline.state_sqlite`. Subject keys are kept apart from
all of these (:mod:`trailseal.pipeline.subjects`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from trailseal.core.errors import FormatError
from trailseal.pipeline.producers import MemoryProducerStore, ProducerStore
from trailseal.pipeline.redact import RedactionPolicy
from trailseal.pipeline.sampling import Count, SamplingPolicy
from trailseal.schema.registry import MemorySchemaStore, SchemaStore
from trailseal.schema.validator import Violation

__all__ = ["UNKNOWN_ACTIONS", "CountStore", "MemoryCountStore", "MemoryPolicyStore", "MemoryQuarantineStore"]
__all__ += ["PipelineState", "PolicyStore", "QuarantineRecord", "QuarantineStore", "TenantPolicy"]

UNKNOWN_ACTIONS = ("accept", "quarantine")


@dataclass(frozen=True)
class TenantPolicy:
    """What the pipeline does for one tenant."""

    unknown_action: str = "accept"
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "unknown_action": self.unknown_action,
            "redaction": self.redaction.to_json(),
            "sampling": self.sampling.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TenantPolicy:
        """Parse and check; omitted parts keep their defaults."""
        if not isinstance(data, Mapping):
            raise FormatError("policy: want an object with unknown_action, redaction, sampling")
        unknown = set(data) - {"unknown_action", "redaction", "sampling"}
        if unknown:
            raise FormatError(f"policy: unknown member {sorted(unknown)[0]!r}")
        action = data.get("unknown_action", "accept")
        if action not in UNKNOWN_ACTIONS:
            raise FormatError(f"policy: unknown_action must be accept or quarantine, got {action!r}")
        return cls(
            action,
            RedactionPolicy.from_json(data.get("redaction") or {}),
            SamplingPolicy.from_json(data.get("sampling") or {}),
        )


@dataclass(frozen=True)
class QuarantineRecord:
    """One quarantined event. ``sealed`` is the producer's original, encrypted; None once redriven."""

    quarantine_id: str
    log: str
    event_id: str
    action: str
    received_at: str
    violations: tuple[Violation, ...]
    view: Mapping[str, Any]
    sealed: bytes | None
    content_hash: bytes
    schema_key: str | None = None
    schema_version: int | None = None
    status: str = "quarantined"
    redriven_at: str | None = None
    leaf_index: int | None = None

    def to_json(self, *, detail: bool = True) -> dict[str, Any]:
        """JSON form: the redacted event and violations (never the sealed original)."""
        out: dict[str, Any] = {
            "quarantine_id": self.quarantine_id,
            "log": self.log,
            "id": self.event_id,
            "action": self.action,
            "received_at": self.received_at,
            "status": self.status,
            "schema": {"key": self.schema_key, "version": self.schema_version} if self.schema_key else None,
            "violations": [v.to_json() for v in self.violations],
        }
        if self.redriven_at:
            out["redriven_at"] = self.redriven_at
            out["leaf_index"] = self.leaf_index
        if detail:
            out["event"] = self.view
        return out


class QuarantineStore(Protocol):
    """Where quarantined events wait."""

    def put(self, record: QuarantineRecord) -> QuarantineRecord:
        """Store ``record``; if the same event (id and content) already waits, return that one."""

    def get(self, log: str, quarantine_id: str) -> QuarantineRecord | None:
        """One record."""

    def list_quarantine(
        self, log: str, *, status: str | None = "quarantined", action: str | None = None,
        limit: int = 100, after: str | None = None,
    ) -> list[QuarantineRecord]:
        """Records by id (ids sort by time), after the id ``after``."""

    def update(self, record: QuarantineRecord) -> None:
        """Replace the record with the same id."""


class PolicyStore(Protocol):
    """Tenant policies as JSON."""

    def get_policy(self, log: str) -> Mapping[str, Any] | None:
        """The stored policy JSON, or None for the defaults."""

    def set_policy(self, log: str, policy: Mapping[str, Any], at: str) -> None:
        """Replace the policy."""


class CountStore(Protocol):
    """Sampling counts not yet written to the trail."""

    def add_counts(self, log: str, counts: Sequence[Count]) -> None:
        """Add to the counters of ``(interval_start, action, pattern)``."""

    def pending_counts(self) -> list[tuple[str, Count]]:
        """Every ``(log, count)`` not yet cleared."""

    def clear_counts(self, log: str, interval_start: str) -> None:
        """Forget the counters of one interval (after its summary was sequenced)."""


class MemoryQuarantineStore:
    """In-memory :class:`QuarantineStore`."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], QuarantineRecord] = {}
        self._lock = threading.Lock()

    def put(self, record: QuarantineRecord) -> QuarantineRecord:
        """Store unless the same event already waits."""
        with self._lock:
            for existing in self._rows.values():
                if (existing.log, existing.event_id, existing.content_hash, existing.status) == (
                    record.log, record.event_id, record.content_hash, "quarantined"
                ):
                    return existing
            self._rows[(record.log, record.quarantine_id)] = record
            return record

    def get(self, log: str, quarantine_id: str) -> QuarantineRecord | None:
        """One record."""
        return self._rows.get((log, quarantine_id))

    def list_quarantine(
        self, log: str, *, status: str | None = "quarantined", action: str | None = None,
        limit: int = 100, after: str | None = None,
    ) -> list[QuarantineRecord]:
        """Records in id order."""
        rows = sorted((r for (lg, _), r in self._rows.items() if lg == log), key=lambda r: r.quarantine_id)
        rows = [r for r in rows if (status is None or r.status == status) and (action is None or r.action == action)]
        rows = [r for r in rows if after is None or r.quarantine_id > after]
        return rows[:limit]

    def update(self, record: QuarantineRecord) -> None:
        """Replace by id."""
        with self._lock:
            self._rows[(record.log, record.quarantine_id)] = record


class MemoryPolicyStore:
    """In-memory :class:`PolicyStore`."""

    def __init__(self) -> None:
        self._rows: dict[str, Mapping[str, Any]] = {}

    def get_policy(self, log: str) -> Mapping[str, Any] | None:
        """Stored JSON or None."""
        return self._rows.get(log)

    def set_policy(self, log: str, policy: Mapping[str, Any], at: str) -> None:
        """Replace."""
        self._rows[log] = policy


class MemoryCountStore:
    """In-memory :class:`CountStore`."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str, str], Count] = {}
        self._lock = threading.Lock()

    def add_counts(self, log: str, counts: Sequence[Count]) -> None:
        """Add."""
        with self._lock:
            for count in counts:
                key = (log, count.interval_start, count.action, count.pattern)
                old = self._rows.get(key)
                self._rows[key] = count if old is None else replace(
                    old, seen=old.seen + count.seen, kept=old.kept + count.kept, rate=count.rate
                )

    def pending_counts(self) -> list[tuple[str, Count]]:
        """Everything pending."""
        with self._lock:
            return [(key[0], count) for key, count in sorted(self._rows.items())]

    def clear_counts(self, log: str, interval_start: str) -> None:
        """Forget one interval."""
        with self._lock:
            for key in [k for k in self._rows if k[0] == log and k[1] == interval_start]:
                del self._rows[key]


@dataclass
class PipelineState:
    """Every store the pipeline needs."""

    schemas: SchemaStore = field(default_factory=MemorySchemaStore)
    quarantine: QuarantineStore = field(default_factory=MemoryQuarantineStore)
    policies: PolicyStore = field(default_factory=MemoryPolicyStore)
    producers: ProducerStore = field(default_factory=MemoryProducerStore)
    counts: CountStore = field(default_factory=MemoryCountStore)
