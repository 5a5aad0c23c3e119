"""RFC 6962 hashing: published hasher vectors and the domain-separation prefixes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.core import naive
from trailseal.core.hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    leaf_hash,
    node_hash,
)


@pytest.fixture(scope="module")
def vectors(testdata: Path) -> dict[str, Any]:
    path = testdata / "merkle-transparency-dev" / "reference-vectors.json"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_constants() -> None:
    assert HASH_SIZE == 32
    assert LEAF_PREFIX == b"\x00"
    assert NODE_PREFIX == b"\x01"
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


def test_hasher_checks(vectors: dict[str, Any]) -> None:
    checks = vectors["hasher_checks"]
    assert EMPTY_ROOT.hex() == checks["empty_root"]
    assert leaf_hash(b"").hex() == checks["leaf_hash_of_empty_input"]
    assert leaf_hash(b"L123456").hex() == checks["leaf_hash_of_ascii_L123456"]
    assert node_hash(b"N123", b"N456").hex() == checks["node_hash_of_ascii_N123_and_N456"]


def test_leaf_hashes_of_reference_inputs(vectors: dict[str, Any]) -> None:
    inputs = [bytes.fromhex(x) for x in vectors["leaf_inputs_hex"]]
    assert [leaf_hash(x).hex() for x in inputs] == vectors["leaf_hashes_hex"]


def test_level1_nodes(vectors: dict[str, Any]) -> None:
    leaves = [bytes.fromhex(x) for x in vectors["leaf_hashes_hex"]]
    level1 = [node_hash(leaves[i], leaves[i + 1]).hex() for i in range(0, 8, 2)]
    assert level1 == vectors["level1_nodes_hex"]


def test_leaf_and_node_are_domain_separated() -> None:
    # A node's 64-byte input hashed as a leaf must not give the node hash (RFC 9162 §2.1.1).
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != node_hash(left, right)
    assert len(leaf_hash(b"x")) == len(node_hash(left, right)) == HASH_SIZE


def test_matches_naive() -> None:
    for data in (b"", b"\x00", b"trailseal" * 100):
        assert leaf_hash(data) == naive.leaf(data)
    assert node_hash(b"l" * 32, b"r" * 32) == naive.node(b"l" * 32, b"r" * 32)
