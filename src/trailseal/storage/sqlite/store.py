"""``SQLiteStore``: one writer connection, one reader connection per thread.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` makes every commit fsync the WAL
before :meth:`SQLiteStore.append` returns, so an acknowledged batch survives kill -9 and power
loss (ARCHITECTURE.md §3, invariant 1).
"""

from __future__ import annotations

import operator
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trailseal.core.errors import ConflictError
from trailseal.storage.base import (
    CheckpointRecord,
    LeafEntry,
    LogInfo,
    SignCallback,
    TileWrite,
)
from trailseal.storage.sqlite.migrations import MIGRATIONS

_ENTRY_COLUMNS = (
    "log, leaf_index, event_id, leaf_hash, content_hash, body, time, received_at, action, "
    "actor_id, resource_type, resource_id, outcome, request_id, trace_id, source_service"
)
_INSERT_ENTRY = f"INSERT INTO entries ({_ENTRY_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_LOOKUP_CHUNK = 500  # stays well under SQLITE_MAX_VARIABLE_NUMBER

#: ``hook(connection, log, entries)``: runs inside every append transaction right after the
#: entries are inserted, so a feature's derived tables (the query full-text index) commit or roll
#: back with them. Raising aborts the batch.
AppendHook = Callable[[sqlite3.Connection, str, Sequence[LeafEntry]], None]


_row: Callable[[LeafEntry], tuple[object, ...]] = operator.attrgetter(  # the INSERT's column order
    "log", "leaf_index", "event_id", "leaf_hash", "content_hash", "body", "time", "received_at", "action",
    "actor_id", "resource_type", "resource_id", "outcome", "request_id", "trace_id", "source_service",
)


def _entry(row: tuple[Any, ...]) -> LeafEntry:
    return LeafEntry(*row)


def _checkpoint(row: tuple[Any, ...]) -> CheckpointRecord:
    log, size, root, note, created = row
    return CheckpointRecord(str(log), int(size), bytes(root), bytes(note), str(created))


class SQLiteStore:
    """The embedded store. ``path`` is the database file (``:memory:`` is not supported)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._append_hooks: list[AppendHook] = []
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._writer = self._connect()
        self.migrate()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout_ms / 1000
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._all.append(conn)
        return conn

    @property
    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def checkpoint_in_background(self, interval: float = 0.25) -> None:
        """Move WAL checkpoints off the commit path (for a process that commits under load).

        By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages,
        so that one commit copies the WAL into the database and fsyncs it: a latency spike for
        every event in the batch. Here the writer connection never checkpoints; a thread runs
        ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds on its own connection,
        which copies what it can without blocking the writer (commits go on appending to the
        WAL meanwhile). Durability is unchanged: a commit is durable once its WAL frames are
        synced, checkpointed or not.
        """
        if self._checkpointer is not None:
            return
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        conn = self._connect()

        def run() -> None:
            while not self._stop_checkpoints.wait(interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:  # closed under us at shutdown, or busy: next round
                    if self._stop_checkpoints.is_set():
                        return

        self._checkpointer = threading.Thread(target=run, name="sqlite-checkpoints", daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        """Close every connection this store opened."""
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
            self._checkpointer = None
        for conn in self._all:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._all.clear()
        self._local = threading.local()

    def add_append_hook(self, hook: AppendHook) -> None:
        """Run ``hook`` inside every later append transaction (see :data:`AppendHook`)."""
        if hook not in self._append_hooks:
            self._append_hooks.append(hook)

    def migrate(self) -> int:
        """Apply pending core migrations; return the core schema version now in force."""
        return self.apply_migrations("core", MIGRATIONS)

    def apply_migrations(self, component: str, scripts: Sequence[str]) -> int:
        """Apply ``scripts[version:]`` of ``component`` in order, each in its own transaction.

        Each feature (core, query, access, ...) keeps its own numbered list, so features evolve
        their tables independently; ``schema_migrations`` records what was applied.
        """
        with self._write_lock:
            conn = self._writer
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
                "version INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, "
                "PRIMARY KEY (component, version))"
            )
            for number, script in enumerate(scripts, start=1):
                # The check runs inside the write transaction: several processes opening a new
                # file at once apply each migration exactly once.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    done = conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                        (component, number),
                    ).fetchone()
                    if done:
                        conn.execute("COMMIT")
                        continue
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                        (component, number),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            return len(scripts)

    # -- logs --------------------------------------------------------------------------------
    def ensure_log(self, name: str, origin: str, created_at: str) -> LogInfo:
        """Create the log if absent; return it."""
        with self._write_lock:
            self._writer.execute(
                "INSERT OR IGNORE INTO logs (name, origin, created_at) VALUES (?, ?, ?)",
                (name, origin, created_at),
            )
        info = self.get_log(name)
        assert info is not None
        return info

    def get_log(self, name: str) -> LogInfo | None:
        """The log, or ``None``."""
        row = self._reader.execute(
            "SELECT name, origin, created_at FROM logs WHERE name = ?", (name,)
        ).fetchone()
        return LogInfo(*row) if row else None

    def list_logs(self) -> list[LogInfo]:
        """Every log, by name."""
        rows = self._reader.execute("SELECT name, origin, created_at FROM logs ORDER BY name")
        return [LogInfo(*row) for row in rows]

    def tree_size(self, log: str) -> int:
        """Number of stored leaves: one past the largest leaf index."""
        row = self._reader.execute(
            "SELECT MAX(leaf_index) FROM entries WHERE log = ?", (log,)
        ).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    # -- append ------------------------------------------------------------------------------
    def append(
        self,
        log: str,
        entries: Sequence[LeafEntry],
        tiles: Sequence[TileWrite],
        sign: SignCallback,
    ) -> CheckpointRecord:
        """One ``BEGIN IMMEDIATE`` transaction: entries, tiles, signed checkpoint, fsync'd commit."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT MAX(leaf_index) FROM entries WHERE log = ?", (log,)
                ).fetchone()
                size = 0 if row[0] is None else int(row[0]) + 1
                if entries and entries[0].leaf_index != size:
                    raise ConflictError(
                        f"append: leaf index {entries[0].leaf_index} does not continue tree size {size}"
                    )
                try:
                    conn.executemany(_INSERT_ENTRY, map(_row, entries))
                except sqlite3.IntegrityError as exc:
                    raise ConflictError(f"append: {exc}") from exc
                for hook in self._append_hooks:
                    hook(conn, log, entries)
                conn.executemany(
                    "INSERT OR REPLACE INTO tiles (log, level, idx, data) VALUES (?, ?, ?, ?)",
                    [(log, t.level, t.index, t.data) for t in tiles],
                )

                def read_tile(level: int, index: int) -> bytes | None:
                    got = conn.execute(
                        "SELECT data FROM tiles WHERE log = ? AND level = ? AND idx = ?",
                        (log, level, index),
                    ).fetchone()
                    return bytes(got[0]) if got else None

                record = sign(read_tile)
                conn.execute(
                    "INSERT INTO checkpoints (log, tree_size, root_hash, note, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.log, record.tree_size, record.root_hash, record.note, record.created_at),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return record

    # -- reads -------------------------------------------------------------------------------
    def read_tile(self, log: str, level: int, index: int) -> bytes | None:
        """Tile data, or ``None``."""
        row = self._reader.execute(
            "SELECT data FROM tiles WHERE log = ? AND level = ? AND idx = ?", (log, level, index)
        ).fetchone()
        return bytes(row[0]) if row else None

    def lookup_ids(self, log: str, event_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Stored ids among ``event_ids`` (chunked ``IN`` queries on the unique index)."""
        found: dict[str, tuple[int, bytes]] = {}
        conn = self._reader
        for start in range(0, len(event_ids), _LOOKUP_CHUNK):
            chunk = list(event_ids[start : start + _LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT event_id, leaf_index, content_hash FROM entries "
                f"WHERE log = ? AND event_id IN ({marks})",
                [log, *chunk],
            )
            for event_id, index, content_hash in rows:
                found[event_id] = (int(index), bytes(content_hash))
        return found

    def get_entry(self, log: str, leaf_index: int) -> LeafEntry | None:
        """Entry at ``leaf_index``."""
        row = self._reader.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE log = ? AND leaf_index = ?",
            (log, leaf_index),
        ).fetchone()
        return _entry(row) if row else None

    def get_entry_by_id(self, log: str, event_id: str) -> LeafEntry | None:
        """Entry by idempotency key."""
        row = self._reader.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE log = ? AND event_id = ?",
            (log, event_id),
        ).fetchone()
        return _entry(row) if row else None

    def iter_entries(self, log: str, start: int = 0, end: int | None = None) -> Iterator[LeafEntry]:
        """Entries in ``[start, end)`` in leaf order, read in pages on a private connection."""
        stop = end if end is not None else 2**63 - 1
        conn = self._reader
        cursor = start
        while cursor < stop:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE log = ? AND leaf_index >= ? "
                f"AND leaf_index < ? ORDER BY leaf_index LIMIT 2000",
                (log, cursor, stop),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _entry(row)
            cursor = int(rows[-1][1]) + 1

    def latest_checkpoint(self, log: str) -> CheckpointRecord | None:
        """Largest checkpoint."""
        row = self._reader.execute(
            "SELECT log, tree_size, root_hash, note, created_at FROM checkpoints "
            "WHERE log = ? ORDER BY tree_size DESC LIMIT 1",
            (log,),
        ).fetchone()
        return _checkpoint(row) if row else None

    def checkpoint_covering(self, log: str, leaf_index: int) -> CheckpointRecord | None:
        """Smallest checkpoint with ``tree_size > leaf_index``."""
        row = self._reader.execute(
            "SELECT log, tree_size, root_hash, note, created_at FROM checkpoints "
            "WHERE log = ? AND tree_size > ? ORDER BY tree_size LIMIT 1",
            (log, leaf_index),
        ).fetchone()
        return _checkpoint(row) if row else None

    def get_checkpoint(self, log: str, tree_size: int) -> CheckpointRecord | None:
        """Checkpoint at exactly ``tree_size``."""
        row = self._reader.execute(
            "SELECT log, tree_size, root_hash, note, created_at FROM checkpoints "
            "WHERE log = ? AND tree_size = ?",
            (log, tree_size),
        ).fetchone()
        return _checkpoint(row) if row else None

    def iter_checkpoints(self, log: str) -> Iterator[CheckpointRecord]:
        """Checkpoints by increasing size."""
        rows = self._reader.execute(
            "SELECT log, tree_size, root_hash, note, created_at FROM checkpoints "
            "WHERE log = ? ORDER BY tree_size",
            (log,),
        ).fetchall()
        return iter([_checkpoint(row) for row in rows])
