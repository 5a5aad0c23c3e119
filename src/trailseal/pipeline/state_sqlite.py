"""SQLite implementations of the pipeline's state Protocols (component ``pipeline`` migrations).

The tables live in the trail's database file, written through a connection of their own (WAL,
``synchronous=FULL``, ``secure_delete=ON`` so a redriven event's sealed original is zeroed when it
is cleared). Migrations are applied with ``SQLiteStore.apply_migrations("pipeline", MIGRATIONS)``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from trailseal.core.errors import ConflictError
from trailseal.pipeline.producers import ProducerStats, group_observations, observe_all
from trailseal.pipeline.sampling import Count
from trailseal.pipeline.state import PipelineState, QuarantineRecord
from trailseal.schema.registry import SchemaVersion
from trailseal.schema.validator import Violation
from trailseal.storage.sqlite import SQLiteStore

__all__ = ["MIGRATIONS", "SQLiteState", "open_sqlite_state"]

MIGRATIONS: tuple[str, ...] = (
    # 1: schemas, quarantine, policies, producer counters, sampling counters.
    """
    CREATE TABLE pipeline_schemas (
        log           TEXT    NOT NULL,
        key           TEXT    NOT NULL,
        version       INTEGER NOT NULL,
        document      BLOB    NOT NULL,
        compatibility TEXT    NOT NULL,
        created_at    TEXT    NOT NULL,
        PRIMARY KEY (log, key, version)
    ) WITHOUT ROWID;

    CREATE TABLE pipeline_quarantine (
        log           TEXT    NOT NULL,
        quarantine_id TEXT    NOT NULL,
        event_id      TEXT    NOT NULL,
        action        TEXT    NOT NULL,
        received_at   TEXT    NOT NULL,
        status        TEXT    NOT NULL,
        content_hash  BLOB    NOT NULL,
        record        BLOB    NOT NULL,
        sealed        BLOB,
        PRIMARY KEY (log, quarantine_id)
    );
    CREATE INDEX pipeline_quarantine_event ON pipeline_quarantine (log, event_id);

    CREATE TABLE pipeline_policies (
        log        TEXT PRIMARY KEY,
        policy     BLOB NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE pipeline_producers (
        log         TEXT NOT NULL,
        producer_id TEXT NOT NULL,
        stats       BLOB NOT NULL,
        PRIMARY KEY (log, producer_id)
    ) WITHOUT ROWID;

    CREATE TABLE pipeline_sampling (
        log            TEXT    NOT NULL,
        interval_start TEXT    NOT NULL,
        action         TEXT    NOT NULL,
        pattern        TEXT    NOT NULL,
        rate           REAL    NOT NULL,
        seen           INTEGER NOT NULL,
        kept           INTEGER NOT NULL,
        PRIMARY KEY (log, interval_start, action, pattern)
    ) WITHOUT ROWID;
    """,
)


def _record_json(record: QuarantineRecord) -> bytes:
    return orjson.dumps(
        {
            "violations": [v.to_json() for v in record.violations],
            "view": record.view,
            "schema_key": record.schema_key,
            "schema_version": record.schema_version,
            "redriven_at": record.redriven_at,
            "leaf_index": record.leaf_index,
        }
    )


def _record(row: Sequence[Any]) -> QuarantineRecord:
    log, qid, event_id, action, received_at, status, content_hash, record, sealed = row
    data = orjson.loads(record)
    return QuarantineRecord(
        quarantine_id=qid, log=log, event_id=event_id, action=action, received_at=received_at,
        violations=tuple(Violation.from_json(v) for v in data["violations"]), view=data["view"],
        sealed=bytes(sealed) if sealed is not None else None, content_hash=bytes(content_hash),
        schema_key=data.get("schema_key"), schema_version=data.get("schema_version"), status=status,
        redriven_at=data.get("redriven_at"), leaf_index=data.get("leaf_index"),
    )


def _stats_json(stats: ProducerStats) -> bytes:
    return orjson.dumps(
        {"events": stats.events, "first_seq": stats.first_seq, "max_seq": stats.max_seq,
         "gaps": stats.gaps, "duplicates": stats.duplicates, "late": stats.late,
         "last_seen": stats.last_seen, "missing": list(stats.missing)}
    )


def _stats(producer_id: str, blob: bytes) -> ProducerStats:
    data = orjson.loads(blob)
    return ProducerStats(
        producer_id, data["events"], data["first_seq"], data["max_seq"], data["gaps"],
        data["duplicates"], data["late"], data["last_seen"], tuple(data["missing"]),
    )


_QUARANTINE_COLUMNS = "log, quarantine_id, event_id, action, received_at, status, content_hash, record, sealed"


class SQLiteState:
    """All five stores on one connection to the trail's database."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        # Counters (producers, sampling) on a second connection with synchronous=NORMAL: their
        # WAL frames are made durable by the next fsync of the shared WAL (the trail's own commit
        # or a checkpoint), not by an fsync of their own on every request.
        self._counters = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._counters.execute("PRAGMA journal_mode=WAL")
        self._counters.execute("PRAGMA synchronous=NORMAL")
        self._counters.execute("PRAGMA busy_timeout=30000")
        self._counters_lock = threading.Lock()

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
        with self._counters_lock:
            self._counters.close()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, args)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- SchemaStore ------------------------------------------------------------------------------
    def list_schemas(self, log: str) -> list[SchemaVersion]:
        """Stored versions of ``log``."""
        rows = self._read(
            "SELECT key, version, document, compatibility, created_at FROM pipeline_schemas "
            "WHERE log = ? ORDER BY key, version", (log,),
        )
        return [SchemaVersion(k, int(v), orjson.loads(d), c, t) for k, v, d, c, t in rows]

    def add_schema(self, log: str, schema: SchemaVersion) -> None:
        """Insert a version."""
        try:
            self._write(
                "INSERT INTO pipeline_schemas (log, key, version, document, compatibility, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (log, schema.key, schema.version, orjson.dumps(schema.document), schema.compatibility, schema.created_at),
            )
        except sqlite3.IntegrityError:
            raise ConflictError(f"schema {schema.key} version {schema.version} already exists") from None

    # -- QuarantineStore --------------------------------------------------------------------------
    def put(self, record: QuarantineRecord) -> QuarantineRecord:
        """Insert unless the same event (id and content) is already waiting."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    f"SELECT {_QUARANTINE_COLUMNS} FROM pipeline_quarantine WHERE log = ? AND event_id = ? "
                    "AND content_hash = ? AND status = 'quarantined'",
                    (record.log, record.event_id, record.content_hash),
                ).fetchone()
                if row is None:
                    conn.execute(
                        f"INSERT INTO pipeline_quarantine ({_QUARANTINE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (record.log, record.quarantine_id, record.event_id, record.action, record.received_at,
                         record.status, record.content_hash, _record_json(record), record.sealed),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return record if row is None else _record(row)

    def get(self, log: str, quarantine_id: str) -> QuarantineRecord | None:
        """One record."""
        rows = self._read(
            f"SELECT {_QUARANTINE_COLUMNS} FROM pipeline_quarantine WHERE log = ? AND quarantine_id = ?",
            (log, quarantine_id),
        )
        return _record(rows[0]) if rows else None

    def list_quarantine(
        self, log: str, *, status: str | None = "quarantined", action: str | None = None,
        limit: int = 100, after: str | None = None,
    ) -> list[QuarantineRecord]:
        """Records by id."""
        sql = f"SELECT {_QUARANTINE_COLUMNS} FROM pipeline_quarantine WHERE log = ?"
        args: list[Any] = [log]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if action is not None:
            sql += " AND action = ?"
            args.append(action)
        if after is not None:
            sql += " AND quarantine_id > ?"
            args.append(after)
        sql += " ORDER BY quarantine_id LIMIT ?"
        args.append(limit)
        return [_record(row) for row in self._read(sql, args)]

    def update(self, record: QuarantineRecord) -> None:
        """Replace by id (a cleared ``sealed`` is zeroed on disk by secure_delete)."""
        self._write(
            "UPDATE pipeline_quarantine SET status = ?, record = ?, sealed = ? WHERE log = ? AND quarantine_id = ?",
            (record.status, _record_json(record), record.sealed, record.log, record.quarantine_id),
        )

    # -- PolicyStore ------------------------------------------------------------------------------
    def get_policy(self, log: str) -> Mapping[str, Any] | None:
        """Stored policy JSON."""
        rows = self._read("SELECT policy FROM pipeline_policies WHERE log = ?", (log,))
        return orjson.loads(rows[0][0]) if rows else None

    def set_policy(self, log: str, policy: Mapping[str, Any], at: str) -> None:
        """Replace."""
        self._write(
            "INSERT INTO pipeline_policies (log, policy, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (log) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
            (log, orjson.dumps(policy), at),
        )

    # -- ProducerStore ----------------------------------------------------------------------------
    def observe_many(self, log: str, observations: Sequence[tuple[str, int | None]], at: str) -> None:
        """Read-modify-write each producer's counters in one transaction."""
        if not observations:
            return
        with self._counters_lock:
            conn = self._counters
            conn.execute("BEGIN IMMEDIATE")
            try:
                current: dict[str, ProducerStats] = {}
                for producer_id, seqs in group_observations(observations).items():
                    row = conn.execute(
                        "SELECT stats FROM pipeline_producers WHERE log = ? AND producer_id = ?",
                        (log, producer_id),
                    ).fetchone()
                    stats = _stats(producer_id, row[0]) if row else ProducerStats(producer_id)
                    current[producer_id] = observe_all(stats, seqs, at)
                conn.executemany(
                    "INSERT INTO pipeline_producers (log, producer_id, stats) VALUES (?, ?, ?) "
                    "ON CONFLICT (log, producer_id) DO UPDATE SET stats = excluded.stats",
                    [(log, pid, _stats_json(s)) for pid, s in current.items()],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def list_producers(self, log: str) -> list[ProducerStats]:
        """Every producer of ``log``."""
        rows = self._read(
            "SELECT producer_id, stats FROM pipeline_producers WHERE log = ? ORDER BY producer_id", (log,)
        )
        return [_stats(pid, blob) for pid, blob in rows]

    # -- CountStore -------------------------------------------------------------------------------
    def add_counts(self, log: str, counts: Sequence[Count]) -> None:
        """Upsert-add."""
        if not counts:
            return
        with self._counters_lock:
            self._counters.executemany(
                "INSERT INTO pipeline_sampling (log, interval_start, action, pattern, rate, seen, kept) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (log, interval_start, action, pattern) DO UPDATE "
                "SET seen = seen + excluded.seen, kept = kept + excluded.kept, rate = excluded.rate",
                [(log, c.interval_start, c.action, c.pattern, c.rate, c.seen, c.kept) for c in counts],
            )

    def pending_counts(self) -> list[tuple[str, Count]]:
        """Everything pending."""
        rows = self._read(
            "SELECT log, interval_start, action, pattern, rate, seen, kept FROM pipeline_sampling "
            "ORDER BY log, interval_start, action, pattern"
        )
        return [(lg, Count(s, a, p, float(r), int(n), int(k))) for lg, s, a, p, r, n, k in rows]

    def clear_counts(self, log: str, interval_start: str) -> None:
        """Forget one interval."""
        self._write("DELETE FROM pipeline_sampling WHERE log = ? AND interval_start = ?", (log, interval_start))


def open_sqlite_state(store: SQLiteStore) -> tuple[PipelineState, SQLiteState]:
    """Apply the ``pipeline`` migrations to ``store`` and return the state on its database."""
    store.apply_migrations("pipeline", MIGRATIONS)
    sqlite_state = SQLiteState(store.path)
    state = PipelineState(
        schemas=sqlite_state, quarantine=sqlite_state, policies=sqlite_state,
        producers=sqlite_state, counts=sqlite_state,
    )
    return state, sqlite_state
