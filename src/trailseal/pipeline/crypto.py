"""Keyed tokens, per-subject encryption and sealed quarantine copies.

::

    token(value)        "tok_" + base64url(HMAC-SHA256(tokenize key, value)[:16])    22 chars after tok_
    encrypted field     "enc:A256GCM:<key id>:" + base64url(nonce(12) || ciphertext || tag(16))
                        plaintext: the field's JSON value; AAD: "<log>\\n<event id>\\n<pointer>"
    sealed original     nonce(12) || AES-256-GCM(quarantine key, canonical JSON, AAD "<log>\\n<event id>")

The tenant's two secrets (tokenization key, quarantine key) live in
``<data dir>/keys/pipeline/<log>.json`` with mode 0600, never in the database next to the data they
protect. Tokens are deterministic per tenant, so investigations join on them; a token from one
tenant means nothing in another.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trailseal.core.errors import FormatError
from trailseal.storage.keyfiles import create_private_file_once

__all__ = ["ENC_PREFIX", "TenantSecrets", "Tokenizer", "decrypt_field", "encrypt_field"]
__all__ += ["load_or_create_secrets", "open_sealed", "parse_encrypted", "seal"]

ENC_PREFIX = "enc:A256GCM:"
"""Start of every encrypted field value."""

_ENC_RE = re.compile(r"enc:A256GCM:([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]+)")
_SAFE_LOG = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_BLOCK = 64  # SHA-256 block size: the HMAC key length


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokenizer:
    """Keyed HMAC-SHA256 tokens: the same value always gives the same token within a tenant."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError(f"tokenize key: want at least 32 bytes, got {len(key)}")
        self._key = key
        self._cache: dict[str, str] = {}
        # HMAC (RFC 2104) with its two keyed SHA-256 states made once; each MAC copies them.
        block = (key if len(key) <= _BLOCK else hashlib.sha256(key).digest()).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))
        self._content = self._inner.copy()
        self._content.update(b"content\x00")

    def _mac(self, inner: Any, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` from a prepared inner state: ``hmac.digest`` in half the time."""
        inner = inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def token(self, value: str) -> str:
        """``tok_`` + 22 base64url characters (128 bits of HMAC-SHA256 of ``value``)."""
        found = self._cache.get(value)
        if found is None:
            digest = self._mac(self._inner, value.encode("utf-8", "surrogatepass"))
            found = "tok_" + _b64(digest[:16])
            if len(self._cache) < 50_000:
                self._cache[value] = found
        return found

    def content_hash(self, canonical: bytes) -> bytes:
        """Keyed hash of a producer envelope (idempotency); not invertible by a dictionary."""
        return self._mac(self._content, canonical)  # HMAC of b"content\x00" + canonical


@dataclass(frozen=True)
class TenantSecrets:
    """A tenant's pipeline secrets: tokenization (HMAC) key and quarantine sealing key."""

    tokenize_key: bytes
    quarantine_key: bytes

    @classmethod
    def generate(cls) -> TenantSecrets:
        """Fresh random keys."""
        return cls(secrets.token_bytes(32), secrets.token_bytes(32))

    def to_json(self) -> bytes:
        """File form."""
        return orjson.dumps(
            {"tokenize_key": _b64(self.tokenize_key), "quarantine_key": _b64(self.quarantine_key)}
        )

    @classmethod
    def from_json(cls, data: bytes) -> TenantSecrets:
        """Inverse of :meth:`to_json`."""
        value = orjson.loads(data)
        return cls(_unb64(value["tokenize_key"]), _unb64(value["quarantine_key"]))


def load_or_create_secrets(data_dir: Path, log: str) -> TenantSecrets:
    """``<data dir>/keys/pipeline/<log>.json`` (0600 file in a 0700 folder), created on first use."""
    if not _SAFE_LOG.fullmatch(log):
        raise ValueError(f"log name {log!r}: use 1-128 of [A-Za-z0-9_.-]")
    folder = data_dir / "keys" / "pipeline"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{log}.json"
    if path.exists():
        return TenantSecrets.from_json(path.read_bytes())
    return TenantSecrets.from_json(create_private_file_once(path, TenantSecrets.generate().to_json()))


def _aad(*parts: str) -> bytes:
    return "\n".join(parts).encode()


def encrypt_field(key_id: str, key: bytes, value: object, *, log: str, event_id: str, pointer: str) -> str:
    """The encrypted form of a JSON ``value`` under a subject key, bound to its place."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, orjson.dumps(value), _aad(log, event_id, pointer))
    return f"{ENC_PREFIX}{key_id}:{_b64(nonce + sealed)}"


def parse_encrypted(text: object) -> tuple[str, bytes] | None:
    """``(key id, nonce || ciphertext)`` of an encrypted field value, or None if it is not one."""
    if type(text) is not str or not text.startswith(ENC_PREFIX):
        return None
    match = _ENC_RE.fullmatch(text)
    if match is None:
        return None
    return match[1], _unb64(match[2])


def decrypt_field(key: bytes, blob: bytes, *, log: str, event_id: str, pointer: str) -> object:
    """The JSON value back; :class:`FormatError` when the key or the binding does not fit."""
    try:
        plain = AESGCM(key).decrypt(blob[:12], blob[12:], _aad(log, event_id, pointer))
    except (InvalidTag, ValueError) as exc:
        raise FormatError(f"encrypted field {pointer}: cannot decrypt: {type(exc).__name__}") from None
    return orjson.loads(plain)


def seal(key: bytes, data: bytes, *, log: str, event_id: str) -> bytes:
    """AES-256-GCM ``nonce || ciphertext || tag`` of ``data`` (the quarantined original)."""
    nonce = secrets.token_bytes(12)
    return nonce + AESGCM(key).encrypt(nonce, data, _aad(log, event_id))


def open_sealed(key: bytes, blob: bytes, *, log: str, event_id: str) -> bytes:
    """Inverse of :func:`seal`."""
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], _aad(log, event_id))
    except (InvalidTag, ValueError):
        raise FormatError(f"quarantine: sealed copy of {event_id} does not open with this key") from None
