"""Read-side proofs over a ``Store``: node hashes from tiles, inclusion/consistency, receipts."""

from __future__ import annotations

from collections.abc import Callable

from trailseal.core.errors import NotFoundError
from trailseal.core.merkle import prove_consistency, prove_inclusion
from trailseal.core.receipt import Receipt
from trailseal.core.tiles import Tile, node_from_tiles
from trailseal.storage.base import Store


def node_reader(store: Store, log: str) -> Callable[[int, int], bytes]:
    """``get_node(level, index)`` computing any stored perfect node from the log's tiles."""

    def read(tile: Tile) -> bytes:
        return store.read_tile(log, tile.level, tile.index) or b""

    def get_node(level: int, index: int) -> bytes:
        return node_from_tiles(level, index, read)

    return get_node


def signed_size(store: Store, log: str) -> int:
    """Tree size of the latest signed checkpoint (0 if none)."""
    latest = store.latest_checkpoint(log)
    return latest.tree_size if latest else 0


def inclusion_proof(store: Store, log: str, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 proof for ``leaf_index`` in the tree of ``tree_size``."""
    limit = signed_size(store, log)
    if not 0 < tree_size <= limit:
        raise NotFoundError(f"proof: tree_size {tree_size} not in 1..{limit} (latest signed size)")
    if not 0 <= leaf_index < tree_size:
        raise NotFoundError(f"proof: leaf_index {leaf_index} not in 0..{tree_size - 1}")
    return prove_inclusion(leaf_index, tree_size, node_reader(store, log))


def consistency_proof(store: Store, log: str, first: int, second: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 proof that the tree of size ``first`` is a prefix of ``second``."""
    limit = signed_size(store, log)
    if not 0 <= first <= second <= limit:
        raise NotFoundError(
            f"proof: need 0 <= first <= second <= {limit} (latest signed size), "
            f"got first={first} second={second}"
        )
    return prove_consistency(first, second, node_reader(store, log))


def receipt_for(
    store: Store, log: str, leaf_index: int, *, duplicate: bool = False, proof: bool = True
) -> Receipt:
    """The receipt of a committed leaf, against the checkpoint that first covered it."""
    entry = store.get_entry(log, leaf_index)
    record = store.checkpoint_covering(log, leaf_index)
    if entry is None or record is None:
        raise NotFoundError(f"log {log}: leaf {leaf_index} has no entry or covering checkpoint")
    hashes = (
        tuple(prove_inclusion(leaf_index, record.tree_size, node_reader(store, log)))
        if proof
        else None
    )
    return Receipt(
        id=entry.event_id,
        log=log,
        leaf_index=leaf_index,
        leaf_hash=entry.leaf_hash,
        tree_size=record.tree_size,
        checkpoint=record.note.decode(),
        inclusion_proof=hashes,
        duplicate=duplicate,
    )
