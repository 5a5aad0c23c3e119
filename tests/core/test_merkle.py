"""Merkle proofs: published probes, exhaustive sizes 1..128 against the naive RFC tree, properties.

Three independent checks (STYLE.md): the transparency-dev probe files and reference vectors,
every proof of every tree size up to 128 compared with ``naive`` and mutated byte by byte, and
Hypothesis properties on trees up to 2**17 leaves.
"""

from __future__ import annotations

import functools
import json
from base64 import b64decode, b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import TESTDATA
from tests.core import naive
from trailseal.core.errors import ConsistencyError, FormatError, InclusionError, NotFoundError
from trailseal.core.merkle import (
    ConsistencyProof,
    InclusionProof,
    NodeID,
    consistency_proof_ranges,
    hash_range,
    inclusion_proof_ranges,
    nodes_for_ranges,
    prove_consistency,
    prove_inclusion,
    root_from_inclusion_proof,
    root_hash,
    subtree_nodes,
    verify_consistency,
    verify_inclusion,
)

PROBES = TESTDATA / "merkle-transparency-dev" / "testdata"
PROBE_FILES = sorted(str(p.relative_to(PROBES)) for p in PROBES.rglob("*.json"))
MAX_EXHAUSTIVE = 128
# Sizes whose proofs get every byte of every hash flipped; the rest get one byte per hash.
FULL_FLIP_SIZES = {*range(1, 33), 63, 64, 65}


def rejected(error: type[Exception], fn: Callable[..., object], *args: Any) -> str:
    """The message of the ``error`` that ``fn(*args)`` raises; fails if it returns.

    A plain try/except: ``pytest.raises`` costs too much for the ~150k mutations below.
    """
    try:
        fn(*args)
    except error as exc:
        return str(exc)
    raise AssertionError(f"{fn.__name__} accepted a mutated input: {args!r}")


def b64(value: str | None) -> bytes:
    return b64decode(value) if value else b""


def flips(value: bytes, every_byte: bool, salt: int) -> list[bytes]:
    """Copies of ``value`` with one bit flipped: in every byte, or in one byte picked by salt."""
    positions = range(len(value)) if every_byte else [salt % len(value)]
    return [
        value[:i] + bytes([value[i] ^ (1 << ((i + salt) % 8))]) + value[i + 1 :] for i in positions
    ]


@functools.cache
def tree(size: int) -> tuple[tuple[bytes, ...], dict[tuple[int, int], bytes]]:
    """Leaf hashes 0..size-1 (size a power of two) and every perfect node over them."""
    leaves = tuple(naive.leaf(i.to_bytes(4, "big")) for i in range(size))
    return leaves, naive.perfect_nodes(leaves)


def getter(nodes: dict[tuple[int, int], bytes], tree_size: int) -> Callable[[int, int], bytes]:
    """A node reader that fails the test if construction asks for a node the tree lacks."""

    def get_node(level: int, index: int) -> bytes:
        assert (index + 1) << level <= tree_size, f"node ({level}, {index}) beyond {tree_size}"
        return nodes[level, index]

    return get_node


# --- published probes and vectors ------------------------------------------------------------


def test_probe_files_present(testdata: Path) -> None:
    assert len(PROBE_FILES) == 196
    assert (testdata / "merkle-transparency-dev" / "testdata").is_dir()


@pytest.mark.parametrize("name", PROBE_FILES)
def test_probe(testdata: Path, name: str) -> None:
    probe = json.loads((testdata / "merkle-transparency-dev" / "testdata" / name).read_text())
    proof = [b64(p) for p in probe["proof"] or []]
    if name.startswith("inclusion"):
        args = (probe["leafIdx"], probe["treeSize"], b64(probe["leafHash"]), proof)
        if probe["wantErr"]:
            with pytest.raises(InclusionError):
                verify_inclusion(*args, b64(probe["root"]))
        else:
            verify_inclusion(*args, b64(probe["root"]))
    else:
        args2 = (probe["size1"], probe["size2"], proof, b64(probe["root1"]), b64(probe["root2"]))
        if probe["wantErr"]:
            with pytest.raises(ConsistencyError):
                verify_consistency(*args2)
        else:
            verify_consistency(*args2)


@pytest.fixture(scope="module")
def reference(testdata: Path) -> dict[str, Any]:
    path = testdata / "merkle-transparency-dev" / "reference-vectors.json"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def test_reference_roots(reference: dict[str, Any]) -> None:
    leaves = tuple(bytes.fromhex(h) for h in reference["leaf_hashes_hex"])
    nodes = naive.perfect_nodes(leaves)
    for size, want in reference["roots_by_tree_size_hex"].items():
        n = int(size)
        assert root_hash(leaves[:n]).hex() == want
        assert hash_range(0, n, getter(nodes, n)).hex() == want
        assert naive.mth(leaves[:n]).hex() == want
    assert [nodes[1, i].hex() for i in range(4)] == reference["level1_nodes_hex"]
    assert [nodes[2, i].hex() for i in range(2)] == reference["level2_nodes_hex"]


def test_reference_proofs(reference: dict[str, Any]) -> None:
    leaves = tuple(bytes.fromhex(h) for h in reference["leaf_hashes_hex"])
    nodes = naive.perfect_nodes(leaves)
    for case in reference["inclusion_proofs"]:
        m, n = case["leaf_index"], case["tree_size"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert prove_inclusion(m, n, getter(nodes, n)) == want
        verify_inclusion(m, n, leaves[m], want, root_hash(leaves[:n]))
    for case in reference["consistency_proofs"]:
        m, n = case["size1"], case["size2"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert prove_consistency(m, n, getter(nodes, n)) == want
        verify_consistency(m, n, want, root_hash(leaves[:m]), root_hash(leaves[:n]))


def test_reference_large_roots(reference: dict[str, Any]) -> None:
    roots = {int(k): v for k, v in reference["large_tree_roots"].items() if not k.startswith("_")}
    leaves = [naive.leaf(bytes([i & 0xFF, (i >> 8) & 0xFF])) for i in range(max(roots))]
    assert len(roots) >= 10
    for n, want in roots.items():
        assert root_hash(leaves[:n]).hex() == want


# --- exhaustive: every proof of every tree size 1..128 ----------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_EXHAUSTIVE + 1))
def test_every_inclusion_proof(n: int) -> None:
    leaves, nodes = tree(MAX_EXHAUSTIVE)
    get_node, root = getter(nodes, n), naive.mth(leaves[:n])
    for m in range(n):
        proof = prove_inclusion(m, n, get_node)
        assert proof == naive.path(m, leaves[:n])
        assert len(proof) == len(inclusion_proof_ranges(m, n))
        verify_inclusion(m, n, leaves[m], proof, root)
        every = n in FULL_FLIP_SIZES
        for j, p in enumerate(proof):
            for bad in flips(p, every, m + j):
                mutated = [*proof[:j], bad, *proof[j + 1 :]]
                msg = rejected(InclusionError, verify_inclusion, m, n, leaves[m], mutated, root)
                assert "calculated root" in msg
        for bad in flips(leaves[m], every, m):
            rejected(InclusionError, verify_inclusion, m, n, bad, proof, root)
        for bad in flips(root, every, m):
            rejected(InclusionError, verify_inclusion, m, n, leaves[m], proof, bad)
        for other in {m - 1, m + 1} & set(range(n)):  # right proof, wrong index
            rejected(InclusionError, verify_inclusion, other, n, leaves[m], proof, root)
        for wrong in (proof[:-1], [*proof, root], [root, *proof]):
            if wrong != proof:
                msg = rejected(InclusionError, verify_inclusion, m, n, leaves[m], wrong, root)
                assert msg.startswith("wrong proof size")


@pytest.mark.parametrize("n", range(1, MAX_EXHAUSTIVE + 1))
def test_every_consistency_proof(n: int) -> None:
    leaves, nodes = tree(MAX_EXHAUSTIVE)
    get_node, root = getter(nodes, n), naive.mth(leaves[:n])
    for m in range(1, n + 1):
        old_root = naive.mth(leaves[:m])
        proof = prove_consistency(m, n, get_node)
        assert proof == naive.proof(m, leaves[:n])
        assert len(proof) == len(consistency_proof_ranges(m, n))
        verify_consistency(m, n, proof, old_root, root)
        every = n in FULL_FLIP_SIZES
        for j, p in enumerate(proof):
            for bad in flips(p, every, m + j):
                mutated = [*proof[:j], bad, *proof[j + 1 :]]
                msg = rejected(ConsistencyError, verify_consistency, m, n, mutated, old_root, root)
                assert "calculated" in msg
        for bad in flips(old_root, every, m):
            rejected(ConsistencyError, verify_consistency, m, n, proof, bad, root)
        for bad in flips(root, every, m):
            rejected(ConsistencyError, verify_consistency, m, n, proof, old_root, bad)
        for wrong in (proof[:-1], [*proof, root], [root, *proof]):
            if wrong != proof:
                msg = rejected(ConsistencyError, verify_consistency, m, n, wrong, old_root, root)
                assert msg.startswith("wrong proof size")
        if m < n:  # the proof must not connect the new tree to some other old size
            other_root = naive.mth(leaves[: m + 1])
            rejected(ConsistencyError, verify_consistency, m + 1, n, proof, other_root, root)


# --- construction details ---------------------------------------------------------------------


def test_subtree_nodes_examples() -> None:
    assert subtree_nodes(0, 0) == []
    assert subtree_nodes(0, 6) == [NodeID(2, 0), NodeID(1, 2)]
    assert subtree_nodes(3, 13) == [NodeID(0, 3), NodeID(2, 1), NodeID(2, 2), NodeID(0, 12)]
    with pytest.raises(ValueError):
        subtree_nodes(5, 3)


@given(st.integers(0, 1 << 40), st.integers(0, 1 << 40))
def test_subtree_nodes_tile_the_range(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    nodes = subtree_nodes(start, end)
    pos = start
    for i, node in enumerate(nodes):
        assert node.index << node.level == pos  # contiguous, aligned
        pos += 1 << node.level
        if i + 1 < len(nodes) and nodes[i + 1].level == node.level:
            assert node.index & 1  # never two siblings that should have been one node
    assert pos == end
    assert len(nodes) <= 2 * max(end - start, 1).bit_length()


def test_construction_reads_only_listed_nodes() -> None:
    _leaves, nodes = tree(MAX_EXHAUSTIVE)
    read: list[NodeID] = []

    def get_node(level: int, index: int) -> bytes:
        read.append(NodeID(level, index))
        return nodes[level, index]

    prove_inclusion(37, 100, get_node)
    assert read == nodes_for_ranges(inclusion_proof_ranges(37, 100))
    read.clear()
    prove_consistency(37, 100, get_node)
    assert read == nodes_for_ranges(consistency_proof_ranges(37, 100))


def test_construction_rejects_out_of_range() -> None:
    for m, n in ((0, 0), (5, 5), (-1, 5)):
        with pytest.raises(NotFoundError, match=f"leaf index {m} not in tree of size {n}"):
            inclusion_proof_ranges(m, n)
    for m, n in ((0, 5), (6, 5), (0, 0)):
        with pytest.raises(NotFoundError):
            consistency_proof_ranges(m, n)


def test_verify_error_messages() -> None:
    leaves, nodes = tree(MAX_EXHAUSTIVE)
    proof = prove_inclusion(5, 100, getter(nodes, 100))
    root = naive.mth(leaves[:100])
    with pytest.raises(InclusionError, match=r"^wrong proof size 6, want 7$"):
        verify_inclusion(5, 100, leaves[5], proof[:-1], root)
    with pytest.raises(InclusionError, match="proof hash 2: wrong size 31, want 32"):
        verify_inclusion(5, 100, leaves[5], [*proof[:2], proof[2][:31], *proof[3:]], root)
    with pytest.raises(InclusionError, match="leaf hash: wrong size 0, want 32"):
        verify_inclusion(5, 100, b"", proof, root)
    with pytest.raises(InclusionError, match="leaf index 100 not in tree of size 100"):
        root_from_inclusion_proof(100, 100, leaves[5], proof)
    with pytest.raises(ConsistencyError, match="tree size 0 not in"):
        verify_consistency(0, 1, [], root, root)


# --- properties on larger trees ---------------------------------------------------------------

BIG = 1 << 17


def big_root(n: int) -> bytes:
    _, nodes = tree(BIG)
    return naive.mth_from_nodes(nodes, 0, n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_prove_then_verify_inclusion(case: tuple[int, int]) -> None:
    n, m = case
    leaves, nodes = tree(BIG)
    proof = prove_inclusion(m, n, getter(nodes, n))
    verify_inclusion(m, n, leaves[m], proof, big_root(n))
    assert root_from_inclusion_proof(m, n, leaves[m], proof) == big_root(n)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, BIG).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_prove_then_verify_consistency(case: tuple[int, int]) -> None:
    m, n = case
    _, nodes = tree(BIG)
    proof = prove_consistency(m, n, getter(nodes, n))
    verify_consistency(m, n, proof, big_root(m), big_root(n))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3000))
def test_root_hash_matches_naive(n: int) -> None:
    leaves, nodes = tree(BIG)
    assert root_hash(leaves[:n]) == naive.mth(leaves[:n]) == hash_range(0, n, getter(nodes, n))


# --- JSON -------------------------------------------------------------------------------------

hashes32 = st.lists(st.binary(min_size=32, max_size=32), max_size=64).map(tuple)


@given(st.integers(0, 1 << 63), st.integers(0, 1 << 63), hashes32)
def test_json_round_trip(a: int, b: int, hashes: tuple[bytes, ...]) -> None:
    inclusion = InclusionProof(a, b, hashes)
    assert InclusionProof.from_json(json.loads(json.dumps(inclusion.to_json()))) == inclusion
    consistency = ConsistencyProof(a, b, hashes)
    assert ConsistencyProof.from_json(json.loads(json.dumps(consistency.to_json()))) == consistency


def test_json_format() -> None:
    proof = InclusionProof(5, 8, (b"\x00" * 32,))
    assert proof.to_json() == {"leaf_index": 5, "tree_size": 8, "hashes": ["A" * 43 + "="]}
    assert ConsistencyProof(6, 8, ()).to_json() == {"first": 6, "second": 8, "hashes": []}


GOOD = b64encode(b"\x01" * 32).decode()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "want a JSON object"),
        ({"tree_size": 8, "hashes": []}, "leaf_index: missing"),
        ({"leaf_index": "5", "tree_size": 8, "hashes": []}, "leaf_index: want a non-negative"),
        ({"leaf_index": -1, "tree_size": 8, "hashes": []}, "leaf_index: want a non-negative"),
        ({"leaf_index": True, "tree_size": 8, "hashes": []}, "leaf_index: want a non-negative"),
        ({"leaf_index": 5, "tree_size": 8.0, "hashes": []}, "tree_size: want a non-negative"),
        ({"leaf_index": 5, "tree_size": 8}, "hashes: want a list"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": GOOD}, "hashes: want a list"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": [GOOD, 7]}, r"hashes\[1\]: want standard"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": ["!!!!"]}, r"hashes\[0\]: want standard"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": [GOOD[:-1]]}, r"hashes\[0\]: want standard"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": ["é"]}, r"hashes\[0\]: want standard"),
        ({"leaf_index": 5, "tree_size": 8, "hashes": ["AAAA"]}, r"hashes\[0\]: wrong size 3"),
    ],
)
def test_inclusion_from_json_rejects(obj: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        InclusionProof.from_json(obj)


def test_consistency_from_json_rejects() -> None:
    with pytest.raises(FormatError, match="consistency proof: second: missing"):
        ConsistencyProof.from_json({"first": 1, "hashes": []})
    with pytest.raises(FormatError, match=r"consistency proof: hashes\[0\]: wrong size 64"):
        ConsistencyProof.from_json(
            {"first": 1, "second": 2, "hashes": [b64encode(bytes(64)).decode()]}
        )


def test_proof_objects_verify() -> None:
    leaves, nodes = tree(MAX_EXHAUSTIVE)
    inc = InclusionProof(3, 7, tuple(prove_inclusion(3, 7, getter(nodes, 7))))
    inc.verify(leaves[3], naive.mth(leaves[:7]))
    con = ConsistencyProof(3, 7, tuple(prove_consistency(3, 7, getter(nodes, 7))))
    con.verify(naive.mth(leaves[:3]), naive.mth(leaves[:7]))
    with pytest.raises(ConsistencyError):
        con.verify(naive.mth(leaves[:4]), naive.mth(leaves[:7]))
