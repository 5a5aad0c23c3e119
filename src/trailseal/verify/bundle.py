"""Evidence bundles: selected events with everything needed to check them offline.

Format ``trailseal-evidence/1`` — UTF-8 text, one RFC 8785 canonical JSON object per line
(each line must be exactly the canonical form of what it parses to, so no byte can change
without changing a value), in this order::

    {"bundle":"trailseal-evidence/1","created_at":..,"log":..,"origin":..,"query":..,
     "tree_size":S,"verifier_keys":["name+hash+base64",...]}                       header
    {"checkpoint":"<signed note>","consistency_proof":[],"tree_size":S}            the bundle's checkpoint
    {"event":{...stored envelope...},"inclusion_proof":["b64",...],"leaf_index":i}  one per event
    {"id":..,"inclusion_proof":[..],"leaf_hash":"b64","leaf_index":i,"pruned":{..}} a pruned event
    {"checkpoint":"<signed note>","consistency_proof":["b64",...],"tree_size":s}   earlier ones
    {"end":{"checkpoints":M,"events":N}}                                           trailer

Every inclusion proof is against the bundle's checkpoint (size ``S``); every earlier checkpoint
(``s <= S``: the ones that first covered the events — their receipts' checkpoints) carries the
RFC 9162 consistency proof from ``s`` to ``S``. An event's bytes are exactly the stored leaf
input, so its leaf hash is recomputed here; a pruned event carries only its leaf hash, still
proven. ``query`` and ``created_at`` are informational (nothing signs them); the bundle proves
each included event is in the log, not that the selection is complete.

:func:`verify_bundle` needs only this module and :mod:`trailseal.core`: no server, no database.
Every event gets a verdict naming it (leaf index and id); a bad checkpoint fails the events it
vouches for. Keys given by the caller are used instead of the bundle's own (pin them!).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trailseal.core.canonical import canonicalize, loads
from trailseal.core.checkpoint import Checkpoint, open_checkpoint
from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.hashing import leaf_hash
from trailseal.core.merkle import verify_consistency, verify_inclusion
from trailseal.core.note import Verifier, VerifierSet, decode_base64, parse_verifier_key

BUNDLE_FORMAT = "trailseal-evidence/1"
_LEAF = re.compile(rb'"leaf_index":([0-9]{1,19})')
_ID = re.compile(rb'"id":"([A-Za-z0-9._:-]{1,128})"')
_SIZE = re.compile(rb'"tree_size":([0-9]{1,19})')
_HEADER_KEYS = frozenset({"bundle", "created_at", "log", "origin", "query", "tree_size", "verifier_keys"})


# -- writing (pure formatting; the exporter supplies stored bytes and proofs) ------------------
def _b64(hashes: Sequence[bytes]) -> list[str]:
    import base64

    return [base64.b64encode(h).decode() for h in hashes]


def format_header(*, log: str, origin: str, tree_size: int, verifier_keys: Sequence[str],
                  query: str, created_at: str) -> bytes:
    """The header line (with its newline)."""
    return canonicalize({
        "bundle": BUNDLE_FORMAT, "created_at": created_at, "log": log, "origin": origin,
        "query": query, "tree_size": tree_size, "verifier_keys": list(verifier_keys),
    }) + b"\n"


def format_checkpoint_record(note: bytes, tree_size: int, consistency_proof: Sequence[bytes]) -> bytes:
    """A checkpoint line: the signed note and the consistency proof to the bundle's size."""
    return canonicalize({"checkpoint": note.decode(), "consistency_proof": _b64(consistency_proof),
                         "tree_size": tree_size}) + b"\n"


def format_event_record(body: bytes, leaf_index: int, inclusion_proof: Sequence[bytes]) -> bytes:
    """An event line; ``body`` must be the stored RFC 8785 bytes (keys sort: event < inclusion_proof
    < leaf_index, so splicing the bytes in keeps the line canonical)."""
    return (b'{"event":' + body + b',"inclusion_proof":' + canonicalize(_b64(inclusion_proof))
            + b',"leaf_index":' + str(leaf_index).encode() + b"}\n")


def format_pruned_record(event_id: str, leaf_index: int, leaf_hash_: bytes,
                         mark: dict[str, Any], inclusion_proof: Sequence[bytes]) -> bytes:
    """A pruned event's line: its leaf hash, proven, and why the payload is gone."""
    return canonicalize({"id": event_id, "inclusion_proof": _b64(inclusion_proof),
                         "leaf_hash": _b64([leaf_hash_])[0], "leaf_index": leaf_index,
                         "pruned": mark}) + b"\n"


def format_trailer(checkpoints: int, events: int) -> bytes:
    """The last line: record counts (a truncated bundle lacks it)."""
    return canonicalize({"end": {"checkpoints": checkpoints, "events": events}}) + b"\n"


# -- results -------------------------------------------------------------------------------
@dataclass
class EventResult:
    """The verdict on one event record; ``record`` counts event records from 1."""

    record: int
    leaf_index: int | None
    event_id: str | None
    ok: bool = False
    detail: str = ""
    pruned: bool = False

    @property
    def name(self) -> str:
        """``leaf 41 (id 0193...)`` with whatever could be read."""
        where = f"leaf {self.leaf_index}" if self.leaf_index is not None else f"event record {self.record}"
        return f"{where} (id {self.event_id})" if self.event_id else where

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"record": self.record, "leaf_index": self.leaf_index, "id": self.event_id,
                "ok": self.ok, "pruned": self.pruned, "detail": self.detail}


@dataclass
class CheckpointResult:
    """The verdict on one checkpoint record."""

    tree_size: int | None
    ok: bool = False
    detail: str = ""
    checkpoint: Checkpoint | None = None
    consistency_proof: list[bytes] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"tree_size": self.tree_size, "ok": self.ok, "detail": self.detail}


@dataclass
class BundleReport:
    """What :func:`verify_bundle` found."""

    log: str | None = None
    origin: str | None = None
    tree_size: int | None = None
    keys: str = "bundle"  # "bundle" (taken from the file) or "given" (pinned by the caller)
    problems: list[str] = field(default_factory=list)
    checkpoints: list[CheckpointResult] = field(default_factory=list)
    events: list[EventResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the bundle and every event verified."""
        return not self.problems and bool(self.events) and all(e.ok for e in self.events)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"ok": self.ok, "log": self.log, "origin": self.origin,
                "tree_size": self.tree_size, "keys": self.keys, "problems": self.problems,
                "checkpoints": [c.to_json() for c in self.checkpoints],
                "events": [e.to_json() for e in self.events]}


# -- verifying -----------------------------------------------------------------------------
def _parse_line(line: bytes) -> dict[str, Any]:
    """A record: valid JSON object, in canonical form; :class:`FormatError` otherwise."""
    value = loads(line)
    if not isinstance(value, dict):
        raise FormatError("record is not a JSON object")
    if canonicalize(value) != line:
        raise FormatError("record is not in RFC 8785 canonical form (modified?)")
    return value


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise FormatError(f"{what}: want a list of base64 strings")
    return [decode_base64(h, what) for h in value]


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FormatError(f"{what}: want a non-negative integer, got {value!r}")
    return value


def _sniff(line: bytes, record: int) -> EventResult:
    """Name an event from a damaged line as well as its bytes allow."""
    leaf = _LEAF.search(line)
    ident = _ID.search(line)
    return EventResult(record, int(leaf.group(1)) if leaf else None,
                       ident.group(1).decode() if ident else None)


def _keys(header: dict[str, Any]) -> VerifierSet:
    keys = header.get("verifier_keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise FormatError("header: verifier_keys must be a non-empty list of key strings")
    return VerifierSet([parse_verifier_key(k) for k in keys])


def verify_bundle(
    data: bytes, verifiers: Iterable[Verifier] | VerifierSet | None = None
) -> BundleReport:
    """Check every checkpoint, proof and event of a bundle; never raises for bad content."""
    report = BundleReport(keys="bundle" if verifiers is None else "given")
    if not data.endswith(b"\n"):
        report.problems.append("bundle: does not end with a newline (truncated?)")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        report.problems.append("bundle: empty")
        return report
    # header
    header: dict[str, Any] = {}
    try:
        header = _parse_line(lines[0])
        if set(header) != _HEADER_KEYS:
            raise FormatError(f"header: keys {sorted(header)}, want {sorted(_HEADER_KEYS)}")
        if header.get("bundle") != BUNDLE_FORMAT:
            raise FormatError(f"header: format {header.get('bundle')!r}, want {BUNDLE_FORMAT!r}")
        report.log = str(header["log"])
        report.origin = str(header["origin"])
        report.tree_size = _int(header["tree_size"], "header: tree_size")
    except (FormatError, KeyError) as exc:
        report.problems.append(f"header: {exc}")
    keyset: VerifierSet | None = None
    try:
        keyset = (verifiers if isinstance(verifiers, VerifierSet) else VerifierSet(verifiers)) \
            if verifiers is not None else _keys(header)
    except (FormatError, KeyError) as exc:
        report.problems.append(f"verifier keys: {exc}")
    # sort the records
    checkpoint_lines: list[bytes] = []
    event_lines: list[tuple[int, bytes]] = []
    trailer: dict[str, Any] | None = None
    for number, line in enumerate(lines[1:], start=2):
        # Two markers per kind, so one damaged byte cannot make a record pass for another kind.
        if b'"inclusion_proof":' in line or line.startswith((b'{"event":', b'{"id":')):
            event_lines.append((number, line))
        elif b'"consistency_proof":' in line or line.startswith(b'{"checkpoint":'):
            checkpoint_lines.append(line)
        elif number == len(lines) and b'"end":' in line:
            try:
                trailer = _parse_line(line)
            except FormatError as exc:
                report.problems.append(f"trailer: {exc}")
                trailer = {}
        else:
            event_lines.append((number, line))
    # checkpoints
    main: Checkpoint | None = None
    for line in checkpoint_lines:
        report.checkpoints.append(_check_checkpoint(line, keyset, report))
    for result in report.checkpoints:
        if result.ok and result.tree_size == report.tree_size:
            main = result.checkpoint
    if main is None:
        report.problems.append(f"bundle: no verified checkpoint for tree size {report.tree_size}")
    else:
        for result in report.checkpoints:
            if result.ok and result.checkpoint is not main:
                _check_consistency(result, main)
                if not result.ok:
                    report.problems.append(f"checkpoint {result.tree_size}: {result.detail}")
    # events
    for record, (_number, line) in enumerate(event_lines, start=1):
        report.events.append(_check_event(line, record, main, report))
    # trailer
    if trailer is None:
        report.problems.append("bundle: no trailer line (truncated?)")
    else:
        end = trailer.get("end") if set(trailer) == {"end"} else None
        want = (end.get("checkpoints"), end.get("events")) if isinstance(end, dict) else None
        got = (len(checkpoint_lines), len(event_lines))
        if want != got:
            report.problems.append(f"bundle: {got[1]} event and {got[0]} checkpoint records, "
                                   f"trailer says {want}")
    if not event_lines:
        report.problems.append("bundle: no events")
    return report


def _check_checkpoint(line: bytes, keyset: VerifierSet | None, report: BundleReport) -> CheckpointResult:
    size = _SIZE.search(line)
    result = CheckpointResult(int(size.group(1)) if size else None)
    try:
        record = _parse_line(line)
        result.tree_size = _int(record["tree_size"], "tree_size")
        result.consistency_proof = _hashes(record.get("consistency_proof"), "consistency_proof")
        if keyset is None:
            raise VerificationError("no usable verifier keys")
        note = record["checkpoint"]
        if not isinstance(note, str):
            raise FormatError("checkpoint: want the signed note as a string")
        checkpoint, _ = open_checkpoint(note.encode(), keyset, origin=report.origin)
        if checkpoint.tree_size != result.tree_size:
            raise VerificationError(
                f"record says tree size {result.tree_size}, the note signs {checkpoint.tree_size}")
        result.checkpoint = checkpoint
        result.ok = True
        result.detail = "signature verified"
    except (FormatError, VerificationError, KeyError) as exc:
        result.detail = str(exc)
        report.problems.append(f"checkpoint {result.tree_size}: {exc}")
    return result


def _check_consistency(result: CheckpointResult, main: Checkpoint) -> None:
    """RFC 9162 §2.1.4.2: the earlier checkpoint's tree is a prefix of the bundle's."""
    assert result.checkpoint is not None
    old = result.checkpoint
    try:
        if old.tree_size > main.tree_size:
            raise VerificationError(f"tree size {old.tree_size} is past the bundle's {main.tree_size}")
        verify_consistency(old.tree_size, main.tree_size, result.consistency_proof,
                           old.root_hash, main.root_hash)
        result.detail = f"signature verified, consistent with tree size {main.tree_size}"
    except VerificationError as exc:
        result.ok = False
        result.detail = f"not consistent with tree size {main.tree_size}: {exc}"


def _receipt_checkpoint(report: BundleReport, leaf_index: int) -> CheckpointResult | None:
    """The smallest included checkpoint covering ``leaf_index`` (the event's receipt's)."""
    covering = [c for c in report.checkpoints if c.tree_size is not None and c.tree_size > leaf_index]
    return min(covering, key=lambda c: c.tree_size or 0) if covering else None


def _check_event(line: bytes, record: int, main: Checkpoint | None, report: BundleReport) -> EventResult:
    result = _sniff(line, record)
    try:
        value = _parse_line(line)
        result.leaf_index = _int(value.get("leaf_index"), "leaf_index")
        proof = _hashes(value.get("inclusion_proof"), "inclusion_proof")
        if "pruned" in value:
            result.pruned = True
            result.event_id = str(value.get("id")) if value.get("id") is not None else None
            leaf = decode_base64(str(value.get("leaf_hash")), "leaf_hash")
        else:
            event = value.get("event")
            if not isinstance(event, dict):
                raise FormatError("event: want the stored envelope object")
            result.event_id = str(event.get("id")) if event.get("id") is not None else None
            if report.log is not None and event.get("log") != report.log:
                raise VerificationError(f"event is from log {event.get('log')!r}, bundle is {report.log!r}")
            leaf = leaf_hash(canonicalize(event))
        if main is None:
            raise VerificationError("the bundle's checkpoint did not verify")
        verify_inclusion(result.leaf_index, main.tree_size, leaf, proof, main.root_hash)
        if any(c.tree_size is None for c in report.checkpoints):
            raise VerificationError("a checkpoint record of the bundle is damaged")
        receipt = _receipt_checkpoint(report, result.leaf_index)
        if receipt is not None and not receipt.ok:
            raise VerificationError(f"checkpoint {receipt.tree_size} covering it failed: {receipt.detail}")
        result.ok = True
        result.detail = (f"leaf hash included in tree size {main.tree_size}"
                         + (" (payload pruned; leaf hash proven)" if result.pruned else ""))
    except (FormatError, VerificationError) as exc:
        result.ok = False
        result.detail = str(exc)
    return result
