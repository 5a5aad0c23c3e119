"""Ed25519 log keys and their rotation.

A log signs checkpoints with one *active* key. Rotating adds a new key and retires the old
one, which is kept so that every checkpoint ever signed stays verifiable by its key ID: a note
verifier looks keys up by (name, key ID) and ignores unknown ones, which is what makes rotation
possible (tlog-checkpoint §Signatures; signed-note §Signatures). Every key of a log carries
the log's origin as its name, ``<server name>/<log>``.

JSON forms (UTF-8, orjson). :meth:`Keyring.to_json` holds private keys::

    {"version": 1, "name": "<server>/<log>", "keys": [
      {"key_id": "<hex8>", "created_at": "<RFC 3339>", "retired_at": "<RFC 3339>" | null,
       "signer_key": "PRIVATE+KEY+<name>+<hex8>+<base64>"}, ...]}     oldest first

:meth:`Keyring.public_json` is the same with ``"verifier_key": "<name>+<hex8>+<base64>"`` in
place of ``signer_key``; :func:`parse_public_json` reads it back as a :class:`VerifierSet`.
Times are passed in by the caller: this module reads no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from trailseal.core.errors import FormatError, NotFoundError
from trailseal.core.note import (
    Ed25519Signer,
    Ed25519Verifier,
    VerifierSet,
    check_name,
    format_signer_key,
    format_verifier_key,
    parse_signer_key,
    parse_verifier_key,
)

_JSON_VERSION = 1
# RFC 3339 §5.6 date-time; "T" and "Z" may be lowercase (§5.6 NOTE).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _parse_time(value: str, what: str) -> datetime:
    """Parse an RFC 3339 date-time with offset (leap second 60 is not accepted)."""
    if not _RFC3339.fullmatch(value):
        raise FormatError(f"{what}: not an rfc 3339 date-time: {value!r}")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise FormatError(f"{what}: not an rfc 3339 date-time: {value!r}") from exc


def _check_log_name(name: str) -> None:
    """Key names follow the origin convention ``<server name>/<log>``."""
    check_name(name, "log key name")
    server, _, log = name.partition("/")
    if not server or not log:
        raise FormatError(f"log key name: want <server name>/<log>, got {name!r}")


@dataclass(frozen=True)
class LogKey:
    """One signing key of a log, with the RFC 3339 times it was created and retired."""

    signer: Ed25519Signer
    created_at: str
    retired_at: str | None = None

    def __post_init__(self) -> None:
        _check_log_name(self.signer.name)
        created = _parse_time(self.created_at, "log key created_at")
        if (
            self.retired_at is not None
            and _parse_time(self.retired_at, "log key retired_at") < created
        ):
            raise FormatError(
                f"log key: retired_at {self.retired_at} is before created_at {self.created_at}"
            )

    @classmethod
    def generate(cls, name: str, created_at: str) -> LogKey:
        """Return a fresh active key named ``name`` (``<server name>/<log>``)."""
        return cls(Ed25519Signer.generate(name), created_at)

    @property
    def name(self) -> str:
        """The key name, equal to the log's origin."""
        return self.signer.name

    @property
    def key_id(self) -> int:
        """The uint32 key ID."""
        return self.signer.key_id

    @property
    def verifier(self) -> Ed25519Verifier:
        """The public half."""
        return self.signer.verifier()

    @property
    def active(self) -> bool:
        """Whether the key is not retired."""
        return self.retired_at is None

    def retire(self, retired_at: str) -> LogKey:
        """Return this key marked retired at ``retired_at``."""
        return LogKey(self.signer, self.created_at, retired_at)


@dataclass(frozen=True)
class Keyring:
    """All keys one log has used, oldest first; only the last is active.

    Immutable: :meth:`rotate` returns a new keyring. ``repr`` shows no private material, but
    :meth:`to_json` does.
    """

    keys: tuple[LogKey, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if not self.keys:
            raise FormatError("keyring: no keys")
        name = self.keys[0].name
        seen: set[int] = set()
        for i, key in enumerate(self.keys):
            if key.name != name:
                raise FormatError(f"keyring: key {i} is named {key.name!r}, want {name!r}")
            if key.key_id in seen:
                raise FormatError(f"keyring: duplicate key id {key.key_id:08x}")
            seen.add(key.key_id)
            if key.active != (i == len(self.keys) - 1):
                raise FormatError("keyring: exactly the newest key must be active")
        times = [_parse_time(key.created_at, "log key created_at") for key in self.keys]
        if times != sorted(times):
            raise FormatError("keyring: keys must be ordered by created_at, oldest first")

    @classmethod
    def generate(cls, name: str, created_at: str) -> Keyring:
        """Return a keyring with one fresh key named ``name`` (``<server name>/<log>``)."""
        return cls((LogKey.generate(name, created_at),))

    @property
    def name(self) -> str:
        """The key name shared by every key: the log's origin."""
        return self.keys[0].name

    @property
    def active(self) -> LogKey:
        """The key new checkpoints are signed with."""
        return self.keys[-1]

    @property
    def signer(self) -> Ed25519Signer:
        """The active key's signer."""
        return self.keys[-1].signer

    def rotate(self, new_key: LogKey) -> Keyring:
        """Return a keyring where ``new_key`` is active and the old active key is retired.

        The old key is retired at ``new_key.created_at`` and kept for verification. A new key
        whose key ID is already used (1 in 2**32) is refused: generate another one.
        """
        new, old = (_parse_time(k.created_at, "created_at") for k in (new_key, self.active))
        if new < old:
            raise FormatError(
                f"keyring: new key created_at {new_key.created_at} is before the active key's"
                f" {self.active.created_at}"
            )
        retired = self.active.retire(new_key.created_at)
        return Keyring((*self.keys[:-1], retired, new_key))

    def verifier_for(self, key_id: int) -> Ed25519Verifier:
        """The verifier of the key with ``key_id``, active or retired; NotFoundError if none."""
        for key in self.keys:
            if key.key_id == key_id:
                return key.verifier
        raise NotFoundError(f"keyring: no key with id {key_id:08x} for {self.name!r}")

    def verifiers(self) -> VerifierSet:
        """Verifiers for every key ever used, so every checkpoint signed stays verifiable."""
        return VerifierSet(key.verifier for key in self.keys)

    def to_json(self) -> bytes:
        """Serialize every key INCLUDING PRIVATE KEYS.

        The caller must write the result with file mode 0600 (or to a secret store) and never
        log it. Use :meth:`public_json` for anything shared.
        """
        return self._json(lambda key: {"signer_key": format_signer_key(key.signer)})

    def public_json(self) -> bytes:
        """Serialize the verifier keys and their times only; safe to publish."""
        return self._json(lambda key: {"verifier_key": format_verifier_key(key.verifier)})

    def _json(self, key_string: Callable[[LogKey], dict[str, str]]) -> bytes:
        keys = [
            {
                "key_id": f"{key.key_id:08x}",
                "created_at": key.created_at,
                "retired_at": key.retired_at,
                **key_string(key),
            }
            for key in self.keys
        ]
        doc = {"version": _JSON_VERSION, "name": self.name, "keys": keys}
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> Keyring:
        """Read :meth:`to_json` output back; malformed or inconsistent input is FormatError."""
        name, entries = _load(data, "signer_key")
        keys = []
        for entry in entries:
            signer = parse_signer_key(entry["signer_key"])
            _check_entry(name, signer.name, signer.key_id, entry)
            keys.append(LogKey(signer, entry["created_at"], entry["retired_at"]))
        return cls(tuple(keys))


def parse_public_json(data: bytes | str) -> VerifierSet:
    """Read :meth:`Keyring.public_json` output as the verifiers of every key it lists."""
    name, entries = _load(data, "verifier_key")
    verifiers = []
    for entry in entries:
        verifier = parse_verifier_key(entry["verifier_key"])
        _check_entry(name, verifier.name, verifier.key_id, entry)
        verifiers.append(verifier)
    return VerifierSet(verifiers)


def _load(data: bytes | str, key_field: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse keyring JSON and check its shape; return the log name and the key entries."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"keyring json: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("version") != _JSON_VERSION:
        raise FormatError(f"keyring json: want an object with version {_JSON_VERSION}")
    name, entries = doc.get("name"), doc.get("keys")
    if not isinstance(name, str):
        raise FormatError("keyring json: name must be a string")
    _check_log_name(name)
    if not isinstance(entries, list) or not entries:
        raise FormatError("keyring json: keys must be a non-empty list")
    fields = {"key_id", "created_at", "retired_at", key_field}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != fields:
            raise FormatError(f"keyring json: each key needs exactly {', '.join(sorted(fields))}")
        if not all(isinstance(entry[f], str) for f in ("key_id", "created_at", key_field)):
            raise FormatError("keyring json: key_id, created_at and the key must be strings")
        if not isinstance(entry["retired_at"], str | None):
            raise FormatError("keyring json: retired_at must be a string or null")
    return name, entries


def _check_entry(name: str, key_name: str, key_id: int, entry: dict[str, Any]) -> None:
    """The key string must agree with the document's name and the entry's ``key_id``."""
    if key_name != name:
        raise FormatError(f"keyring json: key named {key_name!r}, want {name!r}")
    if f"{key_id:08x}" != entry["key_id"]:
        raise FormatError(f"keyring json: key_id {entry['key_id']!r}, computed {key_id:08x}")
