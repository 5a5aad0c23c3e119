"""``LogSequencer``: the synchronous heart of one log's single writer.

It owns the log's in-memory frontier — the compact range of the tree and the right-edge tile of
every tile level — and turns a batch of prepared events into one store transaction:

1. drop retries of already-sequenced ids (same content → original receipt; different content →
   :class:`~trailseal.core.errors.ConflictError` for that request only);
2. give the rest consecutive leaf indexes and append their leaf hashes to the compact range,
   collecting every completed node at a tile level (tree levels 0, 8, 16, ...);
3. ask the store to write entries and tiles and, inside the same transaction, *recompute the new
   root from the stored tiles* and compare it with the frontier's before signing the checkpoint
   (ARCHITECTURE.md §3, invariant 3). Any mismatch aborts the transaction.

Only after the store has committed (fsync) does the frontier advance and are receipts returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trailseal.core.checkpoint import Checkpoint, sign_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.errors import ConflictError, VerificationError
from trailseal.core.keys import Keyring
from trailseal.core.merkle import prove_inclusion
from trailseal.core.slots import maker
from trailseal.core.tiles import TILE_HEIGHT, TILE_WIDTH, node_from_tiles
from trailseal.sequencer.types import Item, Receipt
from trailseal.storage.base import CheckpointRecord, LeafEntry, Store, TileReader, TileWrite
from trailseal.storage.proofs import node_reader, receipt_for

_HASH = 32


@dataclass
class Request:
    """One producer request: its events succeed or fail together."""

    events: Sequence[Item]
    want_proofs: bool = False
    receipts: list[Receipt] | None = None
    error: BaseException | None = None


_make_entry = maker(LeafEntry)  # values from the sequencer itself and a checked envelope
_make_receipt = maker(Receipt)


def _leaf_entry(log: str, leaf_index: int, item: Item) -> LeafEntry:
    c = item.leaf_columns()  # id, then LeafEntry's fields from time on, in its order
    return _make_entry((log, leaf_index, c[0], item.leaf_hash, item.content_hash, item.body, *c[1:]))


class LogSequencer:
    """Sequences batches for one log. Not thread-safe: exactly one thread drives it."""

    def __init__(
        self,
        store: Store,
        log: str,
        origin: str,
        keyring: Keyring,
        clock: Callable[[], str],
    ) -> None:
        self.store = store
        self.log = log
        self.origin = origin
        self.keyring = keyring
        self.clock = clock
        self._restore()

    # -- frontier ----------------------------------------------------------------------------
    def _get_node(self, level: int, index: int) -> bytes:
        return node_reader(self.store, self.log)(level, index)

    def _restore(self) -> None:
        """Rebuild the frontier from the store and check it against the latest checkpoint."""
        size = self.store.tree_size(self.log)
        latest = self.store.latest_checkpoint(self.log)
        if latest is not None and latest.tree_size != size:
            raise VerificationError(
                f"log {self.log}: stored tree size {size} does not match latest checkpoint size "
                f"{latest.tree_size}; run `trailseal verify` before serving this log"
            )
        self.range = CompactRange.from_nodes(size, self._get_node) if size else CompactRange()
        if latest is not None and self.range.root_hash() != latest.root_hash:
            raise VerificationError(
                f"log {self.log}: root recomputed from stored tiles does not match the checkpoint "
                f"at size {size}; run `trailseal verify`"
            )
        # The right-edge (partial) tile of each tile level, as the hashes it holds so far.
        self.edges: dict[int, bytearray] = {}
        level = 0
        while (size >> (TILE_HEIGHT * level)) > 0:
            count = size >> (TILE_HEIGHT * level)  # nodes stored at tree level 8*level
            width = count % TILE_WIDTH
            data = bytearray()
            if width:
                stored = self.store.read_tile(self.log, level, count // TILE_WIDTH) or b""
                data = bytearray(stored[: width * _HASH])
            self.edges[level] = data
            level += 1

    @property
    def tree_size(self) -> int:
        """Leaves sequenced and committed."""
        return self.range.end

    # -- batches -----------------------------------------------------------------------------
    def _dedupe(self, requests: Sequence[Request]) -> list[tuple[Request, list[Item | Receipt]]]:
        """Resolve retries; returns per surviving request its fresh events or prior receipts."""
        ids = [item.event_id for req in requests for item in req.events]
        stored = self.store.lookup_ids(self.log, ids) if ids else {}
        seen: dict[str, bytes] = {}
        plan: list[tuple[Request, list[Item | Receipt]]] = []
        for req in requests:
            parts: list[Item | Receipt] = []
            try:
                for item in req.events:
                    event_id = item.event_id
                    if event_id in stored:
                        leaf_index, content_hash = stored[event_id]
                        if content_hash != item.content_hash:
                            raise ConflictError(
                                f"event {event_id}: id already used for different content "
                                f"(leaf {leaf_index})",
                                event_id=event_id,
                            )
                        parts.append(self.receipt_for(leaf_index, duplicate=True, proof=req.want_proofs))
                    elif event_id in seen:
                        if seen[event_id] != item.content_hash:
                            raise ConflictError(
                                f"event {event_id}: id sent twice with different content",
                                event_id=event_id,
                            )
                        parts.append(item)  # resolved to the first copy after commit
                    else:
                        parts.append(item)
                for part in parts:
                    if not isinstance(part, Receipt):
                        seen.setdefault(part.event_id, part.content_hash)
            except ConflictError as exc:
                req.error = exc
                continue
            plan.append((req, parts))
        return plan

    def commit(self, requests: Sequence[Request]) -> None:
        """Sequence ``requests`` in one transaction; fill each request's receipts or error."""
        plan = self._dedupe(requests)
        work = self.range.copy()
        nodes: dict[tuple[int, int], bytes] = {}
        edges = {level: bytearray(data) for level, data in self.edges.items()}
        touched: set[int] = set()
        entries: list[LeafEntry] = []
        index_of: dict[str, int] = {}

        def visit(level: int, index: int, digest: bytes) -> None:
            nodes[(level, index)] = digest
            if level % TILE_HEIGHT == 0:
                tile_level = level // TILE_HEIGHT
                edge = edges.setdefault(tile_level, bytearray())
                edge += digest
                touched.add(tile_level)

        tiles: list[TileWrite] = []
        log = self.log
        for _req, parts in plan:
            for item in parts:
                if isinstance(item, Receipt):
                    continue
                event_id = item.event_id
                if event_id in index_of:
                    continue
                leaf_index = work.end
                index_of[event_id] = leaf_index
                entries.append(_leaf_entry(log, leaf_index, item))
                work.append(item.leaf_hash, visit)
                # Full tiles are cut off the edge as soon as they fill; a tile at any level fills
                # only when the tree size reaches a multiple of TILE_WIDTH.
                if work.end % TILE_WIDTH == 0:
                    for tile_level in list(touched):
                        edge = edges[tile_level]
                        if len(edge) == TILE_WIDTH * _HASH:
                            count = work.end >> (TILE_HEIGHT * tile_level)
                            tiles.append(TileWrite(tile_level, count // TILE_WIDTH - 1, bytes(edge)))
                            edges[tile_level] = bytearray()
                            touched.discard(tile_level)
        if not entries:
            self._finish(plan, index_of, None, nodes)
            return
        new_size = work.end
        for tile_level in touched:
            count = new_size >> (TILE_HEIGHT * tile_level)
            tiles.append(TileWrite(tile_level, count // TILE_WIDTH, bytes(edges[tile_level])))
        root = work.root_hash()

        def sign(read_tile: TileReader) -> CheckpointRecord:
            # Invariant 3: recompute the root from what the transaction stored, not from memory.
            def stored_node(level: int, index: int) -> bytes:
                return node_from_tiles(
                    level, index, lambda tile: read_tile(tile.level, tile.index) or b""
                )

            recomputed = CompactRange.from_nodes(new_size, stored_node).root_hash()
            if recomputed != root:
                raise VerificationError(
                    f"log {self.log}: root recomputed from stored tiles at size {new_size} "
                    f"differs from the sequencer's; refusing to sign"
                )
            checkpoint = Checkpoint(self.origin, new_size, root)
            note = sign_checkpoint(checkpoint, self.keyring.signer)
            return CheckpointRecord(self.log, new_size, root, note, self.clock())

        record = self.store.append(self.log, entries, tiles, sign)
        # Committed: advance the frontier.
        self.range = work
        self.edges = edges
        self._finish(plan, index_of, record, nodes)

    def _finish(
        self,
        plan: list[tuple[Request, list[Item | Receipt]]],
        index_of: dict[str, int],
        record: CheckpointRecord | None,
        nodes: dict[tuple[int, int], bytes],
    ) -> None:
        def get_node(level: int, index: int) -> bytes:
            got = nodes.get((level, index))
            if got is not None:
                return got
            return self._get_node(level, index)

        note = record.note.decode() if record is not None else ""
        log = self.log
        for req, parts in plan:
            receipts: list[Receipt] = []
            for item in parts:
                if isinstance(item, Receipt):
                    receipts.append(item)
                    continue
                assert record is not None
                event_id = item.event_id
                leaf_index = index_of[event_id]
                proof = (
                    tuple(prove_inclusion(leaf_index, record.tree_size, get_node))
                    if req.want_proofs
                    else None
                )
                receipts.append(
                    _make_receipt(
                        (event_id, log, leaf_index, item.leaf_hash, record.tree_size, note, proof, False)
                    )
                )
            req.receipts = receipts

    def receipt_for(self, leaf_index: int, *, duplicate: bool = False, proof: bool = True) -> Receipt:
        """The receipt of an already committed leaf, against the checkpoint that first covered it."""
        return receipt_for(self.store, self.log, leaf_index, duplicate=duplicate, proof=proof)
