"""RFC 9162 Merkle tree hashes, inclusion proofs and consistency proofs.

Tree model. Leaves are numbered from 0. Storage keeps only *perfect* subtree hashes:
``NodeID(level, index)`` is the root of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the leaf hashes. Every other
hash the RFC needs (the root of a tree whose size is not a power of two, the right edge of a
proof) is the hash of a *range*, folded on the fly from the perfect subtrees that tile it
(:func:`subtree_nodes`, :func:`hash_range`). For a range that is a subtree of the RFC 6962
tree this equals ``MTH(D[start:end])`` (RFC 9162 §2.1.1).

Building a proof is split from verifying one:

* construction — :func:`inclusion_proof_ranges` / :func:`consistency_proof_ranges` say which
  ranges make the proof, :func:`subtree_nodes` which stored nodes cover each range, and
  :func:`prove_inclusion` / :func:`prove_consistency` read them through a
  ``get_node(level, index) -> bytes`` callback;
* verification — :func:`verify_inclusion` / :func:`verify_consistency` are pure functions of
  sizes and hashes (RFC 9162 §2.1.3.2 and §2.1.4.2) and raise :class:`InclusionError` /
  :class:`ConsistencyError`; they never raise anything else for bad proofs.

JSON forms (hashes are standard base64 with padding)::

    {"leaf_index": 5, "tree_size": 8, "hashes": ["vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=", ...]}
    {"first": 6, "second": 8, "hashes": ["DrxdNDf74tsVi58SahERjjCBgQMdCpSfje3t68VY72o=", ...]}
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256

from trailseal.core.errors import (
    ConsistencyError,
    FormatError,
    InclusionError,
    NotFoundError,
    VerificationError,
)
from trailseal.core.hashing import EMPTY_ROOT, HASH_SIZE, NODE_PREFIX

__all__ = [
    "ConsistencyProof",
    "GetNode",
    "InclusionProof",
    "NodeID",
    "consistency_proof_ranges",
    "hash_range",
    "inclusion_proof_ranges",
    "nodes_for_ranges",
    "prove_consistency",
    "prove_inclusion",
    "root_from_inclusion_proof",
    "root_hash",
    "subtree_nodes",
    "verify_consistency",
    "verify_inclusion",
]

GetNode = Callable[[int, int], bytes]
"""Reads one stored perfect-subtree hash: ``get_node(level, index) -> 32 bytes``."""

_HASH_SIZES = frozenset({HASH_SIZE})


@dataclass(frozen=True, slots=True, order=True)
class NodeID:
    """A perfect subtree: the root over leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 6962 tree hash ``MTH`` of a tree with these leaf hashes (any size, incl. 0)."""
    if not _HASH_SIZES.issuperset(map(len, leaf_hashes)):
        raise FormatError(f"leaf hashes: every hash must be {HASH_SIZE} bytes")
    if not leaf_hashes:
        return EMPTY_ROOT  # RFC 9162 §2.1.1: MTH({}) = HASH()
    level = list(leaf_hashes)
    while len(level) > 1:
        # Pair neighbours left to right; an unpaired last node moves up a level unchanged. This
        # builds exactly the RFC 9162 §2.1.1 split-at-largest-power-of-two tree: the perfect
        # subtrees on the left pair off first, and the ragged right edge is joined last.
        paired = [
            sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


# ---------------------------------------------------------------------------------------------
# Construction: which stored nodes make a proof.


def subtree_nodes(start: int, end: int) -> list[NodeID]:
    """Split the leaf range ``[start, end)`` into maximal perfect subtrees, left to right."""
    if not 0 <= start <= end:
        raise ValueError(f"range: [{start}, {end}) is not a half-open range of leaf indexes")
    nodes: list[NodeID] = []
    while start < end:
        # Largest block that fits: 2**level <= end - start ...
        level = (end - start).bit_length() - 1
        if start:
            # ... and is aligned: a node at `level` must start at a multiple of 2**level, so the
            # lowest set bit of `start` caps the level (start == 0 is aligned to every level).
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append(NodeID(level, start >> level))
        start += 1 << level
    return nodes


def nodes_for_ranges(ranges: Sequence[tuple[int, int]]) -> list[NodeID]:
    """Return every stored node the given ranges need, in order (what to fetch for a proof)."""
    return [node for start, end in ranges for node in subtree_nodes(start, end)]


def hash_range(start: int, end: int, get_node: GetNode) -> bytes:
    """Return the hash of leaves ``[start, end)`` from stored perfect nodes, folding right to left.

    For a range that is a subtree of the RFC 6962 tree (every range a proof uses, and every
    ``[0, tree_size)``) this is ``MTH(D[start:end])``: MTH splits at the largest power of two,
    so it is the perfect subtrees of the range joined from the right (RFC 9162 §2.1.1).
    """
    hashes = [get_node(n.level, n.index) for n in subtree_nodes(start, end)]  # read in order
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = sha256(NODE_PREFIX + left + h).digest()
    return h


def _path_ranges(last: int, tree_size: int, level: int) -> list[tuple[int, int]]:
    """Sibling ranges on the path from node ``(level, last >> level)`` up to the root, bottom up.

    ``last`` is a leaf index inside that node (its last leaf, for consistency proofs).
    """
    # Below level `inner` the paths from `last` and from the tree's last leaf (tree_size - 1)
    # are distinct, so every level has a sibling; it may be the ragged right edge, hence the
    # clip to tree_size. At level `inner` and above both paths share the node, which is on the
    # right edge: it has a sibling only where it is a right child (bit set in `last`), and that
    # sibling is then a whole perfect subtree to its left.
    inner = (last ^ (tree_size - 1)).bit_length()
    ranges: list[tuple[int, int]] = []
    for lv in range(level, inner):
        lo = ((last >> lv) ^ 1) << lv  # sibling of the ancestor at level lv, left or right
        ranges.append((lo, min(lo + (1 << lv), tree_size)))
    for lv in range(max(level, inner), last.bit_length()):
        if (last >> lv) & 1:
            lo = ((last >> lv) - 1) << lv  # left sibling, always perfect
            ranges.append((lo, lo + (1 << lv)))
    return ranges


def inclusion_proof_ranges(leaf_index: int, tree_size: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes form the RFC 9162 §2.1.3.1 inclusion proof, in order."""
    if not 0 <= leaf_index < tree_size:
        raise NotFoundError(
            f"inclusion proof: leaf index {leaf_index} not in tree of size {tree_size}"
        )
    return _path_ranges(leaf_index, tree_size, 0)


def consistency_proof_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """Return the leaf ranges whose hashes form the RFC 9162 §2.1.4.1 consistency proof, in order.

    ``first`` must be in ``[1, second]``: a proof from the empty tree is meaningless (RFC 9162
    §2.1.4.2 verifiers reject it), and ``first == second`` has the empty proof.
    """
    if not 0 < first <= second:
        raise NotFoundError(f"consistency proof: tree size {first} not in [1, {second}]")
    if first == second:
        return []  # RFC 9162 §2.1.4.1: SUBPROOF(m, D[m], true) = {}
    # The old tree [0, first) ends with its smallest perfect subtree, of size 2**k where k is
    # the number of trailing zero bits of `first`. The proof is that subtree's hash followed by
    # its path to the new root (RFC 9162 §2.1.4.1 SUBPROOF, unrolled). If `first` is a power of
    # two, that subtree is the whole old tree, whose root the verifier already has: omit it.
    k = (first & -first).bit_length() - 1
    head = [] if first == 1 << k else [(first - (1 << k), first)]
    return head + _path_ranges(first - 1, second, k)


def prove_inclusion(leaf_index: int, tree_size: int, get_node: GetNode) -> list[bytes]:
    """Build the inclusion proof of ``leaf_index`` in the tree of ``tree_size`` from stored nodes."""
    return [hash_range(s, e, get_node) for s, e in inclusion_proof_ranges(leaf_index, tree_size)]


def prove_consistency(first: int, second: int, get_node: GetNode) -> list[bytes]:
    """Build the consistency proof between tree sizes ``first`` and ``second`` from stored nodes."""
    return [hash_range(s, e, get_node) for s, e in consistency_proof_ranges(first, second)]


# ---------------------------------------------------------------------------------------------
# Verification: pure functions of sizes and hashes.


def _check_hashes(proof: Sequence[bytes], error: type[VerificationError]) -> None:
    """Raise ``error`` naming the first proof hash that is not 32 bytes.

    Called only once a proof has failed, to explain why. Skipping it on the success path is
    safe: a hash of another size changes the length of a SHA-256 input, so the root computed
    through it can match the true root only through a SHA-256 collision.
    """
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise error(f"proof hash {i}: wrong size {len(p)}, want {HASH_SIZE}")


def root_from_inclusion_proof(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root that ``proof`` leads to from ``leaf_hash`` (RFC 9162 §2.1.3.2 steps 1-4).

    Raises :class:`InclusionError` if the index, leaf hash or proof length cannot form a proof.
    Proof hashes of the wrong size are not rejected here: they lead to a root that matches
    nothing, and :func:`verify_inclusion` then names them.
    """
    if not 0 <= leaf_index < tree_size:  # RFC 9162 §2.1.3.2 step 1
        raise InclusionError(
            f"inclusion proof: leaf index {leaf_index} not in tree of size {tree_size}"
        )
    if len(leaf_hash) != HASH_SIZE:
        raise InclusionError(f"leaf hash: wrong size {len(leaf_hash)}, want {HASH_SIZE}")
    # The RFC loop consumes one proof hash per level while fn != sn ("inner" levels, where the
    # sibling's side is bit `level` of leaf_index) and then, once fn == sn, one hash per set bit
    # of fn as it shifts right (the "border": left siblings on the right edge). Counting both up
    # front gives the exact proof length, a clear error, and a loop with no per-step branching
    # on sn. This is step 4 with its two phases separated; sn reaching 0 exactly is step 5.
    inner = (leaf_index ^ (tree_size - 1)).bit_length()
    border = (leaf_index >> inner).bit_count()
    if len(proof) != inner + border:
        raise InclusionError(f"wrong proof size {len(proof)}, want {inner + border}")
    r = leaf_hash
    fn = leaf_index
    for p in proof[:inner]:
        # RFC 9162 §2.1.3.2 step 4b: LSB(fn) set -> sibling on the left: HASH(0x01 || p || r).
        r = sha256(NODE_PREFIX + p + r if fn & 1 else NODE_PREFIX + r + p).digest()
        fn >>= 1
    for p in proof[inner:]:
        r = sha256(NODE_PREFIX + p + r).digest()  # step 4b with fn == sn: always on the left
    return r


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``proof`` shows ``leaf_hash`` at ``leaf_index`` in the tree with ``root_hash``.

    RFC 9162 §2.1.3.2. Returns ``None`` on success; raises :class:`InclusionError` otherwise.
    """
    computed = root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof)
    if computed != root_hash:  # RFC 9162 §2.1.3.2 step 5
        _check_hashes(proof, InclusionError)
        raise InclusionError(
            f"inclusion proof: calculated root {computed.hex()}, want {root_hash.hex()}"
        )


def verify_consistency(
    first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes
) -> None:
    """Check that the tree of size ``second`` with ``second_root`` extends ``first``/``first_root``.

    RFC 9162 §2.1.4.2. Returns ``None`` on success; raises :class:`ConsistencyError` otherwise
    (including ``first == 0`` and ``first > second``; equal sizes need an empty proof and equal
    roots).
    """
    if not 0 < first <= second:
        raise ConsistencyError(f"consistency proof: tree size {first} not in [1, {second}]")
    if first == second:
        if proof:
            raise ConsistencyError(f"wrong proof size {len(proof)}, want 0")
        if first_root != second_root:
            raise ConsistencyError(
                f"consistency proof: equal tree sizes {first} with different roots "
                f"{first_root.hex()} and {second_root.hex()}"
            )
        return
    # k = trailing zero bits of `first` = levels the RFC's step 4 shifts away (fn = first - 1
    # ends in exactly k one bits). If first == 2**k, step 2 seeds with first_root itself;
    # otherwise proof[0] is the hash of the old tree's last perfect subtree, (k, (first >> k) - 1).
    k = (first & -first).bit_length() - 1
    seeded = first != 1 << k
    last = first - 1
    inner = (last ^ (second - 1)).bit_length()  # > k, since first <= second - 1
    border = (last >> inner).bit_count()
    want = seeded + (inner - k) + border
    if len(proof) != want:
        raise ConsistencyError(f"wrong proof size {len(proof)}, want {want}")
    fr = sr = proof[0] if seeded else first_root  # RFC 9162 §2.1.4.2 steps 2 and 5
    fn = last >> k  # step 4
    rest = proof[1:] if seeded else proof
    for c in rest[: inner - k]:
        if fn & 1:  # step 6b: c is a left sibling, inside both trees
            fr = sha256(NODE_PREFIX + c + fr).digest()
            sr = sha256(NODE_PREFIX + c + sr).digest()
        else:  # step 6b otherwise: c is a right sibling, only in the new tree
            sr = sha256(NODE_PREFIX + sr + c).digest()
        fn >>= 1
    for c in rest[inner - k :]:  # fn == sn: the shared right edge, left siblings only
        fr = sha256(NODE_PREFIX + c + fr).digest()
        sr = sha256(NODE_PREFIX + c + sr).digest()
    for name, got, want_root in (("first", fr, first_root), ("second", sr, second_root)):
        if got != want_root:  # RFC 9162 §2.1.4.2 step 7
            _check_hashes(proof, ConsistencyError)
            raise ConsistencyError(
                f"consistency proof: calculated {name} root {got.hex()}, want {want_root.hex()}"
            )


# ---------------------------------------------------------------------------------------------
# Proof values and their JSON form.


def _from_json(
    obj: object, what: str, fields: tuple[str, str]
) -> tuple[int, int, tuple[bytes, ...]]:
    """Check and decode ``{fields[0]: int, fields[1]: int, "hashes": [base64, ...]}``."""
    if not isinstance(obj, dict):
        raise FormatError(f"{what}: want a JSON object, got {type(obj).__name__}")
    sizes = []
    for field in fields:
        if field not in obj:
            raise FormatError(f"{what}: {field}: missing")
        value = obj[field]
        if type(value) is not int or value < 0:  # bool is not a size
            raise FormatError(f"{what}: {field}: want a non-negative integer, got {value!r}")
        sizes.append(value)
    items = obj.get("hashes")
    if not isinstance(items, list):
        raise FormatError(f"{what}: hashes: want a list of base64 strings, got {items!r}")
    hashes = []
    for i, item in enumerate(items):
        try:
            raw = b64decode(item.encode("ascii"), validate=True)
        except (AttributeError, UnicodeEncodeError, binascii.Error):
            raise FormatError(f"{what}: hashes[{i}]: want standard base64, got {item!r}") from None
        if len(raw) != HASH_SIZE:
            raise FormatError(f"{what}: hashes[{i}]: wrong size {len(raw)}, want {HASH_SIZE}")
        hashes.append(raw)
    return sizes[0], sizes[1], tuple(hashes)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """An RFC 9162 inclusion proof of the leaf at ``leaf_index`` in the tree of ``tree_size``."""

    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]

    def verify(self, leaf_hash: bytes, root_hash: bytes) -> None:
        """Check this proof; see :func:`verify_inclusion`."""
        verify_inclusion(self.leaf_index, self.tree_size, leaf_hash, self.hashes, root_hash)

    def to_json(self) -> dict[str, object]:
        """Return ``{"leaf_index", "tree_size", "hashes": [standard base64, ...]}``."""
        return {
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "hashes": [b64encode(h).decode("ascii") for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: object) -> InclusionProof:
        """Parse :meth:`to_json` output; raise :class:`FormatError` naming the bad field."""
        return cls(*_from_json(obj, "inclusion proof", ("leaf_index", "tree_size")))


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """An RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""

    first: int
    second: int
    hashes: tuple[bytes, ...]

    def verify(self, first_root: bytes, second_root: bytes) -> None:
        """Check this proof; see :func:`verify_consistency`."""
        verify_consistency(self.first, self.second, self.hashes, first_root, second_root)

    def to_json(self) -> dict[str, object]:
        """Return ``{"first", "second", "hashes": [standard base64, ...]}``."""
        return {
            "first": self.first,
            "second": self.second,
            "hashes": [b64encode(h).decode("ascii") for h in self.hashes],
        }

    @classmethod
    def from_json(cls, obj: object) -> ConsistencyProof:
        """Parse :meth:`to_json` output; raise :class:`FormatError` naming the bad field."""
        return cls(*_from_json(obj, "consistency proof", ("first", "second")))
