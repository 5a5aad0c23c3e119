"""``Receipt``: what a producer gets back for an acknowledged event, and can check offline.

JSON form::

    {"id": "...", "log": "default", "status": "sequenced", "leaf_index": 41, "tree_size": 64,
     "leaf_hash": "<base64>", "checkpoint": "<signed note text>",
     "inclusion_proof": ["<base64>", ...],   # optional
     "duplicate": true}                       # only for a retry of an already-sequenced id

``checkpoint`` is the C2SP signed note of the checkpoint that first covered ``leaf_index``;
``inclusion_proof`` (RFC 9162 §2.1.3) leads from ``leaf_hash`` to that checkpoint's root.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trailseal.core.errors import FormatError


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"receipt: {what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"receipt: {what} is not valid base64") from exc
    if len(raw) != 32:
        raise FormatError(f"receipt: {what} is {len(raw)} bytes, want 32")
    return raw


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acknowledgement for one event."""

    id: str
    log: str
    leaf_index: int
    leaf_hash: bytes
    tree_size: int
    checkpoint: str
    inclusion_proof: tuple[bytes, ...] | None = None
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        """The receipt as JSON (hashes in standard base64)."""
        out: dict[str, Any] = {
            "id": self.id,
            "log": self.log,
            "status": "sequenced",
            "leaf_index": self.leaf_index,
            "leaf_hash": base64.b64encode(self.leaf_hash).decode(),
            "tree_size": self.tree_size,
            "checkpoint": self.checkpoint,
        }
        if self.inclusion_proof is not None:
            out["inclusion_proof"] = [base64.b64encode(h).decode() for h in self.inclusion_proof]
        if self.duplicate:
            out["duplicate"] = True
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Receipt:
        """Parse the JSON form; raises :class:`FormatError` naming the bad field."""
        if not isinstance(data, Mapping):
            raise FormatError("receipt: must be a JSON object")
        for name, kind in (("id", str), ("log", str), ("checkpoint", str)):
            if not isinstance(data.get(name), kind):
                raise FormatError(f"receipt: {name} must be a string")
        for name in ("leaf_index", "tree_size"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise FormatError(f"receipt: {name} must be a non-negative integer")
        proof = data.get("inclusion_proof")
        hashes: tuple[bytes, ...] | None = None
        if proof is not None:
            if not isinstance(proof, list):
                raise FormatError("receipt: inclusion_proof must be a list")
            hashes = tuple(_b64(h, f"inclusion_proof[{i}]") for i, h in enumerate(proof))
        return cls(
            id=data["id"],
            log=data["log"],
            leaf_index=data["leaf_index"],
            leaf_hash=_b64(data.get("leaf_hash"), "leaf_hash"),
            tree_size=data["tree_size"],
            checkpoint=data["checkpoint"],
            inclusion_proof=hashes,
            duplicate=bool(data.get("duplicate", False)),
        )
