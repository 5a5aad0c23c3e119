"""Signing keys on disk: ``<data dir>/keys/<log>.json`` (mode 0600) and ``<log>.pub.json``.

The private file holds the whole keyring (every key the log ever used, the newest active); the
public file holds only verifier keys and is safe to hand to auditors.
"""

from __future__ import annotations

import os
import re
import tempfile
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


def _temp_private(path: Path, data: bytes) -> Path:
    """Write ``data`` fsync'd to a uniquely named 0600 file beside ``path``; return its name."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(name)


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` (mode 0600); safe against concurrent writers."""
    os.replace(_temp_private(path, data), path)


def create_private_file_once(path: Path, data: bytes) -> bytes:
    """Create ``path`` (0600) with ``data`` unless it exists; return the content that won.

    ``link(2)`` fails when the target exists, so of several processes creating the same secret
    at once exactly one succeeds and every other one reads the winner's bytes.
    """
    tmp = _temp_private(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return data


def save_keyring(data_dir: Path, log: str, keyring: Keyring) -> None:
    """Write the private keyring (0600, atomically) and the public verifier file."""
    write_private_file(_file(data_dir, log, ".json"), keyring.to_json())
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
    candidate = Keyring.generate(origin, created_at)
    stored = create_private_file_once(_file(data_dir, log, ".json"), candidate.to_json())
    keyring = Keyring.from_json(stored)
    _file(data_dir, log, ".pub.json").write_bytes(keyring.public_json())
    return keyring, stored == candidate.to_json()


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
