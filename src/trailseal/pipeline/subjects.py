"""Per-data-subject AES-256 keys, and their destruction (crypto-shredding).

A subject is named by its tenant token (``tok_...`` of the subject id), never in plaintext. Each
subject has at most one active key; an encrypted field names its key by a random ``key_id``.
:meth:`SubjectKeyStore.forget` destroys every key of a subject: the ciphertexts stay in the trail
(leaf bytes never change) but can no longer be read, so they read as ``"erased"``. Data about the
same subject that arrives later is encrypted under a new key.

The SQLite implementation keeps the keys in their own database file (``<data dir>/keys/subjects.db``,
mode 0600), apart from the trail, with ``PRAGMA secure_delete=ON`` (deleted content is overwritten
with zeros) and a ``wal_checkpoint(TRUNCATE)`` after each forget so no copy stays in the WAL.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

__all__ = ["MemorySubjectKeys", "SQLiteSubjectKeys", "SubjectKeyStore"]


class SubjectKeyStore(Protocol):
    """Where subject keys live."""

    def key_for(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """``(key_id, key)``: the subject's active key, created when it has none."""

    def reserve(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """Like :meth:`key_for`, but a new key is only written by the next :meth:`commit`."""

    def commit(self) -> None:
        """Make every reserved key durable (one transaction); call before sequencing its data."""

    def get(self, log: str, key_id: str) -> bytes | None:
        """The key, or None once destroyed (or never made)."""

    def forget(self, log: str, subject: str, at: str) -> int:
        """Destroy every key of ``subject``; return how many were destroyed."""

    def close(self) -> None:
        """Release resources."""


def _new_key_id() -> str:
    return "k" + secrets.token_hex(10)


class MemorySubjectKeys:
    """In-memory :class:`SubjectKeyStore` for tests and embedding."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], tuple[str, bytes]] = {}  # (log, key_id) -> (subject, key)
        self._active: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def key_for(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """Active key, created on demand."""
        with self._lock:
            key_id = self._active.get((log, subject))
            if key_id is None:
                key_id = _new_key_id()
                self._keys[(log, key_id)] = (subject, secrets.token_bytes(32))
                self._active[(log, subject)] = key_id
            return key_id, self._keys[(log, key_id)][1]

    def reserve(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """Same as key_for (nothing to defer in memory)."""
        return self.key_for(log, subject, created_at)

    def commit(self) -> None:
        """Nothing to do."""

    def get(self, log: str, key_id: str) -> bytes | None:
        """The key or None."""
        found = self._keys.get((log, key_id))
        return found[1] if found else None

    def forget(self, log: str, subject: str, at: str) -> int:
        """Drop the subject's keys."""
        with self._lock:
            doomed = [k for k, (s, _) in self._keys.items() if k[0] == log and s == subject]
            for k in doomed:
                del self._keys[k]
            self._active.pop((log, subject), None)
            return len(doomed)

    def close(self) -> None:
        """Nothing to release."""


class SQLiteSubjectKeys:
    """Subject keys in their own SQLite file, deleted for real on :meth:`forget`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self.path = path
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], tuple[str, bytes, str]] = {}  # reserved, not yet written
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS subject_keys (
                key_id     TEXT PRIMARY KEY,
                log        TEXT NOT NULL,
                subject    TEXT NOT NULL,
                key        BLOB NOT NULL,
                created_at TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS subject_keys_subject ON subject_keys (log, subject);
            CREATE TABLE IF NOT EXISTS erasures (
                log        TEXT NOT NULL,
                subject    TEXT NOT NULL,
                keys       INTEGER NOT NULL,
                at         TEXT NOT NULL
            );
            """
        )

    def key_for(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """Active key, created on demand (committed with fsync before it is used)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT key_id, key FROM subject_keys WHERE log = ? AND subject = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (log, subject),
            ).fetchone()
            if row is not None:
                return str(row[0]), bytes(row[1])
            key_id, key = _new_key_id(), secrets.token_bytes(32)
            self._conn.execute(
                "INSERT INTO subject_keys (key_id, log, subject, key, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, log, subject, key, created_at),
            )
            return key_id, key

    def reserve(self, log: str, subject: str, created_at: str) -> tuple[str, bytes]:
        """The active key; a new one is kept in memory until :meth:`commit` (one fsync per batch)."""
        with self._lock:
            pending = self._pending.get((log, subject))
            if pending is not None:
                return pending[0], pending[1]
            row = self._conn.execute(
                "SELECT key_id, key FROM subject_keys WHERE log = ? AND subject = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (log, subject),
            ).fetchone()
            if row is not None:
                return str(row[0]), bytes(row[1])
            key_id, key = _new_key_id(), secrets.token_bytes(32)
            self._pending[(log, subject)] = (key_id, key, created_at)
            return key_id, key

    def commit(self) -> None:
        """Write every reserved key in one transaction (fsync'd: synchronous=FULL)."""
        with self._lock:
            if not self._pending:
                return
            rows = [(kid, log, subject, key, at) for (log, subject), (kid, key, at) in self._pending.items()]
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT INTO subject_keys (key_id, log, subject, key, created_at) VALUES (?, ?, ?, ?, ?)", rows
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._pending.clear()

    def get(self, log: str, key_id: str) -> bytes | None:
        """The key or None."""
        with self._lock:
            for kid, key, _ in self._pending.values():
                if kid == key_id:
                    return key
            row = self._conn.execute(
                "SELECT key FROM subject_keys WHERE log = ? AND key_id = ?", (log, key_id)
            ).fetchone()
        return bytes(row[0]) if row else None

    def forget(self, log: str, subject: str, at: str) -> int:
        """Delete (secure_delete zeroes the freed bytes), then checkpoint and truncate the WAL."""
        with self._lock:
            destroyed = 1 if self._pending.pop((log, subject), None) else 0
            cursor = self._conn.execute(
                "DELETE FROM subject_keys WHERE log = ? AND subject = ?", (log, subject)
            )
            destroyed += cursor.rowcount
            self._conn.execute(
                "INSERT INTO erasures (log, subject, keys, at) VALUES (?, ?, ?, ?)",
                (log, subject, destroyed, at),
            )
            # The WAL still holds the page images written when the key was created; fold them
            # into the (zeroed) database pages and cut the WAL file to zero bytes.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return destroyed

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
