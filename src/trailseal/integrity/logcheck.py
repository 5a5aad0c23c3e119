"""``check_log``: recompute a stored log from its events and hold it against its signatures.

What is checked, in leaf order:

1. leaf indexes are contiguous from 0 (a deleted row is reported as missing at its index);
2. each stored body re-hashes (RFC 6962 §2.1, ``SHA-256(0x00 || body)``) to the stored leaf hash
   and to the leaf hash in the level-0 tile, and names the event id and log it is stored under;
3. every stored node at a tile level (tree levels 8, 16, ...) equals the node recomputed from the
   bodies;
4. every stored checkpoint's signature verifies with the log's verifier keys, its body matches its
   row, and its root equals the root recomputed from the bodies at its size. Since all roots come
   from one leaf sequence, successive checkpoints are consistent (append-only) when this holds;
   when a root differs while every leaf matched its stored hashes, the leaves were rewritten
   together with their hashes, and the smallest signed range ``[previous size, size)`` that must
   contain the change is reported;
5. with a trusted checkpoint kept outside the store: the log is not shorter than it (truncation or
   rollback) and its root matches (no fork).

A leaf pruned by retention (docs/retention.md) has a tombstone instead of its body: it is
checked through its stored leaf hash against the level-0 tile and the signed roots, and counted
in ``leaves_pruned`` — but only when a prune record vouches for exactly that tombstone; a
tombstone without one is a ``pruned-without-record`` finding, and a body deleted or emptied any
other way still fails as ``leaf-mismatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trailseal.core.canonical import loads
from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.hashing import leaf_hash
from trailseal.core.note import VerifierSet
from trailseal.core.tiles import TILE_HEIGHT, TILE_WIDTH
from trailseal.storage.base import Store
from trailseal.storage.retention import prune_record_reader

_HASH = 32


@dataclass(frozen=True)
class Finding:
    """One problem: ``kind`` is a short code, ``leaf_index`` or ``leaf_range`` locate it."""

    kind: str
    detail: str
    leaf_index: int | None = None
    leaf_range: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"kind": self.kind, "detail": self.detail}
        if self.leaf_index is not None:
            out["leaf_index"] = self.leaf_index
        if self.leaf_range is not None:
            out["leaf_range"] = list(self.leaf_range)
        return out


@dataclass
class Report:
    """Outcome of :func:`check_log`. ``ok`` only when there is no finding."""

    log: str
    tree_size: int = 0
    leaves_checked: int = 0
    leaves_pruned: int = 0
    checkpoints_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    root_hash: bytes | None = None

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return not self.findings

    @property
    def first_bad_leaf(self) -> int | None:
        """The smallest leaf index named exactly by a finding, else the start of the first range."""
        exact = [f.leaf_index for f in self.findings if f.leaf_index is not None]
        if exact:
            return min(exact)
        places = [
            f.leaf_index if f.leaf_index is not None else f.leaf_range[0]  # type: ignore[index]
            for f in self.findings
            if f.leaf_index is not None or f.leaf_range is not None
        ]
        return min(places) if places else None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "log": self.log,
            "ok": self.ok,
            "tree_size": self.tree_size,
            "leaves_checked": self.leaves_checked,
            "leaves_pruned": self.leaves_pruned,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_leaf": self.first_bad_leaf,
            "findings": [f.to_json() for f in self.findings],
        }


Progress = Callable[[int, int], None]


def check_log(
    store: Store,
    log: str,
    verifiers: VerifierSet,
    *,
    trusted: bytes | None = None,
    progress: Progress | None = None,
    max_findings: int = 100,
) -> Report:
    """Run every check on ``log``; ``trusted`` is a signed checkpoint note kept elsewhere."""
    report = Report(log=log)
    info = store.get_log(log)
    checkpoints = list(store.iter_checkpoints(log))
    stored_size = store.tree_size(log)
    signed_size = checkpoints[-1].tree_size if checkpoints else 0
    total = max(stored_size, signed_size)
    report.tree_size = total

    def add(finding: Finding) -> None:
        if len(report.findings) < max_findings:
            report.findings.append(finding)

    # Tile nodes above level 0 recomputed as the tree grows, compared tile by tile.
    tile_cache: dict[tuple[int, int], bytes | None] = {}

    def stored_tile(tile_level: int, tile_index: int) -> bytes | None:
        key = (tile_level, tile_index)
        if key not in tile_cache:
            if len(tile_cache) > 64:
                tile_cache.clear()
            tile_cache[key] = store.read_tile(log, tile_level, tile_index)
        return tile_cache[key]

    def visit(level: int, index: int, digest: bytes) -> None:
        if level == 0 or level % TILE_HEIGHT:
            return
        tile_level = level // TILE_HEIGHT
        data = stored_tile(tile_level, index // TILE_WIDTH)
        offset = (index % TILE_WIDTH) * _HASH
        if data is None or data[offset : offset + _HASH] != digest:
            first = index << level
            add(
                Finding(
                    "tile-mismatch",
                    f"stored node at level {level} index {index} differs from the events "
                    f"(tile {tile_level}/{index // TILE_WIDTH})",
                    leaf_range=(first, first + (1 << level)),
                )
            )

    # Checkpoints: parse and verify signatures first, so roots can be compared as we go.
    signed: dict[int, Checkpoint] = {}
    for record in checkpoints:
        report.checkpoints_checked += 1
        try:
            checkpoint, _note = open_checkpoint(record.note, verifiers)
        except (VerificationError, FormatError) as exc:
            add(Finding("bad-checkpoint", f"checkpoint at size {record.tree_size}: {exc}"))
            continue
        if info is not None and checkpoint.origin != info.origin:
            add(
                Finding(
                    "bad-checkpoint",
                    f"checkpoint at size {record.tree_size}: origin {checkpoint.origin!r}, "
                    f"want {info.origin!r}",
                )
            )
        if checkpoint.tree_size != record.tree_size or checkpoint.root_hash != record.root_hash:
            add(
                Finding(
                    "bad-checkpoint",
                    f"checkpoint row at size {record.tree_size} does not match its signed note "
                    f"(size {checkpoint.tree_size})",
                )
            )
        signed[checkpoint.tree_size] = checkpoint

    trusted_cp: Checkpoint | None = None
    if trusted is not None:
        trusted_cp, _ = open_checkpoint(trusted, verifiers)

    tree = CompactRange()
    previous_signed = 0
    expected = 0
    level0: bytes | None = None
    level0_index = -1

    def at_size(size: int) -> None:
        nonlocal previous_signed
        root = tree.root_hash()
        cp = signed.get(size)
        if cp is not None:
            if cp.root_hash != root:
                add(
                    Finding(
                        "root-mismatch",
                        f"events in leaves [{previous_signed}, {size}) do not produce the root "
                        f"signed at size {size}: rewritten together with their stored hashes",
                        leaf_range=(previous_signed, size),
                    )
                )
            previous_signed = size
        if trusted_cp is not None and trusted_cp.tree_size == size and trusted_cp.root_hash != root:
            add(
                Finding(
                    "fork",
                    f"root at size {size} differs from the trusted checkpoint: the log forked "
                    f"or was rewritten",
                    leaf_range=(0, size),
                )
            )

    if 0 in signed:
        at_size(0)
    gap = False
    prune_record = prune_record_reader(store, log)
    for entry in store.iter_entries(log):
        if entry.leaf_index != expected:
            # A deleted row: the tree past it cannot be recomputed, so stop here.
            add(
                Finding(
                    "missing",
                    f"leaves [{expected}, {entry.leaf_index}) are missing",
                    leaf_index=expected,
                    leaf_range=(expected, entry.leaf_index),
                )
            )
            gap = True
            break
        index = entry.leaf_index
        mark = entry.pruned
        if mark is not None:
            # Pruned by retention: only the stored leaf hash is left to check (below).
            vouched = prune_record(index)
            if vouched is None or vouched.state != "pruned" or vouched.mark != mark:
                add(Finding("pruned-without-record", f"leaf {index}: the event body was replaced "
                            f"by a prune tombstone that no prune record vouches for", leaf_index=index))
            else:
                report.leaves_pruned += 1
            digest = entry.leaf_hash
        else:
            digest = leaf_hash(entry.body)
        if digest != entry.leaf_hash:
            add(Finding("leaf-mismatch", f"leaf {index}: event body does not hash to its stored leaf hash", leaf_index=index))
        tile_index = index // TILE_WIDTH
        if tile_index != level0_index:
            level0 = store.read_tile(log, 0, tile_index)
            level0_index = tile_index
        offset = (index % TILE_WIDTH) * _HASH
        tiled = level0[offset : offset + _HASH] if level0 is not None else b""
        if tiled != entry.leaf_hash:
            add(Finding("tile-mismatch", f"leaf {index}: level-0 tile holds a different leaf hash", leaf_index=index))
        try:
            body = loads(entry.body) if mark is None else None
            if mark is None and (not isinstance(body, dict) or body.get("id") != entry.event_id
                                 or body.get("log") != log):
                raise FormatError("stored id/log columns differ from the event body")
        except FormatError as exc:
            add(Finding("row-mismatch", f"leaf {index}: {exc}", leaf_index=index))
        # The tree is rebuilt from the stored (tiled) leaf hashes: a body edit is then reported
        # at its leaf only, and a rewrite of hashes too shows up against the signed roots.
        tree.append(tiled if len(tiled) == _HASH else digest, visit)
        expected = index + 1
        report.leaves_checked += 1
        if expected in signed or (trusted_cp is not None and trusted_cp.tree_size == expected):
            at_size(expected)
        if progress is not None and expected % 4096 == 0:
            progress(expected, total)
    if progress is not None:
        progress(expected, total)

    if gap:
        pass
    elif expected < signed_size:
        add(
            Finding(
                "missing",
                f"leaves [{expected}, {signed_size}) are missing: the latest checkpoint signs "
                f"{signed_size} leaves but the store ends at {expected}",
                leaf_range=(expected, signed_size),
            )
        )
    elif expected > signed_size:
        add(
            Finding(
                "unsigned",
                f"leaves [{signed_size}, {expected}) are not covered by any signed checkpoint",
                leaf_range=(signed_size, expected),
            )
        )
    if trusted_cp is not None and not gap and trusted_cp.tree_size > expected:
        add(
            Finding(
                "truncated",
                f"the trusted checkpoint signs {trusted_cp.tree_size} leaves but the log has "
                f"{expected}: truncated or rolled back",
                leaf_range=(expected, trusted_cp.tree_size),
            )
        )
    report.root_hash = tree.root_hash() if expected else None
    return report
