"""``SQLiteSearch``: the :class:`~trailseal.query.search.SearchStore` of the SQLite backend.

Schema (component ``query``, applied with ``SQLiteStore.apply_migrations``)::

    q_entries_time    ON entries (log, time, leaf_index)            time ranges, newest/oldest
    q_entries_action  ON entries (log, action, time, leaf_index)    action:x, action:iam.role.*
    q_entries_actor   ON entries (log, actor_id, time, leaf_index)  actor.id:x (skewed: ordered)
    q_text            FTS5, contentless, unicode61; rowid = log_id << 40 | leaf_index
    q_logs            log -> log_id, and indexed_end: leaves [0, indexed_end) are in q_text

Why these: the three B-tree indexes end in ``(time, leaf_index)`` so the commonest filters come
out already in result order (a page of a heavy actor costs a page of index reads, never a
sort); their keys are append-mostly, so each batch dirties few pages. High-cardinality values
(request, trace and span ids, resource ids, IPs, metadata values) would each need a B-tree with
random keys — one dirtied page per event per index at scale — so they are found through the
full-text index instead (an LSM: one new segment per batch) and then checked exactly. Existing
indexes (the primary key, ``(log, event_id)``) serve ``leaf_index:`` and ``id:``.

The full-text rows are written inside the append transaction by an append hook (an FTS5 insert
from a trigger would flush a segment per row), from the stored bytes, so search never lags
ingest. Pruned entries (tombstone bodies) keep their tokens in the contentless index but every
full-text match is checked against the body, so a pruned payload is never found by its text.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from trailseal.query.ast import AnyOf, Compare, Node, Pattern, Text, all_of, conjuncts
from trailseal.query.compiler import Fragment, compile_where
from trailseal.query.search import Order, Position
from trailseal.query.sqlite_dialect import LOG_SHIFT, SQLiteDialect, fts_string
from trailseal.query.text import body_text
from trailseal.storage.base import LeafEntry
from trailseal.storage.sqlite.store import SQLiteStore

MIGRATIONS: tuple[str, ...] = (
    # 1: ordered indexes, the full-text index and its per-log bookkeeping.
    """
    CREATE INDEX q_entries_time ON entries (log, time, leaf_index);
    CREATE INDEX q_entries_action ON entries (log, action, time, leaf_index);
    CREATE INDEX q_entries_actor ON entries (log, actor_id, time, leaf_index);
    CREATE VIRTUAL TABLE q_text USING fts5(text, content='', tokenize='unicode61');
    CREATE TABLE q_logs (
        log          TEXT PRIMARY KEY,
        log_id       INTEGER NOT NULL UNIQUE,
        indexed_end  INTEGER NOT NULL DEFAULT 0
    )
    """,
)

_COLUMNS = (
    "e.log, e.leaf_index, e.event_id, e.leaf_hash, e.content_hash, e.body, e.time, "
    "e.received_at, e.action, e.actor_id, e.resource_type, e.resource_id, e.outcome, "
    "e.request_id, e.trace_id, e.source_service"
)
_CATCH_UP_BATCH = 5000
_instances: weakref.WeakKeyDictionary[SQLiteStore, SQLiteSearch] = weakref.WeakKeyDictionary()
_instances_lock = threading.Lock()


def _entry(row: tuple[Any, ...]) -> LeafEntry:
    values = list(row)
    values[3], values[4], values[5] = bytes(values[3]), bytes(values[4]), bytes(values[5])
    return LeafEntry(*values)


def _log_state(conn: sqlite3.Connection, log: str) -> tuple[int, int]:
    """``(log_id, indexed_end)``, registering the log on first sight (in the caller's txn)."""
    row = conn.execute("SELECT log_id, indexed_end FROM q_logs WHERE log = ?", (log,)).fetchone()
    if row is not None:
        return int(row[0]), int(row[1])
    row = conn.execute("SELECT COALESCE(MAX(log_id), 0) + 1 FROM q_logs").fetchone()
    conn.execute("INSERT INTO q_logs (log, log_id, indexed_end) VALUES (?, ?, 0)", (log, row[0]))
    return int(row[0]), 0


def index_pending(conn: sqlite3.Connection, log: str, limit: int | None = None) -> int:
    """Add the log's not yet indexed entries (up to ``limit``) to ``q_text``; return how many.

    Runs inside the caller's write transaction (the append hook's, or a catch-up's).
    """
    log_id, end = _log_state(conn, log)
    sql = "SELECT leaf_index, body FROM entries WHERE log = ? AND leaf_index >= ? ORDER BY leaf_index"
    params: tuple[Any, ...] = (log, end)
    if limit is not None:
        sql += " LIMIT ?"
        params += (limit,)
    rows = conn.execute(sql, params).fetchall()
    if not rows:
        return 0
    base = log_id << LOG_SHIFT
    conn.executemany(
        "INSERT INTO q_text (rowid, text) VALUES (?, ?)",
        [(base + int(index), body_text(bytes(body))) for index, body in rows],
    )
    conn.execute("UPDATE q_logs SET indexed_end = ? WHERE log = ?", (int(rows[-1][0]) + 1, log))
    return len(rows)


def _hook(conn: sqlite3.Connection, log: str, entries: Sequence[LeafEntry]) -> None:
    index_pending(conn, log)


def _token_phrase(node: Node) -> str | None:
    """An FTS5 expression whose matches include every match of ``node``, if it has one.

    Only for ``token`` fields: an exact string (or number) value, a list of them, or a literal
    prefix; their text is in the indexed text, so the phrase is a superset filter.
    """
    if isinstance(node, Compare) and node.op == "=" and node.field.access == "token":
        values: tuple[object, ...] = (node.value,)
    elif isinstance(node, AnyOf) and node.field.access == "token":
        values = node.values
    elif isinstance(node, Pattern) and node.field.access == "token" and node.is_prefix:
        if not any(c.isalnum() for c in node.prefix):
            return None
        return fts_string(node.prefix, prefix=True)
    else:
        return None
    phrases: list[str] = []
    for value in values:
        if isinstance(value, bool) or not any(c.isalnum() for c in str(value)):
            return None
        phrases.append(fts_string(str(value)))
    return phrases[0] if len(phrases) == 1 else "(" + " OR ".join(phrases) + ")"


class SQLiteSearch:
    """Search over a :class:`SQLiteStore`; use :func:`for_store` to share one per store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        store.apply_migrations("query", MIGRATIONS)
        store.add_append_hook(_hook)
        self.catch_up()

    # -- indexing ----------------------------------------------------------------------------
    def catch_up(self, log: str | None = None) -> int:
        """Index entries stored without the hook (before this feature, or by another writer)."""
        logs = [log] if log is not None else [info.name for info in self.store.list_logs()]
        done = 0
        for name in logs:
            while True:
                with self.store._write_lock:
                    conn = self.store._writer
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        count = index_pending(conn, name, _CATCH_UP_BATCH)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                done += count
                if count < _CATCH_UP_BATCH:
                    break
        return done

    def _log_id(self, log: str) -> int | None:
        """The log's id, after indexing anything the hook did not see (another writer)."""
        conn = self.store._reader
        log_id, end, last = conn.execute(  # one statement: one snapshot
            "SELECT (SELECT log_id FROM q_logs WHERE log = ?1), "
            "(SELECT indexed_end FROM q_logs WHERE log = ?1), "
            "(SELECT MAX(leaf_index) FROM entries WHERE log = ?1)", (log,)
        ).fetchone()
        if last is not None and (end is None or int(end) <= int(last)):
            self.catch_up(log)
            log_id = conn.execute("SELECT log_id FROM q_logs WHERE log = ?", (log,)).fetchone()[0]
        return None if log_id is None else int(log_id)

    # -- search ------------------------------------------------------------------------------
    def plan(self, log: str, log_id: int, query: Node, order: Order, limit: int,
             after: Position | None) -> Fragment:
        """The SELECT for one page (exposed for tests and ``EXPLAIN QUERY PLAN``).

        Top-level free text and token-field terms drive the query from the full-text index
        (``CROSS JOIN`` fixes that join order); everything else is left to SQLite's planner
        over the ordered indexes.
        """
        dialect = SQLiteDialect(log_id)
        direction = "DESC" if order == "newest" else "ASC"
        keyset = Fragment("")
        if after is not None:
            cmp = "<" if order == "newest" else ">"
            keyset = Fragment(f" AND (e.time, e.leaf_index) {cmp} (?, ?)", (after.time, after.leaf_index))
        tail = keyset + Fragment(
            f" ORDER BY e.time {direction}, e.leaf_index {direction} LIMIT ?", (limit,))
        phrases: list[str] = []
        residual: list[Node] = []
        for term in conjuncts(query):
            if isinstance(term, Text):
                phrases.append(fts_string(term.raw, term.prefix))
                continue
            phrase = _token_phrase(term)
            if phrase is not None:
                phrases.append(phrase)
            residual.append(term)
        if phrases:
            where = compile_where(all_of(residual), dialect)
            return Fragment(
                f"SELECT {_COLUMNS} FROM q_text CROSS JOIN entries AS e "
                "ON e.log = ? AND e.leaf_index = q_text.rowid - ? "
                "WHERE q_text MATCH ? AND q_text.rowid BETWEEN ? AND ? "
                "AND substr(e.body, 1, 1) = x'7b' AND ",
                (log, dialect.low, " AND ".join(phrases), dialect.low, dialect.high),
            ) + where + tail
        where = compile_where(query, dialect)
        return Fragment(f"SELECT {_COLUMNS} FROM entries AS e WHERE e.log = ? AND ", (log,)) + where + tail

    def search(
        self,
        log: str,
        query: Node,
        *,
        order: Order = "newest",
        limit: int = 100,
        after: Position | None = None,
    ) -> list[LeafEntry]:
        """See :meth:`SearchStore.search`."""
        log_id = self._log_id(log)
        if log_id is None:
            return []
        sql = self.plan(log, log_id, query, order, limit, after)
        rows = self.store._reader.execute(sql.sql, sql.params).fetchall()
        return [_entry(row) for row in rows]

    def close(self) -> None:
        """Nothing to release: reads use the store's per-thread connections."""


def for_store(store: SQLiteStore) -> SQLiteSearch:
    """The store's search (created, migrated and hooked on first use; one per store)."""
    with _instances_lock:
        found = _instances.get(store)
        if found is None:
            found = SQLiteSearch(store)
            _instances[store] = found
        return found
