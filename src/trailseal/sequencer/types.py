"""Values that flow into and out of the sequencer."""

from __future__ import annotations

from dataclasses import dataclass

from trailseal.core.event import Event
from trailseal.core.receipt import Receipt

__all__ = ["Prepared", "Receipt"]


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
