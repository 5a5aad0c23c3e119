"""Signing keys on disk: ``<data dir>/keys/<log>.json`` (mode 0600) and ``<log>.pub.json``.

The private file holds the whole keyring (every key the log ever used, the newest active); the
public file holds only verifier keys and is safe to hand to auditors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from trailseal.core.keys import Keyring, LogKey
from trailseal.core.note import format_verifier_key

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def keys_dir(data_dir: Path) -> Path:
    """The key directory (mode 0700 when created)."""
    path = data_dir / "keys"
    if not path.exists():
        path.mkdir(parents=True, mode=0o700)
    return path


def _file(data_dir: Path, log: str, suffix: str) -> Path:
    if not _SAFE.match(log):
        raise ValueError(f"log name {log!r}: use 1-128 of [A-Za-z0-9_.-]")
    return keys_dir(data_dir) / f"{log}{suffix}"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def save_keyring(data_dir: Path, log: str, keyring: Keyring) -> None:
    """Write the private keyring (0600, atomically) and the public verifier file."""
    _write_private(_file(data_dir, log, ".json"), keyring.to_json())
    _file(data_dir, log, ".pub.json").write_bytes(keyring.public_json())


def load_keyring(data_dir: Path, log: str) -> Keyring | None:
    """The log's keyring, or ``None`` if none was generated yet."""
    path = _file(data_dir, log, ".json")
    if not path.exists():
        return None
    return Keyring.from_json(path.read_bytes())


def load_or_create_keyring(
    data_dir: Path, log: str, origin: str, created_at: str
) -> tuple[Keyring, bool]:
    """Load the keyring, generating one named ``origin`` on first use; ``(keyring, created)``."""
    found = load_keyring(data_dir, log)
    if found is not None:
        return found, False
    keyring = Keyring.generate(origin, created_at)
    save_keyring(data_dir, log, keyring)
    return keyring, True


def rotate_keyring(data_dir: Path, log: str, created_at: str) -> Keyring:
    """Generate a new active key for ``log``; the old one is retired but kept for verification."""
    keyring = load_keyring(data_dir, log)
    if keyring is None:
        raise FileNotFoundError(f"log {log!r} has no keyring in {data_dir}")
    rotated = keyring.rotate(LogKey.generate(keyring.name, created_at))
    save_keyring(data_dir, log, rotated)
    return rotated


def verifier_keys(keyring: Keyring) -> list[str]:
    """Every verifier key string (``name+hash+base64``), oldest first."""
    return [format_verifier_key(key.verifier) for key in keyring.keys]
