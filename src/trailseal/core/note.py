"""C2SP signed notes (https://c2sp.org/signed-note), as in Go ``golang.org/x/mod/sumdb/note``.

A signed note is a text followed by a blank line and one or more signature lines::

    note       = text "\\n" sigline+          ; text is non-empty and ends in "\\n"
    sigline    = "\\u2014 " name " " base64(key_id[4] || signature) "\\n"
    name       = 1*(any char except Unicode space and "+")

The text is everything up to and including the newline before the *last* blank line; it may
itself contain blank lines. The whole note is UTF-8 with no control character below U+0020
other than ``\\n`` (signed-note §Format). ``key_id`` is a big-endian uint32; for Ed25519
(signature type ``0x01``, signed-note §Ed25519 signatures)::

    key_id = SHA-256(name || 0x0A || 0x01 || public_key[32])[:4]

Key strings, as written by Go's ``note.GenerateKey``::

    verifier key  name "+" hex8(key_id) "+" base64(0x01 || public_key[32])
    signer key    "PRIVATE+KEY+" name "+" hex8(key_id) "+" base64(0x01 || seed[32])

Inverse pairs: :func:`format_note` / :func:`parse_note`, :func:`sign_note` / :func:`open_note`,
:func:`format_verifier_key` / :func:`parse_verifier_key`, :func:`format_signer_key` /
:func:`parse_signer_key`.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from base64 import b64decode, b64encode
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trailseal.core.errors import FormatError, VerificationError

ALG_ED25519 = 0x01
"""Signature type byte for Ed25519 (signed-note §Signature types)."""

MAX_SIGNATURES = 100
"""Most signature lines :func:`parse_note` accepts; the spec requires at least 16 (§Format)."""

_SIG_PREFIX = "\u2014 "  # em dash, space (signed-note §Format)
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls except "\n" (§Format)


class Signer(Protocol):
    """Something that signs note text under one (name, key ID)."""

    @property
    def name(self) -> str:
        """The key name written on the signature line."""

    @property
    def key_id(self) -> int:
        """The uint32 key ID written before the signature."""

    def sign(self, msg: bytes) -> bytes:
        """Return the algorithm signature of ``msg`` (without the key ID)."""


class Verifier(Protocol):
    """Something that checks signatures made under one (name, key ID)."""

    @property
    def name(self) -> str:
        """The key name this verifier answers for."""

    @property
    def key_id(self) -> int:
        """The uint32 key ID this verifier answers for."""

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (without the key ID) is a valid signature of ``msg``."""


def check_name(name: str, what: str = "key name") -> str:
    """Return ``name`` if non-empty, without Unicode space or ``+`` (signed-note §Format) and
    without control characters (no note could carry them); else raise :class:`FormatError`."""
    if not name:
        raise FormatError(f"{what}: empty")
    for ch in name:
        if ch.isspace() or ch == "+" or ord(ch) < 0x20:
            raise FormatError(f"{what}: invalid character {ch!r} in {name!r}")
    return name


def decode_base64(text: str, what: str) -> bytes:
    """Decode standard padded base64 (RFC 4648 §4) that re-encodes to ``text``, so no two
    strings decode to the same bytes; anything else is a :class:`FormatError`."""
    try:
        raw = b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise FormatError(f"{what}: invalid base64 {text!r}") from exc
    if b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what}: non-canonical base64 {text!r}")
    return raw


def compute_key_id(name: str, alg: int, public_key: bytes) -> int:
    """Key ID = ``SHA-256(name || 0x0A || alg || public_key)[:4]``, big-endian (§Signatures)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class Ed25519Verifier:
    """Verifies Ed25519 signatures for one key name (signed-note §Ed25519 signatures)."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if len(self.public_key) != 32:
            raise FormatError(f"ed25519 public key: wrong size {len(self.public_key)}, want 32")
        object.__setattr__(self, "key_id", compute_key_id(self.name, ALG_ED25519, self.public_key))
        object.__setattr__(self, "_key", Ed25519PublicKey.from_public_bytes(self.public_key))

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is a valid RFC 8032 Ed25519 signature of ``msg`` under this key."""
        try:
            self._key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Ed25519Signer:
    """Signs note text with an Ed25519 private key under one key name.

    Equality and ``repr`` use the name and public key only; the private key is never shown.
    """

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)
    public_key: bytes = field(init=False)
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        verifier = Ed25519Verifier(self.name, self.private_key.public_key().public_bytes_raw())
        object.__setattr__(self, "public_key", verifier.public_key)
        object.__setattr__(self, "key_id", verifier.key_id)

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        """Return a signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Ed25519Signer:
        """Return the signer for a 32-byte RFC 8032 private key seed."""
        if len(seed) != 32:
            raise FormatError(f"ed25519 seed: wrong size {len(seed)}, want 32")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        """The 32-byte private seed. Secret: never log it."""
        return self.private_key.private_bytes_raw()

    def verifier(self) -> Ed25519Verifier:
        """The matching verifier."""
        return Ed25519Verifier(self.name, self.public_key)

    def sign(self, msg: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``msg``."""
        return self.private_key.sign(msg)


def format_verifier_key(verifier: Ed25519Verifier) -> str:
    """Return ``name+hex8(key_id)+base64(0x01 || public_key)``."""
    key = b64encode(bytes([ALG_ED25519]) + verifier.public_key).decode("ascii")
    return f"{verifier.name}+{verifier.key_id:08x}+{key}"


def _parse_key_fields(name: str, hex_id: str, key64: str, what: str) -> tuple[int, bytes]:
    """Check the name and key ID fields; return (key ID, key bytes without the type byte)."""
    check_name(name, what + " name")
    if not _HEX8.fullmatch(hex_id):
        raise FormatError(f"{what}: key id {hex_id!r} is not 8 hex digits")
    try:
        key = decode_base64(key64, what)
    except FormatError:
        if what != "signer key":
            raise
        raise FormatError(f"{what}: invalid base64 key") from None  # never echo a secret
    if not key:
        raise FormatError(f"{what}: empty key")
    if key[0] != ALG_ED25519:
        raise FormatError(f"{what}: unsupported signature type 0x{key[0]:02x}, want 0x01")
    if len(key) != 33:
        raise FormatError(f"{what}: wrong key size {len(key) - 1}, want 32")
    return int(hex_id, 16), key[1:]


def parse_verifier_key(vkey: str) -> Ed25519Verifier:
    """Parse ``name+hex8(key_id)+base64(0x01 || public_key)``; the key ID must match the key."""
    parts = vkey.split("+", 2)  # the name has no "+", base64 may
    if len(parts) != 3:
        raise FormatError(f"verifier key: want name+keyid+key, got {vkey!r}")
    key_id, public_key = _parse_key_fields(parts[0], parts[1], parts[2], "verifier key")
    verifier = Ed25519Verifier(parts[0], public_key)
    if verifier.key_id != key_id:
        raise FormatError(f"verifier key: key id {key_id:08x}, computed {verifier.key_id:08x}")
    return verifier


def format_signer_key(signer: Ed25519Signer) -> str:
    """Return ``PRIVATE+KEY+name+hex8(key_id)+base64(0x01 || seed)``. Secret."""
    key = b64encode(bytes([ALG_ED25519]) + signer.seed).decode("ascii")
    return f"PRIVATE+KEY+{signer.name}+{signer.key_id:08x}+{key}"


def parse_signer_key(skey: str) -> Ed25519Signer:
    """Parse ``PRIVATE+KEY+name+hex8(key_id)+base64(0x01 || seed)``; the key ID must match."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise FormatError("signer key: want PRIVATE+KEY+name+keyid+key")  # never echo a secret
    key_id, seed = _parse_key_fields(parts[2], parts[3], parts[4], "signer key")
    signer = Ed25519Signer.from_seed(parts[2], seed)
    if signer.key_id != key_id:
        raise FormatError(f"signer key: key id {key_id:08x}, computed {signer.key_id:08x}")
    return signer


def generate_signer_key(name: str) -> tuple[str, str]:
    """Return ``(signer key, verifier key)`` strings for a fresh Ed25519 key named ``name``."""
    signer = Ed25519Signer.generate(name)
    return format_signer_key(signer), format_verifier_key(signer.verifier())


@dataclass(frozen=True)
class Signature:
    """One signature line: key name, key ID and the algorithm signature (without the key ID)."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """The signature line, without its newline: ``— name base64(key_id || signature)``."""
        raw = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIG_PREFIX}{self.name} {b64encode(raw).decode('ascii')}"


@dataclass(frozen=True)
class Note:
    """An opened note: its text, the signatures verified, and those from unknown keys."""

    text: str
    sigs: tuple[Signature, ...]
    unverified_sigs: tuple[Signature, ...] = ()


class UnverifiedNoteError(VerificationError):
    """No signature in the note is from a known key; ``note.unverified_sigs`` lists them all."""

    def __init__(self, note: Note) -> None:
        self.note = note
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in note.unverified_sigs)
        super().__init__(f"note: no signature from a known key (unverified: {names})")


class VerifierSet:
    """Known verifiers, looked up by the (name, key ID) pair (signed-note §Signatures).

    A signature that matches a known name but not its key ID, or the reverse, is from an unknown
    key. Two different verifiers for the same (name, key ID) make the set ambiguous: FormatError.
    """

    def __init__(self, verifiers: Iterable[Verifier] = ()) -> None:
        """Index ``verifiers``; exact duplicates are merged."""
        self._by_id: dict[tuple[str, int], Verifier] = {}
        for verifier in verifiers:
            pair = (verifier.name, verifier.key_id)
            known = self._by_id.setdefault(pair, verifier)
            if known is not verifier and known != verifier:
                raise FormatError(f"verifier set: two keys named {pair[0]!r} with id {pair[1]:08x}")

    def get(self, name: str, key_id: int) -> Verifier | None:
        """The verifier for exactly ``(name, key_id)``, or None."""
        return self._by_id.get((name, key_id))

    def __iter__(self) -> Iterator[Verifier]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def _check_text(text: str) -> bytes:
    """Validate note text (signed-note §Format) and return its UTF-8 bytes."""
    if not text.endswith("\n"):
        raise FormatError("note: text must be non-empty and end with a newline")
    if m := _CONTROL.search(text):
        raise FormatError(f"note: control character {m.group()!r} at offset {m.start()}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FormatError(f"note: text is not encodable as utf-8 at offset {exc.start}") from exc


def format_note(text: str, sigs: Iterable[Signature]) -> bytes:
    """Return ``text || "\\n" || signature lines``; at least one signature is required."""
    lines = []
    for sig in sigs:
        check_name(sig.name)
        if not 0 <= sig.key_id < 2**32:
            raise FormatError(f"note: key id {sig.key_id} out of uint32 range")
        lines.append(sig.line() + "\n")
    if not lines:
        raise FormatError("note: at least one signature is required")
    return _check_text(text) + b"\n" + "".join(lines).encode("utf-8")


def parse_note(msg: bytes) -> tuple[str, tuple[Signature, ...]]:
    """Split a signed note into text and signatures, checking syntax only (no verification)."""
    try:
        note = msg.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"note: invalid utf-8 at offset {exc.start}") from exc
    if m := _CONTROL.search(note):
        raise FormatError(f"note: control character {m.group()!r} at offset {m.start()}")
    # The text ends at the last blank line; signatures never contain "\n" (§Format).
    split = note.rfind("\n\n")
    if split < 0:
        raise FormatError("note: no blank line before the signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise FormatError("note: signature block must be non-empty and end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note: too many signatures: {len(lines)}, limit {MAX_SIGNATURES}")
    return text, tuple(_parse_sig_line(line) for line in lines)


def _parse_sig_line(line: str) -> Signature:
    """Parse ``— name base64(key_id || signature)`` (signed-note §Signatures)."""
    if not line.startswith(_SIG_PREFIX):
        raise FormatError(f"note: signature line must start with an em dash and space: {line!r}")
    name, sep, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise FormatError(f"note: signature line has no signature: {line!r}")
    check_name(name, "note: signer name")
    raw = decode_base64(sig64, "note: signature")
    if len(raw) < 5:
        raise FormatError(f"note: signature too short: {len(raw)} bytes, want at least 5")
    return Signature(name, int.from_bytes(raw[:4], "big"), raw[4:])


def sign_note(text: str, *signers: Signer) -> bytes:
    """Sign ``text`` (non-empty, newline-terminated) with every signer; return the note bytes."""
    body = _check_text(text)
    sigs: dict[tuple[str, int], Signature] = {}
    for signer in signers:
        pair = (signer.name, signer.key_id)
        if pair not in sigs:
            sigs[pair] = Signature(signer.name, signer.key_id, signer.sign(body))
    return format_note(text, sigs.values())


def open_note(msg: bytes, verifiers: Iterable[Verifier] | VerifierSet) -> Note:
    """Parse ``msg`` and verify its signatures against ``verifiers``.

    Per signed-note §Signatures: signatures from unknown (name, key ID) pairs are kept in
    ``unverified_sigs``; a known key whose signature fails raises :class:`VerificationError`;
    no verified signature at all raises :class:`UnverifiedNoteError`. Repeated identical lines
    are reported once. Malformed input raises :class:`FormatError`.
    """
    known = verifiers if isinstance(verifiers, VerifierSet) else VerifierSet(verifiers)
    text, sigs = parse_note(msg)
    body = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    for sig in sigs:
        verifier = known.get(sig.name, sig.key_id)
        if verifier is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if not verifier.verify(body, sig.signature):
            raise VerificationError(f"note: invalid signature by {sig.name}+{sig.key_id:08x}")
        if sig not in verified:
            verified.append(sig)
    note = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note
