"""RFC 6962 / RFC 9162 Merkle tree hashing with SHA-256.

Byte formats (RFC 9162 §2.1.1, identical to RFC 6962 §2.1)::

    leaf hash  = SHA-256(0x00 || leaf bytes)              32 bytes
    node hash  = SHA-256(0x01 || left hash || right hash)  32 bytes (input is 65 bytes)
    empty root = SHA-256("")                               32 bytes, the root of a tree of size 0

The distinct one-byte prefixes keep a leaf from ever being read as an interior node
(second-preimage resistance, RFC 9162 §2.1.1). Everything else in ``trailseal.core`` that
hashes tree nodes uses the names defined here, so the prefixes live in one place.
"""

from __future__ import annotations

from hashlib import sha256

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "leaf_hash",
    "node_hash",
]

HASH_SIZE = 32
"""Size in bytes of every leaf, node and root hash (SHA-256)."""

LEAF_PREFIX = b"\x00"
"""Domain-separation byte prepended to leaf data before hashing (RFC 9162 §2.1.1)."""

NODE_PREFIX = b"\x01"
"""Domain-separation byte prepended to two child hashes before hashing (RFC 9162 §2.1.1)."""

EMPTY_ROOT = sha256(b"").digest()  # RFC 6962 §2.1 / RFC 9162 §2.1.1: MTH({}) = SHA-256()
"""Root hash of the empty tree: SHA-256 of the empty string (``e3b0c442...``)."""


def leaf_hash(data: bytes) -> bytes:
    """Return the Merkle leaf hash of ``data``: ``SHA-256(0x00 || data)``."""
    return sha256(LEAF_PREFIX + data).digest()  # RFC 6962 §2.1 / RFC 9162 §2.1.1: MTH({d0})


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the interior node hash ``SHA-256(0x01 || left || right)`` of two child hashes."""
    return sha256(NODE_PREFIX + left + right).digest()  # RFC 6962 §2.1 / RFC 9162 §2.1.1
