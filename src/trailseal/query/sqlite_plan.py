"""Which index answers a query on SQLite: measured, not guessed.

SQLite as shipped with Python is built without STAT4, so its planner cannot tell
``action:auth.*`` (40 % of events) from ``action:kms.key.*`` (0.01 %): picking the wrong one
turns a 2 ms page into a 10 s sort. So for each top-level term that could drive the query this
module counts its matches, up to :data:`PROBE_CAP`, with an index-only probe, and then:

1. **a selective driver** — the term (or terms) with the fewest matches under the cap:
   the full-text index (free text and ``token`` fields, all such terms intersected in one
   ``MATCH``; the rest is checked on each hit), the ``(log, action|actor_id, ...)`` index for a
   prefix or a list of values, the event-id index, or the primary key for a leaf-index range.
   At most ``PROBE_CAP`` rows are then filtered and sorted;
2. **otherwise an ordered scan** — ``(log, actor_id, time, ...)`` or ``(log, action, time, ...)``
   for an exact actor or action, else ``(log, time, ...)``: rows come out in result order, every
   filter is checked as they pass, and the page stops after ``limit`` matches however broad the
   filters are.

``INDEXED BY`` pins the choice (and fails loudly should an index go missing). Free text that
does not drive is checked per row through the full-text index's rowid (``EXISTS``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from trailseal.query.ast import AnyOf, Compare, Node, Pattern, Text, all_of, conjuncts
from trailseal.query.compiler import Fragment, compile_where
from trailseal.query.search import Order, Position
from trailseal.query.sqlite_dialect import SQLiteDialect, fts_string, prefix_upper

PROBE_CAP = 30_000
"""Above this many matches a term no longer drives: sorting them would cost more than
scanning in order (~50 ms either way at 10M events; see BENCHMARKS.md)."""

COLUMNS = (
    "e.log, e.leaf_index, e.event_id, e.leaf_hash, e.content_hash, e.body, e.time, "
    "e.received_at, e.action, e.actor_id, e.resource_type, e.resource_id, e.outcome, "
    "e.request_id, e.trace_id, e.source_service"
)
_ORDERED = {"actor_id": "q_entries_actor", "action": "q_entries_action"}


@dataclass(frozen=True, slots=True)
class Driver:
    """How a page is found: ``kind`` (text, index, ordered), the index, the probe count."""

    kind: str
    index: str | None = None
    matches: int | None = None


def token_phrase(node: Node) -> str | None:
    """An FTS5 expression matching a superset of ``node``'s matches, if there is one.

    Only for ``token`` fields: an exact string (or number) value, a list of them, or a literal
    prefix — their words are in the indexed text, in order.
    """
    if isinstance(node, Text):
        return fts_string(node.raw, node.prefix)
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


def _count(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    row = conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params, PROBE_CAP)).fetchone()
    return int(row[0])


def _range_probe(conn: sqlite3.Connection, log: str, term: Node) -> tuple[str, int] | None:
    """``(index, matches)`` for a prefix or value list on an ordered column."""
    field = getattr(term, "field", None)
    column = field.column if field is not None else None
    if column not in _ORDERED:
        return None
    index = _ORDERED[column]
    base = f"SELECT 1 FROM entries INDEXED BY {index} WHERE log = ?"
    if isinstance(term, Pattern) and term.prefix:
        upper = prefix_upper(term.prefix)
        if upper is None:
            return None
        return index, _count(conn, f"{base} AND {column} >= ? AND {column} < ?",
                             (log, term.prefix, upper))
    if isinstance(term, AnyOf):
        marks = ", ".join("?" * len(term.values))
        return index, _count(conn, f"{base} AND {column} IN ({marks})", (log, *term.values))
    return None


def _leaf_span(terms: list[Node]) -> int | None:
    """How many leaf indexes the top-level ``leaf_index`` bounds allow (``None``: unbounded)."""
    low, high = None, None
    for term in terms:
        if isinstance(term, Compare) and term.field.column == "leaf_index" and isinstance(term.value, int):
            value = term.value
            if term.op in ("=", ">=", ">"):
                bound = value + (term.op == ">")
                low = bound if low is None else max(low, bound)
            if term.op in ("=", "<=", "<"):
                bound = value - (term.op == "<")
                high = bound if high is None else min(high, bound)
    if low is None or high is None:
        return None
    return max(0, high - low + 1)


def choose(conn: sqlite3.Connection, log: str, log_id: int, query: Node,
           primary_key: str | None) -> tuple[Driver, list[str]]:
    """The driver for ``query`` and the FTS phrases it intersects (for a text driver)."""
    terms = conjuncts(query)
    dialect = SQLiteDialect(log_id)
    candidates: list[Driver] = []
    phrases = [p for t in terms if (p := token_phrase(t)) is not None]
    if phrases:
        matches = _count(conn, "SELECT 1 FROM q_text WHERE q_text MATCH ? AND rowid BETWEEN ? AND ?",
                         (" AND ".join(phrases), dialect.low, dialect.high))
        candidates.append(Driver("text", None, matches))
    for term in terms:
        if isinstance(term, Compare) and term.op == "=" and term.field.column == "event_id":
            candidates.append(Driver("index", "entries_event_id", 1))
        elif isinstance(term, AnyOf) and term.field.column == "event_id":
            candidates.append(Driver("index", "entries_event_id", len(term.values)))
        probe = _range_probe(conn, log, term)
        if probe is not None:
            candidates.append(Driver("index", probe[0], probe[1]))
    span = _leaf_span(terms)
    if span is not None and primary_key is not None:
        candidates.append(Driver("index", primary_key, span))
    selective = [c for c in candidates if c.matches is not None and c.matches < PROBE_CAP]
    if selective:
        return min(selective, key=lambda c: c.matches or 0), phrases
    for column in ("actor_id", "action"):
        if any(isinstance(t, Compare) and t.op == "=" and t.field.column == column for t in terms):
            return Driver("ordered", _ORDERED[column]), phrases
    return Driver("ordered", "q_entries_time"), phrases


def page_sql(conn: sqlite3.Connection, log: str, log_id: int, query: Node, order: Order,
             limit: int, after: Position | None, primary_key: str | None) -> tuple[Fragment, Driver]:
    """The SELECT for one page and the driver it uses."""
    driver, phrases = choose(conn, log, log_id, query, primary_key)
    dialect = SQLiteDialect(log_id)
    direction = "DESC" if order == "newest" else "ASC"
    tail = Fragment("")
    if after is not None:
        cmp = "<" if order == "newest" else ">"
        tail = Fragment(f" AND (e.time, e.leaf_index) {cmp} (?, ?)", (after.time, after.leaf_index))
    tail += Fragment(f" ORDER BY e.time {direction}, e.leaf_index {direction} LIMIT ?", (limit,))
    if driver.kind == "text":
        residual = all_of([t for t in conjuncts(query) if not isinstance(t, Text)])
        head = Fragment(
            f"SELECT {COLUMNS} FROM q_text CROSS JOIN entries AS e "
            "ON e.log = ? AND e.leaf_index = q_text.rowid - ? "
            "WHERE q_text MATCH ? AND q_text.rowid BETWEEN ? AND ? "
            "AND substr(e.body, 1, 1) = x'7b' AND ",
            (log, dialect.low, " AND ".join(phrases), dialect.low, dialect.high))
        return head + compile_where(residual, dialect) + tail, driver
    head = Fragment(f"SELECT {COLUMNS} FROM entries AS e INDEXED BY {driver.index} "
                    "WHERE e.log = ? AND ", (log,))
    return head + compile_where(query, dialect) + tail, driver
