"""Compact ranges: roots against the naive RFC tree, visited nodes, restore, arbitrary starts."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core import naive
from trailseal.core.compact import CompactRange
from trailseal.core.errors import FormatError
from trailseal.core.hashing import EMPTY_ROOT
from trailseal.core.merkle import NodeID, hash_range, root_hash, subtree_nodes

MAX = 1 << 12


@functools.cache
def tree() -> tuple[tuple[bytes, ...], dict[tuple[int, int], bytes]]:
    leaves = tuple(naive.leaf(i.to_bytes(4, "big")) for i in range(MAX))
    return leaves, naive.perfect_nodes(leaves)


def test_empty() -> None:
    cr = CompactRange()
    assert (cr.start, cr.end, cr.hashes) == (0, 0, ())
    assert cr.root_hash() == EMPTY_ROOT


def test_every_size_up_to_300_matches_naive() -> None:
    leaves, _ = tree()
    cr = CompactRange()
    for n in range(1, 301):
        cr.append(leaves[n - 1])
        assert cr.end == n
        assert len(cr.hashes) == n.bit_count()  # one peak per set bit of the size
        assert cr.root_hash() == naive.mth(leaves[:n]) == root_hash(leaves[:n])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX))
def test_root_matches_root_hash_and_naive(n: int) -> None:
    leaves, _ = tree()
    cr = CompactRange()
    cr.extend(leaves[:n])
    assert cr.root_hash() == root_hash(leaves[:n]) == naive.mth(leaves[:n])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, MAX), st.integers(0, MAX))
def test_any_start_holds_the_subtree_hashes(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    leaves, nodes = tree()
    cr = CompactRange(start, start, ())
    cr.extend(leaves[start:end])
    assert cr.nodes() == subtree_nodes(start, end)
    assert cr.hashes == tuple(nodes[n.level, n.index] for n in subtree_nodes(start, end))
    assert cr.root_hash() == hash_range(start, end, lambda lv, i: nodes[lv, i])


def test_visit_reports_every_perfect_node_once() -> None:
    leaves, nodes = tree()
    seen: dict[tuple[int, int], bytes] = {}

    def visit(level: int, index: int, value: bytes) -> None:
        assert (level, index) not in seen
        seen[level, index] = value

    cr = CompactRange()
    cr.extend(leaves[:1000], visit)
    want = {k: v for k, v in nodes.items() if (k[1] + 1) << k[0] <= 1000}
    assert seen == want


def test_visit_order_for_one_append() -> None:
    leaves, _nodes = tree()
    cr = CompactRange()
    cr.extend(leaves[:7])
    calls: list[tuple[int, int]] = []
    cr.append(leaves[7], lambda level, index, value: calls.append((level, index)))
    assert calls == [(0, 7), (1, 3), (2, 1), (3, 0)]


def test_from_nodes_restores_and_continues() -> None:
    leaves, nodes = tree()
    for end in (0, 1, 5, 255, 256, 1000):
        restored = CompactRange.from_nodes(end, lambda lv, i: nodes[lv, i])
        fresh = CompactRange()
        fresh.extend(leaves[:end])
        assert restored == fresh
        restored.extend(leaves[end : end + 77])
        assert restored.root_hash() == naive.mth(leaves[: end + 77])


def test_copy_is_independent() -> None:
    leaves, _ = tree()
    a = CompactRange()
    a.extend(leaves[:5])
    b = a.copy()
    b.append(leaves[5])
    assert (a.end, b.end) == (5, 6)
    assert a.root_hash() == naive.mth(leaves[:5])
    assert a != b
    assert "end=5" in repr(a)


def test_constructor_checks() -> None:
    h = bytes(32)
    assert CompactRange(0, 6, [h, h]).nodes() == [NodeID(2, 0), NodeID(1, 2)]
    with pytest.raises(FormatError, match="wrong number of hashes 1, want 2"):
        CompactRange(0, 6, [h])
    with pytest.raises(FormatError, match=r"hashes\[1\]: wrong size 31"):
        CompactRange(0, 6, [h, h[:31]])
    with pytest.raises(FormatError, match="not a half-open range"):
        CompactRange(5, 3)
    with pytest.raises(FormatError, match="leaf hash: wrong size 33"):
        CompactRange().append(h + b"x")
