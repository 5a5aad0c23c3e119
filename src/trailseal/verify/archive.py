"""Archive segments: the manifest format and the offline check an auditor runs.

A sealed segment is two objects next to each other (see docs/retention.md)::

    <log>/<start>-<end>.ndjson.zst    zstd frame: the exact RFC 8785 bytes of leaves
                                      [start, end), one per line, each ending "\\n"
    <log>/<start>-<end>.manifest      a C2SP signed note (Ed25519, the log's key) whose text is
                                      one line of RFC 8785 JSON and "\\n":

    {"format": "trailseal-archive-segment/1", "log", "origin", "segment": "<start>-<end>",
     "range": [start, end], "created_at",
     "data": {"name", "compression": "zstd", "sha256", "bytes", "ndjson_sha256", "ndjson_bytes"},
     "leaf_hashes": [base64 of SHA-256(0x00 || line) per leaf],
     "segment_hash": base64 MTH(leaf_hashes)          RFC 9162 §2.1.1 over the segment alone,
     "checkpoint": "<signed checkpoint note of size N >= end>",
     "proof": {"tree_size": N, "left": [...], "right": [...]},
     "object_lock": {"mode": "COMPLIANCE", "retain_until"} | null}

``proof.left`` holds the hashes of ``subtree_nodes(0, start)`` and ``proof.right`` those of
``subtree_nodes(end, N)`` (:func:`trailseal.core.merkle.subtree_nodes`): with the segment's leaf
hashes they tile ``[0, N)``, so :func:`range_root` folds them into the root the checkpoint signs
(at most ``2·log2 N`` hashes instead of an inclusion proof per leaf). Across the segments of one
log, ``left`` of a segment must also equal the compact range of every leaf archived before it.

Inverse pairs: :func:`format_manifest` / :func:`open_manifest`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from trailseal.core.canonical import canonicalize, loads
from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.hashing import leaf_hash, node_hash
from trailseal.core.merkle import NodeID, root_hash, subtree_nodes
from trailseal.core.note import Signer, Verifier, VerifierSet, open_note, sign_note

FORMAT = "trailseal-archive-segment/1"
MAX_LEAVES = 1 << 20  # per segment; keeps one manifest (and one decompression) bounded


def segment_id(start: int, end: int) -> str:
    """``000000000000-000000004096``: sorts in leaf order as text."""
    return f"{start:012d}-{end:012d}"


def data_name(start: int, end: int) -> str:
    """The data object's name."""
    return f"{segment_id(start, end)}.ndjson.zst"


def manifest_name(start: int, end: int) -> str:
    """The manifest object's name."""
    return f"{segment_id(start, end)}.manifest"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise FormatError(f"manifest: {what} must be base64")
    raw = base64.b64decode(value, validate=True)
    if len(raw) != 32:
        raise FormatError(f"manifest: {what} is {len(raw)} bytes, want 32")
    return raw


@dataclass(frozen=True)
class Manifest:
    """A segment manifest (see the module docstring for the JSON form)."""

    log: str
    origin: str
    start: int
    end: int
    created_at: str
    data_name: str
    data_sha256: bytes
    data_bytes: int
    ndjson_sha256: bytes
    ndjson_bytes: int
    leaf_hashes: tuple[bytes, ...]
    segment_hash: bytes
    checkpoint: str
    tree_size: int
    left: tuple[bytes, ...]
    right: tuple[bytes, ...]
    object_lock: Mapping[str, Any] | None = None

    @property
    def segment(self) -> str:
        """``<start>-<end>``."""
        return segment_id(self.start, self.end)

    def to_json(self) -> dict[str, Any]:
        """The JSON form that is signed."""
        return {
            "format": FORMAT, "log": self.log, "origin": self.origin, "segment": self.segment,
            "range": [self.start, self.end], "created_at": self.created_at,
            "data": {"name": self.data_name, "compression": "zstd",
                     "sha256": self.data_sha256.hex(), "bytes": self.data_bytes,
                     "ndjson_sha256": self.ndjson_sha256.hex(), "ndjson_bytes": self.ndjson_bytes},
            "leaf_hashes": [_b64(h) for h in self.leaf_hashes],
            "segment_hash": _b64(self.segment_hash),
            "checkpoint": self.checkpoint,
            "proof": {"tree_size": self.tree_size, "left": [_b64(h) for h in self.left],
                      "right": [_b64(h) for h in self.right]},
            "object_lock": dict(self.object_lock) if self.object_lock else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse the JSON form; FormatError names what is wrong."""
        try:
            if data.get("format") != FORMAT:
                raise FormatError(f"manifest: format {data.get('format')!r}, want {FORMAT!r}")
            start, end = (int(x) for x in data["range"])
            body, proof = data["data"], data["proof"]
            made = cls(
                log=str(data["log"]), origin=str(data["origin"]), start=start, end=end,
                created_at=str(data["created_at"]), data_name=str(body["name"]),
                data_sha256=bytes.fromhex(body["sha256"]), data_bytes=int(body["bytes"]),
                ndjson_sha256=bytes.fromhex(body["ndjson_sha256"]),
                ndjson_bytes=int(body["ndjson_bytes"]),
                leaf_hashes=tuple(_unb64(h, f"leaf_hashes[{i}]")
                                  for i, h in enumerate(data["leaf_hashes"])),
                segment_hash=_unb64(data["segment_hash"], "segment_hash"),
                checkpoint=str(data["checkpoint"]), tree_size=int(proof["tree_size"]),
                left=tuple(_unb64(h, "proof.left") for h in proof["left"]),
                right=tuple(_unb64(h, "proof.right") for h in proof["right"]),
                object_lock=data.get("object_lock"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"manifest: malformed: {exc!r}") from exc
        if not 0 <= made.start < made.end <= made.tree_size or made.end - made.start > MAX_LEAVES:
            raise FormatError(f"manifest: bad range [{made.start}, {made.end}) for tree size "
                              f"{made.tree_size}")
        return made


def format_manifest(manifest: Manifest, signer: Signer) -> bytes:
    """The signed note: RFC 8785 JSON of the manifest, a newline, the signature line."""
    return sign_note(canonicalize(manifest.to_json()).decode() + "\n", signer)


def open_manifest(note: bytes, verifiers: Iterable[Verifier] | VerifierSet) -> Manifest:
    """Verify the manifest's signature (VerificationError) and parse it (FormatError)."""
    opened = open_note(note, verifiers)
    return Manifest.from_json(loads(opened.text.rstrip("\n")))


def range_root(
    start: int, leaf_hashes: Sequence[bytes], left: Sequence[bytes], right: Sequence[bytes],
    tree_size: int,
) -> bytes:
    """The root of the tree of ``tree_size`` from the nodes left of the segment, its leaves and
    the nodes right of it (RFC 9162 §2.1.1). Wrong counts are a VerificationError."""
    end = start + len(leaf_hashes)
    want_right = subtree_nodes(end, tree_size)
    if len(left) != len(subtree_nodes(0, start)) or len(right) != len(want_right):
        raise VerificationError(
            f"archive proof: want {len(subtree_nodes(0, start))} left and {len(want_right)} "
            f"right hashes for [{start}, {end}) in a tree of {tree_size}, got {len(left)} and "
            f"{len(right)}"
        )
    compact = CompactRange(0, start, left)
    compact.extend(leaf_hashes)
    # Push the right-hand nodes as whole subtrees: each is aligned at the current end, so every
    # peak on the stack is at least as large, and merging equal siblings keeps it a compact
    # range of [0, end) — ending with the peaks of [0, tree_size).
    stack: list[tuple[NodeID, bytes]] = list(zip(compact.nodes(), compact.hashes, strict=True))
    for node, digest in zip(want_right, right, strict=True):
        stack.append((node, digest))
        while len(stack) > 1:
            (ln, lh), (rn, rh) = stack[-2], stack[-1]
            if ln.level != rn.level or ln.index % 2 or rn.index != ln.index + 1:
                break
            stack[-2:] = [(NodeID(ln.level + 1, ln.index // 2), node_hash(lh, rh))]
    if [n for n, _ in stack] != subtree_nodes(0, tree_size):
        raise VerificationError(f"archive proof: nodes do not tile [0, {tree_size})")
    return CompactRange(0, tree_size, [h for _, h in stack]).root_hash()


def split_lines(ndjson: bytes) -> list[bytes]:
    """The segment's lines (each event's bytes without its newline)."""
    if ndjson and not ndjson.endswith(b"\n"):
        raise VerificationError("archive: data does not end with a newline")
    return ndjson.split(b"\n")[:-1] if ndjson else []


def decompress(data: bytes, limit: int) -> bytes:
    """Decompress one zstd frame, refusing more than ``limit`` bytes."""
    import zstandard

    try:
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=limit)
    except zstandard.ZstdError as exc:
        raise VerificationError(f"archive: data is not a valid zstd frame: {exc}") from exc


@dataclass
class SegmentCheck:
    """Outcome of :func:`check_segment` for one segment."""

    segment: str
    log: str = ""
    start: int = 0
    end: int = 0
    tree_size: int = 0
    problems: list[str] = field(default_factory=list)
    manifest: Manifest | None = None
    lines: list[bytes] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"segment": self.segment, "log": self.log, "range": [self.start, self.end],
                "checkpoint_size": self.tree_size, "ok": self.ok, "problems": self.problems}


def check_segment(
    segment: str,
    manifest_note: bytes,
    data: bytes | None,
    verifiers: Iterable[Verifier] | VerifierSet,
    *,
    log: str | None = None,
    origin: str | None = None,
) -> SegmentCheck:
    """Check one segment with no store: manifest signature, checkpoint signature, data hashes,
    every line's leaf hash, the segment hash, and the root the checkpoint signs."""
    verifier_set = verifiers if isinstance(verifiers, VerifierSet) else VerifierSet(verifiers)
    check = SegmentCheck(segment)
    problems = check.problems
    try:
        manifest = open_manifest(manifest_note, verifier_set)
    except (VerificationError, FormatError) as exc:
        problems.append(f"manifest: {exc}")
        return check
    check.manifest, check.log = manifest, manifest.log
    check.start, check.end, check.tree_size = manifest.start, manifest.end, manifest.tree_size
    if manifest.segment != segment:
        problems.append(f"manifest: names segment {manifest.segment}, stored as {segment}")
    if log is not None and manifest.log != log:
        problems.append(f"manifest: log {manifest.log!r}, want {log!r}")
    checkpoint: Checkpoint | None = None
    try:
        checkpoint, _ = open_checkpoint(manifest.checkpoint.encode(), verifier_set,
                                        origin=origin or manifest.origin)
    except (VerificationError, FormatError) as exc:
        problems.append(f"checkpoint: {exc}")
    if checkpoint is not None and checkpoint.tree_size != manifest.tree_size:
        problems.append(f"checkpoint: signs size {checkpoint.tree_size}, proof is for "
                        f"{manifest.tree_size}")
    count = manifest.end - manifest.start
    if len(manifest.leaf_hashes) != count:
        problems.append(f"manifest: {len(manifest.leaf_hashes)} leaf hashes, want {count}")
    elif root_hash(list(manifest.leaf_hashes)) != manifest.segment_hash:
        problems.append("manifest: segment_hash is not the tree hash of its leaf hashes")
    elif checkpoint is not None:
        try:
            got = range_root(manifest.start, manifest.leaf_hashes, manifest.left,
                             manifest.right, manifest.tree_size)
            if got != checkpoint.root_hash:
                problems.append(f"proof: leaves [{manifest.start}, {manifest.end}) do not lead "
                                f"to the root signed at size {manifest.tree_size}")
        except (VerificationError, FormatError) as exc:
            problems.append(f"proof: {exc}")
    if data is None:
        problems.append(f"data: {manifest.data_name} is missing")
        return check
    if hashlib.sha256(data).digest() != manifest.data_sha256:
        problems.append(f"data: {manifest.data_name} does not match the manifest's sha256")
    try:
        ndjson = decompress(data, manifest.ndjson_bytes + 1)
        lines = split_lines(ndjson)
    except VerificationError as exc:
        problems.append(str(exc))
        return check
    if hashlib.sha256(ndjson).digest() != manifest.ndjson_sha256:
        problems.append("data: decompressed bytes do not match the manifest's ndjson_sha256")
    if len(lines) != count:
        problems.append(f"data: {len(lines)} events, want {count}")
        return check
    for offset, (line, want) in enumerate(zip(lines, manifest.leaf_hashes, strict=True)):
        if leaf_hash(line) != want:
            problems.append(f"leaf {manifest.start + offset}: event bytes do not hash to the "
                            f"manifest's leaf hash")
            if len(problems) > 20:
                break
    check.lines = lines
    return check


def chain_problems(checks: Sequence[SegmentCheck]) -> list[str]:
    """Across one log's segments (in leaf order): no gap or overlap, and each segment's left
    nodes equal the compact range of every leaf archived before it."""
    problems: list[str] = []
    compact: CompactRange | None = CompactRange()
    expected = 0
    for check in sorted(checks, key=lambda c: c.start):
        manifest = check.manifest
        if manifest is None:
            compact = None
            continue
        if manifest.start != expected:
            kind = "gap" if manifest.start > expected else "overlap"
            problems.append(f"segments: {kind} before {manifest.segment} (archived up to "
                            f"{expected})")
            compact = None
        elif compact is not None and tuple(compact.hashes) != manifest.left:
            problems.append(f"segment {manifest.segment}: its proof's left nodes differ from the "
                            f"leaves archived before it")
        if compact is not None:
            compact.extend(manifest.leaf_hashes)
        expected = manifest.end
    return problems


def manifest_json(note: bytes) -> dict[str, Any]:
    """The manifest JSON without checking its signature (for listings)."""
    text = note.decode()
    body = text[: text.index("\n")] if "\n" in text else text
    value = orjson.loads(body)
    if not isinstance(value, dict):
        raise FormatError("manifest: not a JSON object")
    return value
