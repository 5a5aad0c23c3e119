"""A producer-side log monitor: check every receipt, and that the log only ever grows.

For each receipt it checks the checkpoint's signature with the verifier keys given by the
operator (never keys fetched from the server being checked), that the checkpoint signs the
receipt's ``tree_size`` for a ``.../<log>`` origin, and the RFC 9162 §2.1.3.2 inclusion proof from
the leaf hash to that root. It keeps the newest checkpoint it has verified per log (in the spool,
so across restarts) and demands a consistency proof (RFC 9162 §2.1.4.2) for every checkpoint of
another size — larger (the log grew) or smaller (an older checkpoint, as a duplicate's receipt
carries): a server that forks or rolls back the log is caught by the producer that fed it.
Every failure is a :class:`~trailseal.core.errors.VerificationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.errors import VerificationError
from trailseal.core.merkle import verify_consistency, verify_inclusion
from trailseal.core.note import VerifierSet, parse_verifier_key
from trailseal.core.receipt import Receipt

__all__ = ["ReceiptMonitor"]

FetchConsistency = Callable[[str, int, int], list[bytes]]


class ReceiptMonitor:
    """Verifies receipts and checkpoint consistency; see the module docstring.

    ``verifier_keys`` are ``name+hash+base64`` strings (``trailseal signing-key show``).
    ``fetch_consistency(log, first, second)`` returns the proof hashes; ``load``/``save`` keep the
    newest verified checkpoint per log (signed note bytes).
    """

    def __init__(
        self,
        verifier_keys: Iterable[str] | VerifierSet,
        fetch_consistency: FetchConsistency,
        *,
        load: Callable[[str], bytes | None] = lambda log: None,
        save: Callable[[str, bytes], None] = lambda log, note: None,
    ) -> None:
        self.verifiers = (
            verifier_keys if isinstance(verifier_keys, VerifierSet)
            else VerifierSet(parse_verifier_key(key) for key in verifier_keys)
        )
        if not len(self.verifiers):
            raise ValueError("receipt monitor: no verifier keys")
        self._fetch = fetch_consistency
        self._load, self._save = load, save
        self._opened: dict[str, Checkpoint] = {}  # note text → verified checkpoint
        self._latest: dict[str, Checkpoint] = {}  # log → newest verified checkpoint
        self._consistent: set[tuple[str, int, bytes]] = set()  # checked against _latest's lineage
        self.checked = 0

    def check(self, receipts: Sequence[Receipt]) -> None:
        """Verify each receipt; raises ``VerificationError`` at the first failure."""
        for receipt in receipts:
            checkpoint = self._open(receipt)
            if receipt.inclusion_proof is None:
                raise VerificationError(f"receipt {receipt.id}: no inclusion_proof (send with proofs=true)")
            verify_inclusion(receipt.leaf_index, receipt.tree_size, receipt.leaf_hash,
                             list(receipt.inclusion_proof), checkpoint.root_hash)
            self._follow(receipt.log, checkpoint, receipt.checkpoint)
            self.checked += 1

    def latest(self, log: str) -> Checkpoint | None:
        """The newest checkpoint verified for ``log``."""
        return self._latest.get(log)

    def _open(self, receipt: Receipt) -> Checkpoint:
        checkpoint = self._opened.get(receipt.checkpoint)
        if checkpoint is None:
            checkpoint, _ = open_checkpoint(receipt.checkpoint.encode(), self.verifiers)
            if not checkpoint.origin.endswith("/" + receipt.log):
                raise VerificationError(
                    f"receipt {receipt.id}: checkpoint origin {checkpoint.origin!r} is not for log {receipt.log!r}"
                )
            if len(self._opened) > 1000:
                self._opened.clear()
            self._opened[receipt.checkpoint] = checkpoint
        if checkpoint.tree_size != receipt.tree_size:
            raise VerificationError(
                f"receipt {receipt.id}: tree_size {receipt.tree_size} but its checkpoint signs {checkpoint.tree_size}"
            )
        return checkpoint

    def _follow(self, log: str, checkpoint: Checkpoint, note: str) -> None:
        """Check ``checkpoint`` against the newest one verified; advance to it if newer."""
        latest = self._latest.get(log)
        if latest is None:
            saved = self._load(log)
            if saved is None:  # the first checkpoint this producer sees: trust on first use
                self._advance(log, checkpoint, note)
                return
            latest = open_checkpoint(saved, self.verifiers)[0]
            self._latest[log] = latest
        key = (log, checkpoint.tree_size, checkpoint.root_hash)
        if key in self._consistent:
            return
        if checkpoint.tree_size == latest.tree_size:
            if checkpoint.root_hash != latest.root_hash:
                raise VerificationError(
                    f"log {log}: two checkpoints of size {checkpoint.tree_size} with different roots (a fork)"
                )
        elif checkpoint.tree_size > latest.tree_size:
            if latest.tree_size > 0:
                proof = self._fetch(log, latest.tree_size, checkpoint.tree_size)
                verify_consistency(latest.tree_size, checkpoint.tree_size, proof, latest.root_hash, checkpoint.root_hash)
            self._advance(log, checkpoint, note)
        elif checkpoint.tree_size > 0:
            proof = self._fetch(log, checkpoint.tree_size, latest.tree_size)
            verify_consistency(checkpoint.tree_size, latest.tree_size, proof, checkpoint.root_hash, latest.root_hash)
        self._consistent.add(key)

    def _advance(self, log: str, checkpoint: Checkpoint, note: str) -> None:
        # Checkpoints already proven consistent with the old latest stay consistent with this
        # one, which extends it: the cache of checked (size, root) pairs stays valid.
        self._latest[log] = checkpoint
        if len(self._consistent) > 10_000:
            self._consistent.clear()
        self._consistent.add((log, checkpoint.tree_size, checkpoint.root_hash))
        self._save(log, note.encode())
