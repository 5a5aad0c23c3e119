"""Offline receipt verification: only the receipt and the log's verifier key are needed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from trailseal.core.canonical import canonicalize
from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.errors import VerificationError
from trailseal.core.hashing import leaf_hash
from trailseal.core.merkle import verify_inclusion
from trailseal.core.note import Verifier, VerifierSet
from trailseal.core.receipt import Receipt


def verify_receipt(
    receipt: Receipt,
    verifiers: Iterable[Verifier] | VerifierSet,
    *,
    event: Mapping[str, Any] | None = None,
    origin: str | None = None,
) -> Checkpoint:
    """Check a receipt: checkpoint signature, inclusion proof, and optionally the event itself.

    ``event`` is the stored envelope (as ``GET /v1/events/{id}`` returns it); its RFC 8785 bytes
    must hash to the receipt's leaf hash. Returns the verified checkpoint; raises
    :class:`~trailseal.core.errors.VerificationError` on any failure.
    """
    checkpoint, _note = open_checkpoint(receipt.checkpoint.encode(), verifiers, origin=origin)
    if checkpoint.tree_size != receipt.tree_size:
        raise VerificationError(
            f"receipt: tree_size {receipt.tree_size} but its checkpoint signs {checkpoint.tree_size}"
        )
    if receipt.inclusion_proof is None:
        raise VerificationError(
            "receipt: no inclusion_proof; fetch the receipt with GET /v1/events/{id} or POST "
            "with ?proofs=true"
        )
    if event is not None:
        if event.get("id") != receipt.id:
            raise VerificationError(f"receipt: event id {event.get('id')!r}, want {receipt.id!r}")
        actual = leaf_hash(canonicalize(dict(event)))
        if actual != receipt.leaf_hash:
            raise VerificationError("receipt: the event does not hash to the receipt's leaf hash")
    verify_inclusion(
        receipt.leaf_index,
        receipt.tree_size,
        receipt.leaf_hash,
        list(receipt.inclusion_proof),
        checkpoint.root_hash,
    )
    return checkpoint
