"""ReceiptMonitor: receipts verify, the log only grows, forks and rollbacks are caught."""

from __future__ import annotations

import hashlib

import pytest

from trailseal.core.checkpoint import Checkpoint, sign_checkpoint
from trailseal.core.errors import VerificationError
from trailseal.core.hashing import leaf_hash
from trailseal.core.merkle import prove_consistency, prove_inclusion, root_hash
from trailseal.core.note import Ed25519Signer, format_verifier_key
from trailseal.core.receipt import Receipt
from trailseal.sdk import ReceiptMonitor

ORIGIN = "test.example/default"


class FakeLog:
    """A log of leaves with signed checkpoints, receipts and consistency proofs."""

    def __init__(self, leaves: list[bytes], signer: Ed25519Signer) -> None:
        self.leaves = leaves
        self.signer = signer

    def node(self, level: int, index: int) -> bytes:
        return root_hash(self.leaves[index << level:(index + 1) << level])

    def note(self, size: int) -> str:
        return sign_checkpoint(Checkpoint(ORIGIN, size, root_hash(self.leaves[:size])), self.signer).decode()

    def receipt(self, index: int, size: int, *, proof: list[bytes] | None = None) -> Receipt:
        return Receipt(id=f"e{index}", log="default", leaf_index=index, leaf_hash=self.leaves[index], tree_size=size,
                       checkpoint=self.note(size),
                       inclusion_proof=tuple(proof if proof is not None else prove_inclusion(index, size, self.node)))

    def consistency(self, log: str, first: int, second: int) -> list[bytes]:
        return prove_consistency(first, second, self.node)


def leaves(count: int, salt: str = "") -> list[bytes]:
    return [leaf_hash(f"{salt}{n}".encode()) for n in range(count)]


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.from_seed(ORIGIN, hashlib.sha256(b"seed").digest())


def monitor_for(log: FakeLog, signer: Ed25519Signer, store: dict[str, bytes] | None = None) -> ReceiptMonitor:
    saved = store if store is not None else {}
    return ReceiptMonitor([format_verifier_key(signer.verifier())], log.consistency,
                          load=saved.get, save=saved.__setitem__)


def test_receipts_and_growing_checkpoints_verify(signer: Ed25519Signer) -> None:
    log = FakeLog(leaves(40), signer)
    monitor = monitor_for(log, signer)
    monitor.check([log.receipt(i, 10) for i in range(10)])
    monitor.check([log.receipt(i, 25) for i in range(10, 25)])
    monitor.check([log.receipt(3, 10)])  # a duplicate's receipt carries the older checkpoint
    monitor.check([log.receipt(i, 40) for i in range(25, 40)])
    latest = monitor.latest("default")
    assert latest is not None and latest.tree_size == 40 and monitor.checked == 41


def test_bad_inclusion_proof_fails(signer: Ed25519Signer) -> None:
    log = FakeLog(leaves(8), signer)
    proof = prove_inclusion(2, 8, log.node)
    proof[0] = bytes(32)
    with pytest.raises(VerificationError):
        monitor_for(log, signer).check([log.receipt(2, 8, proof=proof)])


def test_wrong_key_and_wrong_size_fail(signer: Ed25519Signer) -> None:
    log = FakeLog(leaves(8), signer)
    other = Ed25519Signer.from_seed(ORIGIN, hashlib.sha256(b"other").digest())
    with pytest.raises(VerificationError):
        monitor_for(log, other).check([log.receipt(1, 8)])
    receipt = log.receipt(1, 8)
    lying = Receipt(receipt.id, receipt.log, receipt.leaf_index, receipt.leaf_hash, 9, receipt.checkpoint,
                    receipt.inclusion_proof)
    with pytest.raises(VerificationError, match="tree_size 9"):
        monitor_for(log, signer).check([lying])


def test_a_fork_is_caught_by_the_consistency_proof(signer: Ed25519Signer) -> None:
    honest = FakeLog(leaves(20), signer)
    store: dict[str, bytes] = {}
    monitor_for(honest, signer, store).check([honest.receipt(5, 10)])
    # The server rewrites leaf 3 and keeps appending: a new monitor (restarted producer) that
    # remembers the old checkpoint must refuse the new one.
    forked_leaves = leaves(20)
    forked_leaves[3] = leaf_hash(b"rewritten")
    forked = FakeLog(forked_leaves, signer)
    with pytest.raises(VerificationError):
        monitor_for(forked, signer, store).check([forked.receipt(15, 20)])


def test_same_size_different_root_is_a_fork(signer: Ed25519Signer) -> None:
    log = FakeLog(leaves(10), signer)
    other = FakeLog(leaves(10, salt="x"), signer)
    monitor = monitor_for(log, signer)
    monitor.check([log.receipt(1, 10)])
    with pytest.raises(VerificationError, match="fork"):
        monitor.check([other.receipt(1, 10)])


def test_origin_must_name_the_receipts_log(signer: Ed25519Signer) -> None:
    log = FakeLog(leaves(4), signer)
    receipt = log.receipt(0, 4)
    elsewhere = Receipt(receipt.id, "billing", 0, receipt.leaf_hash, 4, receipt.checkpoint, receipt.inclusion_proof)
    with pytest.raises(VerificationError, match="not for log 'billing'"):
        monitor_for(log, signer).check([elsewhere])


def test_needs_keys() -> None:
    with pytest.raises(ValueError):
        ReceiptMonitor([], lambda log, a, b: [])
