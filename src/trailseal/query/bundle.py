"""Writing evidence bundles (format and verification: :mod:`trailseal.verify.bundle`).

The bundle's checkpoint is the log's latest signed one, read *before* the events, and the
selection is restricted to leaves below its size, so every event is provable against it even
while ingest continues. Proofs are built from the stored tiles through a per-bundle tile cache
(a proof touches ~log2(n) nodes, and neighbouring events share most of them). The checkpoints
that first covered the selected events — what their receipts carry — are appended with
consistency proofs to the bundle's checkpoint, up to :data:`MAX_EARLIER_CHECKPOINTS`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

from trailseal.core.errors import NotFoundError
from trailseal.core.merkle import prove_consistency, prove_inclusion
from trailseal.core.tiles import node_from_tiles
from trailseal.query.ast import Compare, Node, all_of
from trailseal.query.fields import FIELDS
from trailseal.query.search import SearchStore, iter_matches
from trailseal.storage.base import CheckpointRecord, Store
from trailseal.verify.bundle import (
    format_checkpoint_record,
    format_event_record,
    format_header,
    format_pruned_record,
    format_trailer,
)

MAX_EARLIER_CHECKPOINTS = 256
DEFAULT_MAX_EVENTS = 100_000


def write_bundle(
    store: Store,
    search: SearchStore,
    log: str,
    query: Node,
    *,
    q: str,
    verifier_keys: Sequence[str],
    created_at: str,
    limit: int = DEFAULT_MAX_EVENTS,
    chunk: int = 200,
) -> Iterator[bytes]:
    """The bundle of the events of ``log`` matching ``query`` (oldest first), in byte chunks."""
    info = store.get_log(log)
    latest = store.latest_checkpoint(log)
    if info is None or latest is None:
        raise NotFoundError(f"log {log!r} has no signed checkpoint to prove events against")
    size = latest.tree_size

    @functools.lru_cache(maxsize=8192)
    def read_tile(level: int, index: int) -> bytes:
        return store.read_tile(log, level, index) or b""

    def get_node(level: int, index: int) -> bytes:
        return node_from_tiles(level, index, lambda tile: read_tile(tile.level, tile.index))

    selection = all_of([query, Compare(FIELDS["leaf_index"], "<", size)])
    yield format_header(log=log, origin=info.origin, tree_size=size, verifier_keys=verifier_keys,
                        query=q, created_at=created_at)
    yield format_checkpoint_record(latest.note, size, [])
    earlier: dict[int, CheckpointRecord] = {}
    cover: CheckpointRecord | None = None
    last_leaf = -1
    events = 0
    parts: list[bytes] = []
    for entry in iter_matches(search, log, selection, order="oldest", limit=limit):
        proof = prove_inclusion(entry.leaf_index, size, get_node)
        mark = entry.pruned
        if mark is None:
            parts.append(format_event_record(entry.body, entry.leaf_index, proof))
        else:
            why = {"policy": mark.policy, "pruned_at": mark.pruned_at, "segment": mark.segment}
            parts.append(format_pruned_record(entry.event_id, entry.leaf_index, entry.leaf_hash,
                                              why, proof))
        events += 1
        # The smallest checkpoint covering a leaf still covers any later leaf below its size.
        if cover is None or not last_leaf <= entry.leaf_index < cover.tree_size:
            cover = store.checkpoint_covering(log, entry.leaf_index)
        last_leaf = entry.leaf_index
        if (cover is not None and cover.tree_size < size and cover.tree_size not in earlier
                and len(earlier) < MAX_EARLIER_CHECKPOINTS):
            earlier[cover.tree_size] = cover
        if len(parts) >= chunk:
            yield b"".join(parts)
            parts = []
    if parts:
        yield b"".join(parts)
    for tree_size in sorted(earlier):
        yield format_checkpoint_record(earlier[tree_size].note, tree_size,
                                       prove_consistency(tree_size, size, get_node))
    yield format_trailer(1 + len(earlier), events)

