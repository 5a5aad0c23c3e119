"""SQLite :class:`~trailseal.storage.retention.RetentionStore`: the ``retention`` component.

Its tables live in the store's database file, created by its own numbered migrations
(``SQLiteStore.apply_migrations("retention", MIGRATIONS)``), and it writes through the store's
single writer connection and lock, so a prune batch is one ``BEGIN IMMEDIATE`` transaction
holding the tombstones, the prune records and the checks that guard them.

Other features that keep their own index of entries (full text, ...) register a
:data:`PruneHook` with :func:`register_prune_hook`; it runs inside that transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

from trailseal.core.errors import ConflictError
from trailseal.storage.base import LeafEntry, PruneMark
from trailseal.storage.retention import (
    HoldRecord,
    HoldsChanged,
    PolicyRecord,
    PruneRecord,
    RunRecord,
    SegmentRecord,
)
from trailseal.storage.sqlite.store import SQLiteStore

MIGRATIONS: tuple[str, ...] = (
    # 1: policies, holds (+ per-log version), segments, prune records, run journal.
    """
    CREATE TABLE retention_policies (
        name        TEXT PRIMARY KEY,
        log         TEXT NOT NULL,
        action      TEXT NOT NULL,
        keep_days   INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        updated_by  TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE retention_holds (
        hold_id        TEXT PRIMARY KEY,
        log            TEXT NOT NULL,
        case_ref       TEXT NOT NULL,
        owner          TEXT NOT NULL,
        selector       TEXT NOT NULL,
        created_at     TEXT NOT NULL,
        created_by     TEXT NOT NULL,
        reason         TEXT NOT NULL DEFAULT '',
        expires_at     TEXT,
        released_at    TEXT,
        released_by    TEXT,
        release_reason TEXT,
        updated_at     TEXT NOT NULL
    );
    CREATE INDEX retention_holds_log ON retention_holds (log);
    CREATE TABLE retention_holds_version (
        log      TEXT PRIMARY KEY,
        version  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE retention_segments (
        log             TEXT    NOT NULL,
        segment_id      TEXT    NOT NULL,
        start_index     INTEGER NOT NULL,
        end_index       INTEGER NOT NULL,
        checkpoint_size INTEGER NOT NULL,
        segment_hash    BLOB    NOT NULL,
        data_sha256     BLOB    NOT NULL,
        target          TEXT    NOT NULL,
        data_key        TEXT    NOT NULL,
        manifest_key    TEXT    NOT NULL,
        raw_bytes       INTEGER NOT NULL,
        stored_bytes    INTEGER NOT NULL,
        created_at      TEXT    NOT NULL,
        lock_until      TEXT,
        PRIMARY KEY (log, start_index)
    ) WITHOUT ROWID;
    CREATE TABLE retention_pruned (
        log            TEXT    NOT NULL,
        leaf_index     INTEGER NOT NULL,
        policy         TEXT    NOT NULL,
        pruned_at      TEXT    NOT NULL,
        segment_id     TEXT    NOT NULL,
        run_id         TEXT    NOT NULL,
        state          TEXT    NOT NULL DEFAULT 'pruned',
        restored_at    TEXT,
        restored_until TEXT,
        PRIMARY KEY (log, leaf_index)
    ) WITHOUT ROWID;
    CREATE TABLE retention_runs (
        run_id      TEXT PRIMARY KEY,
        log         TEXT    NOT NULL,
        started_at  TEXT    NOT NULL,
        horizon     TEXT    NOT NULL,
        actor       TEXT    NOT NULL,
        state       TEXT    NOT NULL,
        segments    INTEGER NOT NULL DEFAULT 0,
        pruned      INTEGER NOT NULL DEFAULT 0,
        held        INTEGER NOT NULL DEFAULT 0,
        finished_at TEXT,
        recorded    INTEGER NOT NULL DEFAULT 0,
        resumed     INTEGER NOT NULL DEFAULT 0,
        detail      TEXT    NOT NULL DEFAULT '{}'
    );
    CREATE INDEX retention_runs_log ON retention_runs (log, started_at)
    """,
    # 2: find restored leaves without scanning every prune record.
    """
    CREATE INDEX retention_pruned_restored ON retention_pruned (log, leaf_index)
        WHERE state = 'restored'
    """,
)

#: ``hook(connection, log, leaf_indexes)``: runs inside the prune transaction (and the restore
#: transaction, with the restored leaves) so a feature's own index never outlives a payload.
PruneHook = Callable[[sqlite3.Connection, str, Sequence[int]], None]
_PRUNE_HOOKS: list[PruneHook] = []
_RESTORE_HOOKS: list[PruneHook] = []


def register_prune_hook(on_prune: PruneHook, on_restore: PruneHook | None = None) -> None:
    """Have ``on_prune`` (and ``on_restore``) run in every prune (restore) transaction."""
    if on_prune not in _PRUNE_HOOKS:
        _PRUNE_HOOKS.append(on_prune)
    if on_restore is not None and on_restore not in _RESTORE_HOOKS:
        _RESTORE_HOOKS.append(on_restore)


_HOLD_COLUMNS = (
    "hold_id, log, case_ref, owner, selector, created_at, created_by, reason, expires_at, "
    "released_at, released_by, release_reason, updated_at"
)
_SEGMENT_COLUMNS = (
    "log, segment_id, start_index, end_index, checkpoint_size, segment_hash, data_sha256, "
    "target, data_key, manifest_key, raw_bytes, stored_bytes, created_at, lock_until"
)
_PRUNED_COLUMNS = (
    "log, leaf_index, policy, pruned_at, segment_id, run_id, state, restored_at, restored_until"
)
_RUN_COLUMNS = (
    "run_id, log, started_at, horizon, actor, state, segments, pruned, held, finished_at, "
    "recorded, resumed, detail"
)
_CHUNK = 500


def _hold(row: tuple[Any, ...]) -> HoldRecord:
    values = list(row)
    values[4] = orjson.loads(values[4])
    return HoldRecord(*values)


def _segment(row: tuple[Any, ...]) -> SegmentRecord:
    values = list(row)
    values[5], values[6] = bytes(values[5]), bytes(values[6])
    return SegmentRecord(*values)


def _run(row: tuple[Any, ...]) -> RunRecord:
    values = list(row)
    values[10] = bool(values[10])
    values[12] = orjson.loads(values[12])
    return RunRecord(*values)


class SQLiteRetentionStore:
    """Retention state in the store's database; writes share the store's writer and lock.

    It uses the store's connections directly (``_writer``, ``_write_lock``, ``_reader``): the
    prune transaction must hold the entries' rows and its own in one ``BEGIN IMMEDIATE``.
    """

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        store.apply_migrations("retention", MIGRATIONS)

    def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.store._write_lock:
            return self.store._writer.execute(sql, params).rowcount

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.store._reader.execute(sql, params).fetchall()

    # -- policies ----------------------------------------------------------------------------
    def list_policies(self) -> list[PolicyRecord]:
        """Every policy, by name."""
        rows = self._read(
            "SELECT name, log, action, keep_days, created_at, updated_at, updated_by "
            "FROM retention_policies ORDER BY name"
        )
        return [PolicyRecord(*row) for row in rows]

    def put_policy(self, policy: PolicyRecord) -> None:
        """Create or replace."""
        self._write(
            "INSERT OR REPLACE INTO retention_policies VALUES (?, ?, ?, ?, ?, ?, ?)",
            (policy.name, policy.log, policy.action, policy.keep_days, policy.created_at,
             policy.updated_at, policy.updated_by),
        )

    def delete_policy(self, name: str) -> bool:
        """Remove; whether it existed."""
        return self._write("DELETE FROM retention_policies WHERE name = ?", (name,)) > 0

    # -- holds -------------------------------------------------------------------------------
    def put_hold(self, hold: HoldRecord) -> None:
        """Create or replace the hold and bump its log's version, in one transaction."""
        with self.store._write_lock:
            conn = self.store._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    f"INSERT OR REPLACE INTO retention_holds ({_HOLD_COLUMNS}) "
                    f"VALUES ({', '.join('?' * 13)})",
                    (hold.hold_id, hold.log, hold.case_ref, hold.owner,
                     orjson.dumps(dict(hold.selector)).decode(), hold.created_at,
                     hold.created_by, hold.reason, hold.expires_at, hold.released_at,
                     hold.released_by, hold.release_reason, hold.updated_at),
                )
                conn.execute(
                    "INSERT INTO retention_holds_version (log, version) VALUES (?, 1) "
                    "ON CONFLICT (log) DO UPDATE SET version = version + 1",
                    (hold.log,),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def get_hold(self, hold_id: str) -> HoldRecord | None:
        """The hold, or ``None``."""
        rows = self._read(f"SELECT {_HOLD_COLUMNS} FROM retention_holds WHERE hold_id = ?",
                          (hold_id,))
        return _hold(rows[0]) if rows else None

    def list_holds(self, log: str | None = None) -> list[HoldRecord]:
        """Holds, oldest first."""
        if log is None:
            rows = self._read(f"SELECT {_HOLD_COLUMNS} FROM retention_holds "
                              "ORDER BY created_at, hold_id")
        else:
            rows = self._read(f"SELECT {_HOLD_COLUMNS} FROM retention_holds WHERE log = ? "
                              "ORDER BY created_at, hold_id", (log,))
        return [_hold(row) for row in rows]

    def holds_version(self, log: str) -> int:
        """The log's hold write counter."""
        rows = self._read("SELECT version FROM retention_holds_version WHERE log = ?", (log,))
        return int(rows[0][0]) if rows else 0

    # -- segments ----------------------------------------------------------------------------
    def add_segment(self, segment: SegmentRecord) -> None:
        """Append a sealed segment (idempotent for the same id); it must continue the range."""
        s = segment
        with self.store._write_lock:
            conn = self.store._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                known = conn.execute(
                    "SELECT segment_id FROM retention_segments WHERE log = ? AND start_index = ?",
                    (s.log, s.start),
                ).fetchone()
                if known is not None and known[0] == s.segment_id:
                    conn.execute("COMMIT")
                    return
                row = conn.execute(
                    "SELECT MAX(end_index) FROM retention_segments WHERE log = ?", (s.log,)
                ).fetchone()
                end = int(row[0] or 0)
                if s.start != end:
                    raise ConflictError(
                        f"archive: segment {s.segment_id} starts at {s.start}, want {end} "
                        f"(the archived end of log {s.log})"
                    )
                conn.execute(
                    f"INSERT INTO retention_segments ({_SEGMENT_COLUMNS}) "
                    f"VALUES ({', '.join('?' * 14)})",
                    (s.log, s.segment_id, s.start, s.end, s.checkpoint_size, s.segment_hash,
                     s.data_sha256, s.target, s.data_key, s.manifest_key, s.raw_bytes,
                     s.stored_bytes, s.created_at, s.lock_until),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def list_segments(self, log: str) -> list[SegmentRecord]:
        """Segments in leaf order."""
        rows = self._read(f"SELECT {_SEGMENT_COLUMNS} FROM retention_segments WHERE log = ? "
                          "ORDER BY start_index", (log,))
        return [_segment(row) for row in rows]

    def archived_end(self, log: str) -> int:
        """End of the archived range."""
        rows = self._read("SELECT MAX(end_index) FROM retention_segments WHERE log = ?", (log,))
        return int(rows[0][0] or 0)

    # -- pruning -----------------------------------------------------------------------------
    def prune(
        self, log: str, items: Sequence[tuple[int, PruneMark]], run_id: str, holds_version: int
    ) -> int:
        """One transaction: check holds version and archive coverage, tombstone, record."""
        with self.store._write_lock:
            conn = self.store._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT version FROM retention_holds_version WHERE log = ?", (log,)
                ).fetchone()
                if (int(row[0]) if row else 0) != holds_version:
                    raise HoldsChanged(f"retention: holds of log {log} changed during the run")
                row = conn.execute(
                    "SELECT MAX(end_index) FROM retention_segments WHERE log = ?", (log,)
                ).fetchone()
                end = int(row[0] or 0)
                late = [i for i, _ in items if i >= end]
                if late:
                    raise ConflictError(
                        f"retention: leaf {min(late)} of log {log} is not archived "
                        f"(archived end {end}); refusing to prune"
                    )
                done: set[int] = set()
                indexes = [i for i, _ in items]
                for at in range(0, len(indexes), _CHUNK):
                    chunk = indexes[at : at + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    done.update(int(i) for (i,) in conn.execute(
                        f"SELECT leaf_index FROM retention_pruned WHERE log = ? AND state = "
                        f"'pruned' AND leaf_index IN ({marks})", [log, *chunk]))
                todo = [(i, mark) for i, mark in items if i not in done]
                conn.executemany(
                    "UPDATE entries SET body = ?, action = '', actor_id = '', "
                    "resource_type = '', resource_id = '', outcome = NULL, request_id = NULL, "
                    "trace_id = NULL, source_service = NULL WHERE log = ? AND leaf_index = ?",
                    [(mark.tombstone(), log, i) for i, mark in todo],
                )
                conn.executemany(
                    f"INSERT OR REPLACE INTO retention_pruned ({_PRUNED_COLUMNS}) "
                    f"VALUES (?, ?, ?, ?, ?, ?, 'pruned', NULL, NULL)",
                    [(log, i, m.policy, m.pruned_at, m.segment, run_id) for i, m in todo],
                )
                for hook in _PRUNE_HOOKS:
                    hook(conn, log, [i for i, _ in todo])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(todo)

    def restore(
        self, log: str, entries: Sequence[LeafEntry], restored_at: str, restored_until: str
    ) -> int:
        """Write bodies back over tombstones with the same leaf hash; mark records restored."""
        with self.store._write_lock:
            conn = self.store._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                restored: list[int] = []
                for e in entries:
                    cursor = conn.execute(
                        "UPDATE entries SET body = ?, time = ?, action = ?, actor_id = ?, "
                        "resource_type = ?, resource_id = ?, outcome = ?, request_id = ?, "
                        "trace_id = ?, source_service = ? WHERE log = ? AND leaf_index = ? AND "
                        "leaf_hash = ? AND substr(body, 1, 1) = x'00' AND EXISTS (SELECT 1 FROM "
                        "retention_pruned p WHERE p.log = entries.log AND p.leaf_index = "
                        "entries.leaf_index)",
                        (e.body, e.time, e.action, e.actor_id, e.resource_type, e.resource_id,
                         e.outcome, e.request_id, e.trace_id, e.source_service, log,
                         e.leaf_index, e.leaf_hash),
                    )
                    if cursor.rowcount:
                        restored.append(e.leaf_index)
                conn.executemany(
                    "UPDATE retention_pruned SET state = 'restored', restored_at = ?, "
                    "restored_until = ? WHERE log = ? AND leaf_index = ?",
                    [(restored_at, restored_until, log, i) for i in restored],
                )
                for hook in _RESTORE_HOOKS:
                    hook(conn, log, restored)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(restored)

    def prune_records(
        self, log: str, start: int = 0, end: int | None = None
    ) -> Iterator[PruneRecord]:
        """Records in ``[start, end)``, read in pages."""
        stop = end if end is not None else 2**63 - 1
        cursor = start
        while cursor < stop:
            rows = self._read(
                f"SELECT {_PRUNED_COLUMNS} FROM retention_pruned WHERE log = ? AND "
                f"leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index LIMIT 5000",
                (log, cursor, stop),
            )
            if not rows:
                return
            for row in rows:
                yield PruneRecord(*row)
            cursor = int(rows[-1][1]) + 1

    def restored_records(self, log: str) -> list[PruneRecord]:
        """Records in state ``restored``, in leaf order."""
        rows = self._read(f"SELECT {_PRUNED_COLUMNS} FROM retention_pruned WHERE log = ? AND "
                          "state = 'restored' ORDER BY leaf_index", (log,))
        return [PruneRecord(*row) for row in rows]

    def get_prune_record(self, log: str, leaf_index: int) -> PruneRecord | None:
        """The leaf's record."""
        rows = self._read(f"SELECT {_PRUNED_COLUMNS} FROM retention_pruned WHERE log = ? "
                          "AND leaf_index = ?", (log, leaf_index))
        return PruneRecord(*rows[0]) if rows else None

    def count_pruned(self, log: str) -> tuple[int, int]:
        """``(pruned, restored)``."""
        rows = self._read(
            "SELECT SUM(state = 'pruned'), SUM(state = 'restored') FROM retention_pruned "
            "WHERE log = ?", (log,),
        )
        return int(rows[0][0] or 0), int(rows[0][1] or 0)

    # -- runs --------------------------------------------------------------------------------
    def put_run(self, run: RunRecord) -> None:
        """Create or replace."""
        self._write(
            f"INSERT OR REPLACE INTO retention_runs ({_RUN_COLUMNS}) "
            f"VALUES ({', '.join('?' * 13)})",
            (run.run_id, run.log, run.started_at, run.horizon, run.actor, run.state,
             run.segments, run.pruned, run.held, run.finished_at, int(run.recorded),
             run.resumed, orjson.dumps(dict(run.detail)).decode()),
        )

    def open_runs(self, log: str | None = None) -> list[RunRecord]:
        """Unfinished or unrecorded runs, oldest first."""
        where = "(state != 'done' OR recorded = 0)"
        if log is None:
            rows = self._read(f"SELECT {_RUN_COLUMNS} FROM retention_runs WHERE {where} "
                              "ORDER BY started_at")
        else:
            rows = self._read(f"SELECT {_RUN_COLUMNS} FROM retention_runs WHERE log = ? AND "
                              f"{where} ORDER BY started_at", (log,))
        return [_run(row) for row in rows]

    def list_runs(self, log: str, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM retention_runs WHERE log = ? "
                          "ORDER BY started_at DESC LIMIT ?", (log, limit))
        return [_run(row) for row in rows]
