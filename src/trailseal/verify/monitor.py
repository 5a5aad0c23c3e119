"""Remote log check over the public read API, as a tlog monitor would run it.

It fetches the latest checkpoint, verifies its signature, downloads every entry bundle
(C2SP tlog-tiles ``tile/entries``; for a bundle withheld because retention pruned a leaf in it,
the level-0 hash tile instead), recomputes every leaf hash and the root, and — given a
checkpoint trusted from earlier — checks a consistency proof from it to the latest one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.errors import VerificationError
from trailseal.core.hashing import HASH_SIZE, leaf_hash
from trailseal.core.merkle import verify_consistency
from trailseal.core.note import Verifier, VerifierSet
from trailseal.core.tiles import TILE_WIDTH, Tile, entries_path


def split_bundle(data: bytes) -> list[bytes]:
    """Split a tlog-tiles entry bundle: each entry is a big-endian uint16 length, then bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise VerificationError("entry bundle: truncated length prefix")
        size = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + size > len(data):
            raise VerificationError("entry bundle: truncated entry")
        out.append(data[pos : pos + size])
        pos += size
    return out


@dataclass
class RemoteReport:
    """Outcome of :func:`check_remote`."""

    log: str
    tree_size: int = 0
    leaves_checked: int = 0
    leaves_from_hash_tiles: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_leaf: int | None = None

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"log": self.log, "ok": self.ok, "tree_size": self.tree_size,
                "leaves_checked": self.leaves_checked,
                "leaves_from_hash_tiles": self.leaves_from_hash_tiles, "first_bad_leaf": self.first_bad_leaf,
                "findings": [{"detail": p} for p in self.problems]}


def check_remote(
    client: httpx.Client,
    log: str,
    verifiers: Iterable[Verifier] | VerifierSet,
    *,
    trusted: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RemoteReport:
    """Check the log served at ``client.base_url``; never trusts the server's own verdict."""
    verifier_set = verifiers if isinstance(verifiers, VerifierSet) else VerifierSet(verifiers)
    report = RemoteReport(log=log)
    response = client.get(f"/v1/logs/{log}/checkpoint")
    response.raise_for_status()
    latest, _ = open_checkpoint(response.content, verifier_set)
    report.tree_size = latest.tree_size
    tree = CompactRange()
    size = latest.tree_size
    for bundle_index in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - bundle_index * TILE_WIDTH)
        got = client.get(f"/v1/logs/{log}/{entries_path(bundle_index, width)}")
        if got.status_code == 404:
            # A bundle holding a pruned leaf is not served (retention keeps leaf hashes, not
            # payloads): take the leaf hashes from the level-0 hash tile instead.
            tile = client.get(f"/v1/logs/{log}/{Tile(0, bundle_index, width).path()}")
            tile.raise_for_status()
            if len(tile.content) != width * HASH_SIZE:
                report.problems.append(f"hash tile {bundle_index}: {len(tile.content)} bytes, want {width * HASH_SIZE}")
                report.first_bad_leaf = bundle_index * TILE_WIDTH
                return report
            for offset in range(0, width * HASH_SIZE, HASH_SIZE):
                tree.append(tile.content[offset : offset + HASH_SIZE])
            report.leaves_from_hash_tiles += width
        else:
            got.raise_for_status()
            entries = split_bundle(got.content)
            if len(entries) != width:
                report.problems.append(
                    f"entry bundle {bundle_index}: {len(entries)} entries, want {width}"
                )
                report.first_bad_leaf = bundle_index * TILE_WIDTH + len(entries)
                return report
            for entry in entries:
                tree.append(leaf_hash(entry))
        report.leaves_checked = tree.end
        if progress is not None:
            progress(tree.end, size)
    if size and tree.root_hash() != latest.root_hash:
        report.problems.append(
            f"the entries served do not produce the root signed at size {size}"
        )
        report.first_bad_leaf = 0
    if trusted is not None:
        old: Checkpoint = open_checkpoint(trusted, verifier_set)[0]
        if old.tree_size > size:
            report.problems.append(
                f"the trusted checkpoint signs {old.tree_size} leaves but the server's latest "
                f"signs {size}: truncated or rolled back"
            )
            report.first_bad_leaf = size
        else:
            got = client.get(f"/v1/logs/{log}/proofs/consistency",
                             params={"first": old.tree_size, "second": size})
            got.raise_for_status()
            hashes = [base64.b64decode(h) for h in got.json()["hashes"]]
            try:
                verify_consistency(old.tree_size, size, hashes, old.root_hash, latest.root_hash)
            except VerificationError as exc:
                report.problems.append(f"not consistent with the trusted checkpoint: {exc}")
                report.first_bad_leaf = 0
    return report
