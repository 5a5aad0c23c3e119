"""Values that flow into and out of the sequencer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from trailseal.core.event import Event
from trailseal.core.receipt import Receipt

__all__ = ["LeafColumns", "Prepared", "Receipt", "Staged"]


class LeafColumns(NamedTuple):
    """The envelope fields the store keeps beside the leaf (the query columns of ``entries``)."""

    id: str
    time: str
    received_at: str
    action: str
    actor_id: str
    resource_type: str
    resource_id: str
    outcome: str | None
    request_id: str | None
    trace_id: str | None
    source_service: str | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event ready to sequence: the envelope with server fields, its leaf input and hashes.

    ``content_hash`` covers what the producer sent (without ``received_at``/``log``/``schema``),
    so a retry of the same event is recognised even though its ``received_at`` differs.
    """

    event: Event
    body: bytes
    leaf_hash: bytes
    content_hash: bytes

    @property
    def event_id(self) -> str:
        """The event id (the idempotency key)."""
        return self.event.id

    def leaf_columns(self) -> LeafColumns:
        """The store's columns for this event."""
        event = self.event
        return LeafColumns(
            event.id, event.time, event.received_at or "", event.action, event.actor.id,
            event.resource.type, event.resource.id, event.outcome, event.request_id,
            event.trace_id, event.source.service if event.source else None,
        )


@dataclass(frozen=True, slots=True)
class Staged:
    """A :class:`Prepared` event reduced to what the writer stores: columns, bytes and hashes.

    The API process built and checked the envelope; the writer process gets this instead of
    re-parsing the canonical bytes (``trailseal.sequencer.process``).
    """

    columns: LeafColumns
    body: bytes
    leaf_hash: bytes
    content_hash: bytes

    @property
    def event_id(self) -> str:
        """The event id (the idempotency key)."""
        return self.columns.id

    def leaf_columns(self) -> LeafColumns:
        """The store's columns for this event."""
        return self.columns


Item = Prepared | Staged
"""What the sequencer accepts."""
