"""``SQLiteKeyStore``: API keys in the store's SQLite file, in the ``access`` tables.

The tables belong to the ``access`` component and evolve through their own numbered migrations,
applied with ``SQLiteStore.apply_migrations("access", MIGRATIONS)``. The key store opens its own
connections (one per thread) so ``trailseal keys`` can work on the data directory of a running
server: WAL lets both read and write, and each statement commits on its own.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson

from trailseal.access.apikeys import KeyRecord
from trailseal.access.roles import Grant, Role

#: Numbered migrations of the access component. Append; never edit an applied one.
MIGRATIONS: tuple[str, ...] = (
    # 1: API keys; grants is a JSON array of [tenant, role] pairs.
    """
    CREATE TABLE access_keys (
        key_id          TEXT PRIMARY KEY,
        secret_hash     BLOB NOT NULL,
        name            TEXT NOT NULL,
        grants          TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        created_by      TEXT NOT NULL,
        expires_at      TEXT,
        revoked_at      TEXT,
        rate_per_second REAL,
        burst           INTEGER,
        replaced_by     TEXT
    ) WITHOUT ROWID
    """,
)

_COLUMNS = (
    "key_id, secret_hash, name, grants, created_at, created_by, expires_at, revoked_at, "
    "rate_per_second, burst, replaced_by"
)


def _row(record: KeyRecord) -> tuple[Any, ...]:
    grants = orjson.dumps([[g.tenant, g.role.value] for g in record.grants]).decode()
    return (
        record.key_id, record.secret_hash, record.name, grants, record.created_at,
        record.created_by, record.expires_at, record.revoked_at, record.rate_per_second,
        record.burst, record.replaced_by,
    )


def _record(row: tuple[Any, ...]) -> KeyRecord:
    key_id, secret_hash, name, grants, created, by, expires, revoked, rate, burst, replaced = row
    return KeyRecord(
        key_id=key_id, name=name,
        grants=tuple(Grant(tenant, Role(role)) for tenant, role in orjson.loads(grants)),
        created_at=created, created_by=by, secret_hash=bytes(secret_hash), expires_at=expires,
        revoked_at=revoked, rate_per_second=rate, burst=burst, replaced_by=replaced,
    )


class SQLiteKeyStore:
    """A :class:`~trailseal.access.apikeys.KeyStore` over the SQLite file at ``path``.

    The caller applies :data:`MIGRATIONS` first (``open_key_store`` does).
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False,
                timeout=self._busy_timeout_ms / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def insert(self, record: KeyRecord) -> None:
        """Store a new key."""
        marks = ", ".join("?" * 11)
        self._conn.execute(f"INSERT INTO access_keys ({_COLUMNS}) VALUES ({marks})", _row(record))

    def get(self, key_id: str) -> KeyRecord | None:
        """The key, or ``None``."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM access_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        return _record(row) if row else None

    def list_keys(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM access_keys ORDER BY created_at, key_id"
        ).fetchall()
        return [_record(row) for row in rows]

    def update(self, record: KeyRecord) -> None:
        """Replace the stored key with ``record``."""
        values = _row(record)
        self._conn.execute(
            "UPDATE access_keys SET secret_hash = ?, name = ?, grants = ?, created_at = ?, "
            "created_by = ?, expires_at = ?, revoked_at = ?, rate_per_second = ?, burst = ?, "
            "replaced_by = ? WHERE key_id = ?",
            (*values[1:], values[0]),
        )

    def count(self) -> int:
        """Number of keys ever created."""
        return int(self._conn.execute("SELECT COUNT(*) FROM access_keys").fetchone()[0])

    def close(self) -> None:
        """Close every connection this key store opened."""
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()
