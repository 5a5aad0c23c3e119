"""Sealing segments from the live store, and reading them back (restore, listing).

:func:`seal_segment` writes leaves ``[start, end)`` — data first, manifest last, so a segment
exists exactly when its manifest does — and returns the record to store. It is idempotent:
when a valid manifest for the same range is already in the target (a run killed after the
upload but before it recorded the segment), that one is adopted instead of writing again.
The format is in :mod:`trailseal.verify.archive`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import zstandard

from trailseal.core.canonical import loads
from trailseal.core.errors import NotFoundError, VerificationError
from trailseal.core.hashing import leaf_hash
from trailseal.core.keys import Keyring
from trailseal.core.merkle import root_hash, subtree_nodes
from trailseal.retention.policy import format_time
from trailseal.retention.targets import ArchiveTarget
from trailseal.storage.base import CheckpointRecord, LeafEntry, Store
from trailseal.storage.proofs import node_reader
from trailseal.storage.retention import SegmentRecord
from trailseal.verify.archive import (
    Manifest,
    SegmentCheck,
    check_segment,
    data_name,
    format_manifest,
    manifest_name,
    range_root,
    segment_id,
)


@dataclass(frozen=True)
class SealOptions:
    """How segments are written."""

    zstd_level: int = 6
    lock_days: int = 2557


def keys_for(log: str, start: int, end: int) -> tuple[str, str]:
    """``(data key, manifest key)`` of a segment in a target."""
    return f"{log}/{data_name(start, end)}", f"{log}/{manifest_name(start, end)}"


def _record(manifest: Manifest, target: ArchiveTarget, stored: int) -> SegmentRecord:
    data_key, manifest_key = keys_for(manifest.log, manifest.start, manifest.end)
    lock = manifest.object_lock or {}
    return SegmentRecord(
        log=manifest.log, segment_id=manifest.segment, start=manifest.start, end=manifest.end,
        checkpoint_size=manifest.tree_size, segment_hash=manifest.segment_hash,
        data_sha256=manifest.data_sha256, target=target.url, data_key=data_key,
        manifest_key=manifest_key, raw_bytes=manifest.ndjson_bytes, stored_bytes=stored,
        created_at=manifest.created_at, lock_until=lock.get("retain_until"),
    )


def seal_segment(
    store: Store,
    log: str,
    origin: str,
    start: int,
    end: int,
    checkpoint: CheckpointRecord,
    keyring: Keyring,
    target: ArchiveTarget,
    now: str,
    options: SealOptions,
) -> SegmentRecord:
    """Archive leaves ``[start, end)`` of ``log`` against ``checkpoint`` (size >= end)."""
    entries = list(store.iter_entries(log, start, end))
    if len(entries) != end - start or any(e.pruned is not None for e in entries):
        raise VerificationError(f"archive: log {log} leaves [{start}, {end}) are not all stored")
    hashes = [e.leaf_hash for e in entries]
    for entry in entries:
        if leaf_hash(entry.body) != entry.leaf_hash:
            raise VerificationError(
                f"archive: leaf {entry.leaf_index} of log {log} does not hash to its stored leaf "
                f"hash; run `trailseal verify` before archiving"
            )
    data_key, manifest_key = keys_for(log, start, end)
    verifiers = keyring.verifiers()
    if target.exists(manifest_key):  # sealed by a run that did not get to record it
        check = check_segment(segment_id(start, end), target.get(manifest_key),
                              target.get(data_key) if target.exists(data_key) else None,
                              verifiers, log=log, origin=origin)
        if check.ok and check.manifest is not None and list(check.manifest.leaf_hashes) == hashes:
            return _record(check.manifest, target, check.manifest.data_bytes)
        raise VerificationError(
            f"archive: {manifest_key} already exists in {target.url} and does not match the "
            f"log: {'; '.join(check.problems) or 'different leaves'}"
        )
    get_node = node_reader(store, log)
    left = [get_node(n.level, n.index) for n in subtree_nodes(0, start)]
    right = [get_node(n.level, n.index) for n in subtree_nodes(end, checkpoint.tree_size)]
    if range_root(start, hashes, left, right, checkpoint.tree_size) != checkpoint.root_hash:
        raise VerificationError(f"archive: log {log} [{start}, {end}) does not lead to the root "
                                f"signed at size {checkpoint.tree_size}")
    ndjson = b"".join(e.body + b"\n" for e in entries)
    data = zstandard.ZstdCompressor(level=options.zstd_level, write_checksum=True).compress(ndjson)
    lock_until: dt.datetime | None = None
    lock: dict[str, Any] | None = None
    if target.object_lock:
        lock_until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(
            days=options.lock_days)
        lock = {"mode": "COMPLIANCE", "retain_until": format_time(lock_until)}
    manifest = Manifest(
        log=log, origin=origin, start=start, end=end, created_at=now,
        data_name=data_name(start, end), data_sha256=hashlib.sha256(data).digest(),
        data_bytes=len(data), ndjson_sha256=hashlib.sha256(ndjson).digest(),
        ndjson_bytes=len(ndjson), leaf_hashes=tuple(hashes), segment_hash=root_hash(hashes),
        checkpoint=checkpoint.note.decode(), tree_size=checkpoint.tree_size,
        left=tuple(left), right=tuple(right), object_lock=lock,
    )
    target.put(data_key, data, lock_until)
    target.put(manifest_key, format_manifest(manifest, keyring.signer), lock_until)
    return _record(manifest, target, len(data))


def read_segment(
    target: ArchiveTarget, record: SegmentRecord, keyring: Keyring, origin: str
) -> SegmentCheck:
    """Fetch and fully check a recorded segment; VerificationError if anything is off."""
    try:
        note = target.get(record.manifest_key)
    except NotFoundError:
        raise VerificationError(f"archive: manifest {record.manifest_key} is missing from "
                                f"{target.url}") from None
    data = target.get(record.data_key) if target.exists(record.data_key) else None
    check = check_segment(record.segment_id, note, data, keyring.verifiers(), log=record.log,
                          origin=origin)
    if check.ok and check.manifest is not None and check.manifest.segment_hash != record.segment_hash:
        check.problems.append("manifest: segment hash differs from the one recorded at sealing")
    if not check.ok:
        raise VerificationError(f"archive: segment {record.segment_id} of log {record.log} "
                                f"failed verification: {'; '.join(check.problems)}")
    return check


def entry_from_body(log: str, leaf_index: int, body: bytes, stored: LeafEntry) -> LeafEntry:
    """The full entry for an archived body (query columns rebuilt from the event)."""
    event = loads(body)
    actor, resource = event.get("actor") or {}, event.get("resource") or {}
    source = event.get("source") or {}
    return LeafEntry(
        log=log, leaf_index=leaf_index, event_id=stored.event_id, leaf_hash=stored.leaf_hash,
        content_hash=stored.content_hash, body=body, time=str(event.get("time", stored.time)),
        received_at=str(event.get("received_at", stored.received_at)),
        action=str(event.get("action", "")), actor_id=str(actor.get("id", "")),
        resource_type=str(resource.get("type", "")), resource_id=str(resource.get("id", "")),
        outcome=event.get("outcome"), request_id=event.get("request_id"),
        trace_id=event.get("trace_id"), source_service=source.get("service"),
    )


def adopt_segment(
    store: Store, log: str, origin: str, start: int, keyring: Keyring, target: ArchiveTarget
) -> SegmentRecord | None:
    """A valid segment already in the target that starts at ``start`` and holds exactly the
    log's leaves (left by a killed run, possibly with another segment size), or ``None``."""
    prefix = f"{log}/{start:012d}-"
    for key in target.list(prefix):
        if not key.endswith(".manifest"):
            continue
        name = key[len(log) + 1 : -len(".manifest")]
        _, _, end_text = name.partition("-")
        if not end_text.isdigit():
            continue
        end = int(end_text)
        data_key = keys_for(log, start, end)[0]
        check = check_segment(name, target.get(key),
                              target.get(data_key) if target.exists(data_key) else None,
                              keyring.verifiers(), log=log, origin=origin)
        stored = [e.leaf_hash for e in store.iter_entries(log, start, end)]
        if check.ok and check.manifest is not None and list(check.manifest.leaf_hashes) == stored:
            return _record(check.manifest, target, check.manifest.data_bytes)
    return None
