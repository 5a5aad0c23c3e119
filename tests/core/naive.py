"""A deliberately naive RFC 6962 §2.1 Merkle tree, transcribed from the RFC text.

Recursive, slow and obviously right: used only to cross-check ``trailseal.core.merkle`` and
``trailseal.core.compact``. It shares no code with them (not even ``trailseal.core.hashing``).
Every function works on a tuple of *leaf hashes* ``D`` (MTH of one entry is its leaf hash).
``mth`` is memoized on that tuple purely for speed (the exhaustive tests ask for the same
subtrees thousands of times); the recursion itself is the RFC's.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence


def leaf(data: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(b"\x00" + data).digest()


def node(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """RFC 6962 §2.1: k is the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def mth(d: tuple[bytes, ...]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash over leaf hashes D[n]."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]
    k = split(n)
    return node(mth(d[:k]), mth(d[k:]))


def path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]): the audit path for leaf m."""
    n = len(d)
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    """RFC 6962 §2.1.2 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    """RFC 6962 §2.1.2 PROOF(m, D[n]) = SUBPROOF(m, D[n], true): consistency of m with n."""
    return subproof(m, d, True)


def perfect_nodes(d: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree hash of the tree over D, keyed ``(level, index)``.

    A perfect subtree of 2**(l+1) leaves splits at k = 2**l into two perfect halves (RFC 6962
    §2.1), so level l+1 is built from pairs of level l.
    """
    nodes = {(0, i): h for i, h in enumerate(d)}
    level, width = 0, len(d)
    while width > 1:
        for i in range(width // 2):
            nodes[level + 1, i] = node(nodes[level, 2 * i], nodes[level, 2 * i + 1])
        level, width = level + 1, width // 2
    return nodes


def mth_from_nodes(nodes: dict[tuple[int, int], bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) by the RFC 6962 §2.1 recursion, stopping at stored perfect subtrees.

    Only for ranges that are subtrees of the RFC tree (``start`` a multiple of the power of two
    at or above ``end - start``), e.g. ``[0, n)``.
    """
    n = end - start
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n & (n - 1) == 0:  # perfect: D[start:end] is one stored subtree
        level = n.bit_length() - 1
        return nodes[level, start >> level]
    k = split(n)
    return node(mth_from_nodes(nodes, start, start + k), mth_from_nodes(nodes, start + k, end))
