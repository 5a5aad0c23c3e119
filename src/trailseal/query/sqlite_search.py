"""``SQLiteSearch``: the :class:`~trailseal.query.search.SearchStore` of the SQLite backend.

Schema (component ``query``, applied with ``SQLiteStore.apply_migrations``)::

    q_entries_time    ON entries (log, time, leaf_index)            time ranges, newest/oldest
    q_entries_action  ON entries (log, action, time, leaf_index)    action:x, action:iam.role.*
    q_entries_actor   ON entries (log, actor_id, time, leaf_index)  actor.id:x (skewed: ordered)
    q_text            FTS5, contentless, unicode61, columnsize=0; rowid = log_id << 40 | leaf_index
    q_logs            log -> log_id, and indexed_end: leaves [0, indexed_end) are in q_text

Why these, and no more: every index is paid for on the commit path (the write cost is measured
by ``bench/query.py``). The three B-tree indexes end in ``(time, leaf_index)`` so the commonest
filters come out already in result order (a page of a heavy actor or a common action costs a
page of index reads, never a sort). The time index grows at its right edge only; a batch dirties
about one page of the action index per distinct action in it, and one page of the actor index
per distinct actor — the largest write cost of the three with thousands of actors (measured:
BENCHMARKS.md, *query*), kept because "what did this actor do" is the question investigators
ask most. Without it a heavy actor's first page at 10M events took ~340 ms (one random row
read per match to sort) instead of ~1 ms. High-cardinality values (request, trace and span ids,
resource ids, IPs, metadata values) would each need a B-tree with random keys — one dirtied
page per event per index at scale — so they are found through the full-text index instead (an
LSM: one new segment per batch, merged by later commits) and then checked exactly.
``columnsize=0`` drops the per-row size record that a contentless table otherwise writes to a
B-tree of its own (nothing here ranks by size), and ``automerge=16`` lets up to 16 segments of
a level build up before they are merged (FTS5's default, 4, rewrote each posting about twice
as often; a search reads a few more segments). Existing indexes (the primary key,
``(log, event_id)``) serve ``leaf_index:`` and ``id:``.

The full-text rows are written inside the append transaction by an append hook (an FTS5 insert
from a trigger would flush a segment per row), from the stored bytes, so search never lags
ingest. Pruned entries (tombstone bodies) keep their tokens in the contentless index but every
full-text match is checked against the body, so a pruned payload is never found by its text
(and a restored one is found again).

Which index answers a given query is decided per query by :mod:`trailseal.query.sqlite_plan`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from trailseal.query.ast import Node
from trailseal.query.compiler import Fragment
from trailseal.query.scan import text_matches
from trailseal.query.search import Order, Position, RawRow
from trailseal.query.sqlite_dialect import LOG_SHIFT
from trailseal.query.sqlite_plan import ENTRY_COLUMNS, RAW_COLUMNS, Driver, choose, page_sql
from trailseal.query.text import body_text, load_body
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
    # 2: the full-text index without its per-row size table (rebuilt: catch_up re-indexes every
    #    log from its stored bodies when the search is next opened).
    """
    DROP TABLE q_text;
    CREATE VIRTUAL TABLE q_text USING fts5(text, content='', tokenize='unicode61', columnsize=0);
    INSERT INTO q_text (q_text, rank) VALUES ('automerge', 16);
    UPDATE q_logs SET indexed_end = 0
    """,
)

_CATCH_UP_BATCH = 5000
_PLAN_CACHE = 256
_READ_CACHE_KIB = 32 * 1024  # per read connection (one per server thread)
_PLAN_TTL = 10.0  # seconds: the data may change what is selective, slowly
_instances: weakref.WeakKeyDictionary[SQLiteStore, SQLiteSearch] = weakref.WeakKeyDictionary()
_instances_lock = threading.Lock()


def _entry(row: tuple[Any, ...]) -> LeafEntry:
    return LeafEntry(*row)  # sqlite3 hands BLOBs back as bytes already


def _log_state(conn: sqlite3.Connection, log: str) -> tuple[int, int]:
    """``(log_id, indexed_end)``, registering the log on first sight (in the caller's txn)."""
    row = conn.execute("SELECT log_id, indexed_end FROM q_logs WHERE log = ?", (log,)).fetchone()
    if row is not None:
        return int(row[0]), int(row[1])
    row = conn.execute("SELECT COALESCE(MAX(log_id), 0) + 1 FROM q_logs").fetchone()
    conn.execute("INSERT INTO q_logs (log, log_id, indexed_end) VALUES (?, ?, 0)", (log, row[0]))
    return int(row[0]), 0


def index_pending(conn: sqlite3.Connection, log: str, limit: int | None = None,
                  entries: Sequence[LeafEntry] = ()) -> int:
    """Add the log's not yet indexed entries (up to ``limit``) to ``q_text``; return how many.

    Runs inside the caller's write transaction (the append hook's, or a catch-up's). ``entries``
    are the rows just inserted: when they are exactly what is pending they are used as they are
    instead of being read back.
    """
    log_id, end = _log_state(conn, log)
    rows: Sequence[tuple[int, bytes]]
    if entries and entries[0].leaf_index == end and limit is None:
        rows = [(e.leaf_index, e.body) for e in entries]
    else:
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


def _q_match(body: bytes | None, raw: str, prefix: int) -> int:
    """SQL ``q_match(body, text, prefix)``: the reference free-text match on a stored body."""
    if body is None:
        return 0
    event = load_body(bytes(body))
    return int(event is not None and text_matches(event, raw, bool(prefix)))


def _hook(conn: sqlite3.Connection, log: str, entries: Sequence[LeafEntry]) -> None:
    index_pending(conn, log, entries=entries)


class SQLiteSearch:
    """Search over a :class:`SQLiteStore`; use :func:`for_store` to share one per store."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        store.apply_migrations("query", MIGRATIONS)
        store.add_append_hook(_hook)
        row = store._reader.execute(  # the (log, leaf_index) primary key's automatic index
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' "
            "AND name LIKE 'sqlite_autoindex_entries_%' ORDER BY name LIMIT 1").fetchone()
        self.primary_key: str | None = row[0] if row else None
        self._plans: dict[tuple[str, Node], tuple[float, Driver, list[str]]] = {}
        self._plans_lock = threading.Lock()
        self._local = threading.local()
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
    def driver(self, log: str, log_id: int, query: Node) -> tuple[Driver, list[str]]:
        """The driver for ``query`` (probed; remembered for a few seconds, so the pages of an
        export do not probe again)."""
        key = (log, query)
        now = time.monotonic()
        with self._plans_lock:
            found = self._plans.get(key)
            if found is not None and found[0] > now:
                return found[1], found[2]
        driver, phrases = choose(self._connection(), log, log_id, query, self.primary_key)
        with self._plans_lock:
            if len(self._plans) >= _PLAN_CACHE:
                self._plans.clear()
            self._plans[key] = (now + _PLAN_TTL, driver, phrases)
        return driver, phrases

    def plan(self, log: str, query: Node, order: Order = "newest", limit: int = 100,
             after: Position | None = None,
             names: tuple[str, ...] = ENTRY_COLUMNS) -> tuple[Fragment, Driver]:
        """The SELECT for one page and the index that drives it (see :mod:`.sqlite_plan`)."""
        log_id = self._log_id(log) or 0
        driver, phrases = self.driver(log, log_id, query)
        return page_sql(self._connection(), log, log_id, query, order, limit, after, driver,
                        phrases, names), driver

    def _connection(self) -> sqlite3.Connection:
        """This thread's read connection, set up once: ``q_match`` and a larger page cache."""
        conn = self.store._reader
        if getattr(self._local, "conn", None) is not conn:
            conn.create_function("q_match", 3, _q_match, deterministic=True)
            conn.execute(f"PRAGMA cache_size=-{_READ_CACHE_KIB}")
            self._local.conn = conn
        return conn

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
        if self._log_id(log) is None:
            return []
        conn = self._connection()
        sql, _driver = self.plan(log, query, order, limit, after)
        return [_entry(row) for row in conn.execute(sql.sql, sql.params).fetchall()]

    def search_rows(
        self,
        log: str,
        query: Node,
        *,
        order: Order = "newest",
        limit: int = 100,
        after: Position | None = None,
    ) -> list[RawRow]:
        """See :meth:`~trailseal.query.search.RowSearch.search_rows`: the page of :meth:`search`
        as ``(time, leaf_index, leaf_hash, body)`` rows, four columns read instead of sixteen
        and no entry objects built (what an export needs)."""
        if self._log_id(log) is None:
            return []
        conn = self._connection()
        sql, _driver = self.plan(log, query, order, limit, after, RAW_COLUMNS)
        return conn.execute(sql.sql, sql.params).fetchall()

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
