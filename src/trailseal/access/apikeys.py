"""API keys: format, hashing, the ``KeyStore`` Protocol, and the operations on it.

A key is shown once, as ``ts_<id>_<secret>``: ``id`` is 12 lowercase hex characters that name
the key in listings and in self-audit records (``ts_<id>``), ``secret`` is 32 random bytes in
URL-safe base64. Only ``SHA-256(key)`` is stored. A slow password hash (bcrypt, argon2) exists
to make guessing *low-entropy* secrets expensive; a 256-bit random secret cannot be guessed from
its SHA-256 whatever the hash rate, so a fast hash costs nothing in safety and keeps each
request's check to one indexed lookup and one constant-time comparison.

Nothing caches a key between requests: revoking or expiring a key takes effect on the next
request, whichever process (server, ``trailseal keys`` on the data directory) made the change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from trailseal.access.principal import Principal
from trailseal.access.roles import ANY_TENANT, Grant, Role
from trailseal.core.errors import AuthenticationError, NotFoundError

TOKEN_PREFIX = "ts_"
_ID_HEX = 12
_TOKEN_RE = re.compile(r"ts_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_DURATION_RE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` (sorts as text)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 time; a value without offset is taken as UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``2w``, ``3600s`` or ``0`` as seconds."""
    if text.strip() == "0":
        return 0
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"duration: want a number and one of s, m, h, d, w (e.g. 1h), got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_expiry(text: str, now: dt.datetime) -> str:
    """``30d``, ``12h``, ``90m``, ``2w``, ``3600s`` from ``now``, or an RFC 3339 time."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return format_time(now + dt.timedelta(seconds=seconds))
    try:
        return format_time(parse_time(text))
    except ValueError:
        raise ValueError(f"expiry: want a duration like 30d or an RFC 3339 time, got {text!r}") from None


def hash_token(token: str) -> bytes:
    """SHA-256 of the whole key string: what the store keeps."""
    return hashlib.sha256(token.encode()).digest()


def key_id_of(token: str) -> str | None:
    """The public id ``ts_<id>`` of a well-formed key, else ``None``."""
    match = _TOKEN_RE.fullmatch(token)
    return TOKEN_PREFIX + match.group(1) if match else None


def looks_like_key(token: str) -> bool:
    """Whether ``token`` has the API key shape (as opposed to a JWT)."""
    return token.startswith(TOKEN_PREFIX)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key: its public id, grants, lifetime; ``secret_hash`` never leaves the store."""

    key_id: str
    name: str
    grants: tuple[Grant, ...]
    created_at: str
    created_by: str
    secret_hash: bytes = field(repr=False)
    expires_at: str | None = None
    revoked_at: str | None = None
    rate_per_second: float | None = None
    burst: int | None = None
    replaced_by: str | None = None

    def status(self, now: dt.datetime) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and parse_time(self.expires_at) <= now:
            return "expired"
        return "active"

    def to_json(self, now: dt.datetime) -> dict[str, Any]:
        """The listing form (no hash)."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "grants": [str(g) for g in self.grants],
            "status": self.status(now),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "rate_per_second": self.rate_per_second,
            "burst": self.burst,
            "replaced_by": self.replaced_by,
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: ``token`` is the only copy of the secret and is shown once."""

    token: str
    record: KeyRecord


class KeyStore(Protocol):
    """Where keys live; SQLite (``access.sqlite``) or memory (:class:`MemoryKeyStore`)."""

    def insert(self, record: KeyRecord) -> None:
        """Store a new key."""

    def get(self, key_id: str) -> KeyRecord | None:
        """The key, or ``None``."""

    def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""

    def update(self, record: KeyRecord) -> None:
        """Replace the stored key with ``record`` (same ``key_id``)."""

    def count(self) -> int:
        """Number of keys ever created (revoked ones included)."""

    def close(self) -> None:
        """Release connections."""


class MemoryKeyStore:
    """A :class:`KeyStore` in a dict, for tests and the memory store."""

    def __init__(self) -> None:
        self._keys: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()

    def insert(self, record: KeyRecord) -> None:
        with self._lock:
            if record.key_id in self._keys:
                raise ValueError(f"key: id {record.key_id} exists")
            self._keys[record.key_id] = record

    def get(self, key_id: str) -> KeyRecord | None:
        return self._keys.get(key_id)

    def list_keys(self) -> list[KeyRecord]:
        return sorted(self._keys.values(), key=lambda r: (r.created_at, r.key_id))

    def update(self, record: KeyRecord) -> None:
        with self._lock:
            self._keys[record.key_id] = record

    def count(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        pass


# -- operations -----------------------------------------------------------------------------------
def create_key(
    keys: KeyStore,
    *,
    name: str,
    grants: Sequence[Grant],
    now: dt.datetime,
    created_by: str,
    expires_at: str | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> IssuedKey:
    """Issue a key; the returned token is the only copy of its secret."""
    if not grants:
        raise ValueError("key: give at least one grant TENANT:ROLE")
    if not name or len(name) > 128:
        raise ValueError(f"key: name must be 1..128 characters, got {len(name)}")
    if expires_at is not None and parse_time(expires_at) <= now:
        raise ValueError(f"key: expiry {expires_at} is not in the future")
    ident = secrets.token_hex(_ID_HEX // 2)
    token = f"{TOKEN_PREFIX}{ident}_{secrets.token_urlsafe(32)}"
    record = KeyRecord(
        key_id=TOKEN_PREFIX + ident,
        name=name,
        grants=tuple(sorted(set(grants))),
        created_at=format_time(now),
        created_by=created_by,
        secret_hash=hash_token(token),
        expires_at=expires_at,
        rate_per_second=rate_per_second,
        burst=burst,
    )
    keys.insert(record)
    return IssuedKey(token, record)


def _existing(keys: KeyStore, key_id: str) -> KeyRecord:
    record = keys.get(key_id)
    if record is None:
        raise NotFoundError(f"key {key_id!r} not found")
    return record


def revoke_key(keys: KeyStore, key_id: str, now: dt.datetime) -> KeyRecord:
    """Revoke at once; revoking a revoked key keeps its first revocation time."""
    record = _existing(keys, key_id)
    if record.revoked_at is None:
        record = replace(record, revoked_at=format_time(now))
        keys.update(record)
    return record


def rotate_key(
    keys: KeyStore, key_id: str, now: dt.datetime, *, created_by: str, grace_seconds: int = 0
) -> IssuedKey:
    """Issue a successor with the same name, grants, expiry and limits.

    The old key is revoked now (``grace_seconds`` 0) or expires after the grace period, so
    deployments can switch over without an outage.
    """
    old = _existing(keys, key_id)
    if old.status(now) != "active":
        raise ValueError(f"key: {key_id} is {old.status(now)}; only an active key can be rotated")
    issued = create_key(
        keys, name=old.name, grants=old.grants, now=now, created_by=created_by,
        expires_at=old.expires_at, rate_per_second=old.rate_per_second, burst=old.burst,
    )
    if grace_seconds > 0:
        ends = format_time(now + dt.timedelta(seconds=grace_seconds))
        if old.expires_at is None or parse_time(old.expires_at) > parse_time(ends):
            old = replace(old, expires_at=ends)
        keys.update(replace(old, replaced_by=issued.record.key_id))
    else:
        keys.update(
            replace(old, revoked_at=format_time(now), replaced_by=issued.record.key_id)
        )
    return issued


def ensure_bootstrap_key(keys: KeyStore, now: dt.datetime) -> IssuedKey | None:
    """On a store with no keys at all, issue an admin key on every tenant; else ``None``."""
    if keys.count():
        return None
    return create_key(
        keys, name="bootstrap-admin", grants=[Grant(ANY_TENANT, Role.ADMIN)], now=now,
        created_by="serve (first start)",
    )


def authenticate_key(keys: KeyStore, token: str, now: dt.datetime) -> Principal:
    """The principal of a presented key; :class:`AuthenticationError` unless active and genuine.

    The message names the key id (public) but never echoes the secret.
    """
    key_id = key_id_of(token)
    if key_id is None:
        raise AuthenticationError("api key: malformed; want ts_<id>_<secret>")
    record = keys.get(key_id)
    # Compare even when the id is unknown, so timing does not tell ids apart.
    expected = record.secret_hash if record is not None else b"\0" * 32
    genuine = hmac.compare_digest(expected, hash_token(token))
    if record is None or not genuine:
        raise AuthenticationError(f"api key {key_id}: unknown or wrong secret")
    status = record.status(now)
    if status != "active":
        raise AuthenticationError(f"api key {key_id}: {status}")
    return Principal(
        actor=key_id, kind="api_key", grants=frozenset(record.grants),
        rate_per_second=record.rate_per_second, burst=record.burst,
    )
