"""The archive segment format: the range proof against a naive tree, and every named mutation."""

from __future__ import annotations

import hashlib

import pytest
import zstandard

from tests.core import naive
from trailseal.core.checkpoint import Checkpoint, sign_checkpoint
from trailseal.core.errors import VerificationError
from trailseal.core.keys import Keyring
from trailseal.core.merkle import root_hash, subtree_nodes
from trailseal.verify.archive import (
    Manifest,
    chain_problems,
    check_segment,
    data_name,
    format_manifest,
    manifest_json,
    open_manifest,
    range_root,
    segment_id,
)

ORIGIN = "test.example/default"
KEYS = Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z")
LEAVES = [naive.leaf(f'{{"id":"e{i}","log":"default"}}'.encode()) for i in range(40)]


def node(level: int, index: int) -> bytes:
    return naive.mth(tuple(LEAVES[index << level : (index + 1) << level]))


@pytest.mark.parametrize("tree_size", [*range(1, 18), 31, 32, 33])
def test_range_root_matches_the_naive_tree_for_every_range(tree_size: int) -> None:
    want = naive.mth(tuple(LEAVES[:tree_size]))
    for start in range(tree_size):
        for end in range(start + 1, tree_size + 1):
            left = [node(n.level, n.index) for n in subtree_nodes(0, start)]
            right = [node(n.level, n.index) for n in subtree_nodes(end, tree_size)]
            assert range_root(start, LEAVES[start:end], left, right, tree_size) == want
            if right:  # any flipped byte of any proof hash changes the root
                bad = [bytearray(h) for h in right]
                bad[-1][0] ^= 1
                assert range_root(start, LEAVES[start:end], left, [bytes(b) for b in bad],
                                  tree_size) != want


def test_range_root_refuses_wrong_counts() -> None:
    with pytest.raises(VerificationError, match="left and"):
        range_root(4, LEAVES[4:6], [], [], 8)


def segment(start: int, end: int, tree_size: int) -> tuple[bytes, bytes]:
    """A valid (manifest note, data) pair for leaves [start, end) of a tree of tree_size."""
    lines = [f'{{"id":"e{i}","log":"default"}}'.encode() for i in range(start, end)]
    ndjson = b"".join(line + b"\n" for line in lines)
    data = zstandard.ZstdCompressor().compress(ndjson)
    note = sign_checkpoint(Checkpoint(ORIGIN, tree_size, naive.mth(tuple(LEAVES[:tree_size]))),
                           KEYS.signer)
    manifest = Manifest(
        log="default", origin=ORIGIN, start=start, end=end, created_at="2026-01-01T00:00:00Z",
        data_name=data_name(start, end), data_sha256=hashlib.sha256(data).digest(),
        data_bytes=len(data), ndjson_sha256=hashlib.sha256(ndjson).digest(),
        ndjson_bytes=len(ndjson), leaf_hashes=tuple(LEAVES[start:end]),
        segment_hash=root_hash(LEAVES[start:end]), checkpoint=note.decode(), tree_size=tree_size,
        left=tuple(node(n.level, n.index) for n in subtree_nodes(0, start)),
        right=tuple(node(n.level, n.index) for n in subtree_nodes(end, tree_size)),
    )
    return format_manifest(manifest, KEYS.signer), data


def test_manifest_round_trip_and_a_valid_segment_verifies() -> None:
    note, data = segment(5, 17, 30)
    manifest = open_manifest(note, KEYS.verifiers())
    assert (manifest.start, manifest.end, manifest.tree_size) == (5, 17, 30)
    assert manifest_json(note)["segment"] == segment_id(5, 17)
    check = check_segment(segment_id(5, 17), note, data, KEYS.verifiers(), log="default")
    assert check.ok, check.problems
    assert len(check.lines) == 12


def _flip_text(note: bytes, old: bytes, new: bytes) -> bytes:
    assert old in note
    return note.replace(old, new, 1)


MUTATIONS = {
    "one byte of the data": lambda note, data: (note, data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]),
    "data missing": lambda note, data: (note, None),
    "truncated data": lambda note, data: (note, data[: len(data) // 2]),
    "manifest text edited": lambda note, data: (_flip_text(note, b'"created_at":"2026', b'"created_at":"2027'), data),
    "manifest signature removed": lambda note, data: (note[: note.index(b"\n\n") + 2], data),
    "manifest signed by another key": lambda note, data: (
        format_manifest(open_manifest(note, KEYS.verifiers()),
                        Keyring.generate(ORIGIN, "2026-01-01T00:00:00Z").signer), data),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mutation_is_detected(mutation: str) -> None:
    note, data = segment(5, 17, 30)
    bad_note, bad_data = MUTATIONS[mutation](note, data)
    check = check_segment(segment_id(5, 17), bad_note, bad_data, KEYS.verifiers(), log="default")
    assert not check.ok, mutation
    assert check.problems


def test_an_event_swapped_with_consistent_data_hashes_is_still_caught() -> None:
    """Rewrite one event and recompute the data hashes: the signed leaf hashes catch it."""
    note, _ = segment(0, 8, 8)
    manifest = open_manifest(note, KEYS.verifiers())
    lines = [f'{{"id":"e{i}","log":"default"}}'.encode() for i in range(8)]
    lines[3] = b'{"id":"e3","log":"forged"}'
    ndjson = b"".join(line + b"\n" for line in lines)
    data = zstandard.ZstdCompressor().compress(ndjson)
    forged = Manifest(**{**manifest.__dict__, "data_sha256": hashlib.sha256(data).digest(),
                         "ndjson_sha256": hashlib.sha256(ndjson).digest(),
                         "data_bytes": len(data), "ndjson_bytes": len(ndjson)})
    check = check_segment(segment_id(0, 8), format_manifest(forged, KEYS.signer), data,
                          KEYS.verifiers())
    assert any("leaf 3" in p for p in check.problems)


def test_a_manifest_with_wrong_leaf_hashes_fails_the_proof() -> None:
    note, data = segment(0, 8, 8)
    manifest = open_manifest(note, KEYS.verifiers())
    other = list(manifest.leaf_hashes)
    other[2] = hashlib.sha256(b"x").digest()
    forged = Manifest(**{**manifest.__dict__, "leaf_hashes": tuple(other),
                         "segment_hash": root_hash(other)})
    check = check_segment(segment_id(0, 8), format_manifest(forged, KEYS.signer), data,
                          KEYS.verifiers())
    assert any("do not lead to the root" in p for p in check.problems)


def test_chain_across_segments() -> None:
    checks = [check_segment(segment_id(s, e), *segment(s, e, 30), KEYS.verifiers())
              for s, e in ((0, 7), (7, 20), (20, 25))]
    assert all(c.ok for c in checks)
    assert chain_problems(checks) == []
    assert "gap" in chain_problems([checks[0], checks[2]])[0]
