"""Compact ranges: the O(log n) state needed to append leaves and compute a tree root.

A compact range ``[start, end)`` is the list of hashes of the maximal perfect subtrees that
tile the leaf range (:func:`trailseal.core.merkle.subtree_nodes`), left to right. For
``start == 0`` they are the peaks of a Merkle mountain range: one perfect subtree per set bit
of ``end``, largest first. Example, ``end = 6 = 0b110``::

    hashes = [H(leaves 0..3), H(leaves 4..5)]        nodes (2, 0) and (1, 2)

Appending leaf ``end`` merges it with the trailing peaks: leaf ``end`` completes one perfect
node per trailing one bit of ``end`` (``end = 0b0111`` -> the new leaf closes nodes at levels
1, 2 and 3). ``visit(level, index, hash)`` sees the leaf and each node as it is completed, so
a sequencer can store exactly the perfect nodes that :mod:`trailseal.core.merkle` reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from hashlib import sha256

from trailseal.core.errors import FormatError
from trailseal.core.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX
from trailseal.core.merkle import GetNode, NodeID, subtree_nodes

__all__ = ["CompactRange", "Visit"]

Visit = Callable[[int, int, bytes], None]
"""Called as ``visit(level, index, hash)`` for each perfect node a :class:`CompactRange` completes."""


class CompactRange:
    """The perfect-subtree hashes covering leaves ``[start, end)``; grows by appending leaves."""

    __slots__ = ("_end", "_hashes", "_start")

    def __init__(self, start: int = 0, end: int = 0, hashes: Iterable[bytes] = ()) -> None:
        """Create the range ``[start, end)`` from the hashes of ``subtree_nodes(start, end)``."""
        if not 0 <= start <= end:
            raise FormatError(f"compact range: [{start}, {end}) is not a half-open range")
        self._start = start
        self._end = end
        self._hashes = list(hashes)
        want = len(subtree_nodes(start, end))
        if len(self._hashes) != want:
            raise FormatError(
                f"compact range [{start}, {end}): wrong number of hashes {len(self._hashes)}, want {want}"
            )
        for i, h in enumerate(self._hashes):
            if len(h) != HASH_SIZE:
                raise FormatError(
                    f"compact range: hashes[{i}]: wrong size {len(h)}, want {HASH_SIZE}"
                )

    @classmethod
    def from_nodes(cls, end: int, get_node: GetNode) -> CompactRange:
        """Restore the range ``[0, end)`` from stored perfect nodes (one read per set bit of end)."""
        return cls(0, end, [get_node(n.level, n.index) for n in subtree_nodes(0, end)])

    @property
    def start(self) -> int:
        """First leaf index covered."""
        return self._start

    @property
    def end(self) -> int:
        """One past the last leaf index covered; the tree size when ``start == 0``."""
        return self._end

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect-subtree hashes, left to right (see :meth:`nodes` for their positions)."""
        return tuple(self._hashes)

    def nodes(self) -> list[NodeID]:
        """The positions of :attr:`hashes`: ``subtree_nodes(start, end)``."""
        return subtree_nodes(self._start, self._end)

    def copy(self) -> CompactRange:
        """Return an independent copy (appending to one does not change the other)."""
        clone = CompactRange.__new__(CompactRange)
        clone._start, clone._end, clone._hashes = self._start, self._end, list(self._hashes)
        return clone

    def append(self, leaf_hash: bytes, visit: Visit | None = None) -> None:
        """Append the leaf ``end`` and merge it into the trailing perfect subtrees.

        ``visit(0, end, leaf_hash)`` is called first, then ``visit(level, end >> level, hash)``
        for each perfect node the leaf completes, in increasing level.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise FormatError(f"leaf hash: wrong size {len(leaf_hash)}, want {HASH_SIZE}")
        end = self._end
        hashes = self._hashes
        # One merge per trailing one bit of `end`: end ^ (end + 1) is those bits plus the next
        # one up. At level l the new subtree (l, end >> l) is a right child whose left sibling
        # (l, (end >> l) - 1) is the last hash in the list.
        merges = (end ^ (end + 1)).bit_length() - 1
        if self._start:
            # ... unless that left sibling starts before `start`: the merge at level l needs
            # end + 1 - 2**(l + 1) >= start, i.e. 2**(l + 1) <= end + 1 - start.
            merges = min(merges, (end + 1 - self._start).bit_length() - 1)
        h = leaf_hash
        if visit is None:
            for _ in range(merges):
                h = sha256(NODE_PREFIX + hashes.pop() + h).digest()  # RFC 9162 §2.1.1 node hash
        else:
            visit(0, end, h)
            for level in range(1, merges + 1):
                h = sha256(NODE_PREFIX + hashes.pop() + h).digest()  # RFC 9162 §2.1.1 node hash
                visit(level, end >> level, h)
        hashes.append(h)
        self._end = end + 1

    def extend(self, leaf_hashes: Iterable[bytes], visit: Visit | None = None) -> None:
        """Append each leaf hash in order; see :meth:`append`."""
        append = self.append
        for h in leaf_hashes:
            append(h, visit)

    def root_hash(self) -> bytes:
        """Fold the subtree hashes right to left into one hash.

        For ``start == 0`` this is the RFC 6962 tree head ``MTH(D[0:end])`` (the empty root for
        ``end == 0``); for other ranges it is :func:`trailseal.core.merkle.hash_range`.
        """
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT  # RFC 9162 §2.1.1: MTH({}) = HASH()
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            # RFC 9162 §2.1.1: MTH splits at the largest power of two, so the peaks join from
            # the right: the smallest two first, then each larger peak on the left.
            h = sha256(NODE_PREFIX + left + h).digest()
        return h

    def __eq__(self, other: object) -> bool:
        """Ranges are equal when they cover the same leaves with the same hashes."""
        if not isinstance(other, CompactRange):
            return NotImplemented
        return (self._start, self._end, self._hashes) == (other._start, other._end, other._hashes)

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        """Show the range and its hashes in hex."""
        shown = ", ".join(h.hex()[:16] for h in self._hashes)
        return f"CompactRange(start={self._start}, end={self._end}, hashes=[{shown}])"
