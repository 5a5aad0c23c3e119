"""Which index answers a query on SQLite: measured, not guessed.

SQLite as shipped with Python is built without STAT4, so its planner cannot tell
``action:auth.*`` (40 % of events) from ``action:kms.key.*`` (0.01 %): picking the wrong one
turns a 2 ms page into a 10 s sort. So for each top-level term that could drive the query this
module counts its matches, up to the driver limit, with an index-only probe (an exact value
of a ``token`` column that the newest events show to be common is not
counted: it cannot drive), and then:

1. **a selective driver** — the term (or terms) with the fewest matches under the cap:
   the full-text index (free text and ``token`` fields such as ids, all such terms
   intersected in one ``MATCH``; the rest is checked on each hit), the
   ``(log, action|actor_id, ...)`` index for a prefix or a list of values, ``(log, time, ...)`` for a
   time range, the event-id index, or the primary key for a leaf-index range.
   At most the driver limit (:data:`PROBE_CAP` at most) rows are then filtered and sorted;
2. **otherwise an ordered scan** — ``(log, actor_id, time, ...)`` or ``(log, action, time, ...)``
   for an exact actor or action, else
   ``(log, time, ...)``: rows come out in result order, every filter is checked as they pass,
   and the page stops after ``limit`` matches however broad the filters are.

How many matches still make a term "selective" grows with the log (:func:`driver_limit`).
``INDEXED BY`` pins the choice (and fails loudly should an index go missing). Free text that
does not drive is checked on each row's own text (``q_match``).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from trailseal.query.ast import And, AnyOf, Compare, Node, Not, Or, Pattern, Text, all_of, conjuncts
from trailseal.query.compiler import Fragment, compile_where
from trailseal.query.search import Order, Position
from trailseal.query.sqlite_dialect import SQLiteDialect, fts_string, prefix_upper

PROBE_CAP = 40_000
"""The most matches a probe counts (the driver limit at ~16M events)."""


def driver_limit(size: int, text: bool) -> int:
    """Up to how many matches a term drives, for a log of ``size`` events.

    Driving costs ~15 µs per match (fetch the row, sort); scanning in order costs ~3 µs per row
    (~28 µs when free text is checked on the row) and needs ~50 * size / matches rows for a page.
    The costs meet at sqrt(50 * size * scan / drive): the limit keeps the worse of the two
    plans near its best (about 450 ms at 10M events for a text term, ~100 ms for the rest).
    """
    ratio = 28 / 15 if text else 3 / 15
    return max(1000, min(PROBE_CAP, int((50 * size * ratio) ** 0.5)))

ENTRY_COLUMNS = ("log", "leaf_index", "event_id", "leaf_hash", "content_hash", "body", "time",
            "received_at", "action", "actor_id", "resource_type", "resource_id", "outcome",
            "request_id", "trace_id", "source_service")


RAW_COLUMNS = ("time", "leaf_index", "leaf_hash", "body")
"""What an export reads (:meth:`SQLiteSearch.search_rows`): the keyset position and the leaf."""


def columns(alias: str, names: tuple[str, ...] = ENTRY_COLUMNS) -> str:
    """The ``entries`` columns (default: in ``LeafEntry`` order), qualified by ``alias``."""
    return ", ".join(f"{alias}.{name}" for name in names)


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


def _count(conn: sqlite3.Connection, sql: str, params: tuple[object, ...], cap: int) -> int:
    """Rows of ``sql``, counted up to ``cap`` (the driver limit: a probe only has to tell
    whether a term is under it, and a phrase of common words costs ~10 µs per match)."""
    row = conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", (*params, cap)).fetchone()
    return int(row[0])


SAMPLE = 2000
"""How many of the newest events :func:`_common` looks at."""


def _common(conn: sqlite3.Connection, log: str, term: Node, size: int, limit: int) -> bool:
    """Whether an exact value of a ``token`` column (``actor.id:x``) is too common to drive,
    judged from the newest :data:`SAMPLE` events (a few ms) rather than by counting its
    phrase in the full-text index (up to ``limit`` phrase matches: ~100 ms at 10M events for
    an actor like ``svc-scanner-0``, whose words are in most events)."""
    if not (isinstance(term, Compare) and term.op == "=" and term.field.access == "token"
            and term.field.column is not None and isinstance(term.value, str)):
        return False
    column = term.field.column
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT {column} AS v FROM entries INDEXED BY q_entries_time "
        "WHERE log = ? ORDER BY time DESC LIMIT ?) WHERE v = ?", (log, SAMPLE, term.value)
    ).fetchone()
    return int(row[0]) * size >= limit * min(size, SAMPLE)


def _range_probe(conn: sqlite3.Connection, log: str, term: Node, cap: int) -> tuple[str, int] | None:
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
                             (log, term.prefix, upper), cap)
    if isinstance(term, AnyOf):
        marks = ", ".join("?" * len(term.values))
        return index, _count(conn, f"{base} AND {column} IN ({marks})", (log, *term.values), cap)
    return None


def _time_probe(conn: sqlite3.Connection, log: str, terms: list[Node], cap: int) -> int | None:
    """Matches of the top-level ``time`` bounds (``None`` when there are none)."""
    clauses, params = [], []
    for term in terms:
        if isinstance(term, Compare) and term.field.column == "time" and isinstance(term.value, str):
            clauses.append(f"time {term.op} ?")
            params.append(term.value)
    if not clauses:
        return None
    return _count(conn, "SELECT 1 FROM entries INDEXED BY q_entries_time WHERE log = ? AND "
                  + " AND ".join(clauses), (log, *params), cap)


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


def _has_text(node: Node) -> bool:
    if isinstance(node, Text):
        return True
    if isinstance(node, And | Or):
        return any(_has_text(n) for n in node.items)
    return isinstance(node, Not) and _has_text(node.item)


def choose(conn: sqlite3.Connection, log: str, log_id: int, query: Node,
           primary_key: str | None) -> tuple[Driver, list[str]]:
    """The driver for ``query`` and the FTS phrases it intersects (for a text driver)."""
    terms = conjuncts(query)
    row = conn.execute("SELECT MAX(leaf_index) FROM entries WHERE log = ?", (log,)).fetchone()
    size = int(row[0] or 0) + 1
    limit = driver_limit(size, _has_text(query))
    dialect = SQLiteDialect(log_id)
    candidates: list[Driver] = []
    # A common exact value adds nothing to the MATCH but cost: it is checked on each row.
    phrases = [p for t in terms
               if (p := token_phrase(t)) is not None and not _common(conn, log, t, size, limit)]
    if phrases:
        matches = _count(conn, "SELECT 1 FROM q_text WHERE q_text MATCH ? AND rowid BETWEEN ? AND ?",
                         (" AND ".join(phrases), dialect.low, dialect.high), limit)
        candidates.append(Driver("text", None, matches))
    for term in terms:
        if isinstance(term, Compare) and term.op == "=" and term.field.column == "event_id":
            candidates.append(Driver("index", "entries_event_id", 1))
        elif isinstance(term, AnyOf) and term.field.column == "event_id":
            candidates.append(Driver("index", "entries_event_id", len(term.values)))
        probe = _range_probe(conn, log, term, limit)
        if probe is not None:
            candidates.append(Driver("index", probe[0], probe[1]))
    window = _time_probe(conn, log, terms, limit)
    if window is not None:
        candidates.append(Driver("index", "q_entries_time", window))
    span = _leaf_span(terms)
    if span is not None and primary_key is not None:
        candidates.append(Driver("index", primary_key, span))
    selective = [c for c in candidates if c.matches is not None and c.matches < limit]
    if selective:
        return min(selective, key=lambda c: c.matches or 0), phrases
    for column, index in _ORDERED.items():
        if any(isinstance(t, Compare) and t.op == "=" and t.field.column == column for t in terms):
            return Driver("ordered", index), phrases
    return Driver("ordered", "q_entries_time"), phrases


def page_sql(conn: sqlite3.Connection, log: str, log_id: int, query: Node, order: Order,
             limit: int, after: Position | None, driver: Driver, phrases: list[str],
             names: tuple[str, ...] = ENTRY_COLUMNS) -> Fragment:
    """The SELECT of the ``names`` columns for one page with the chosen driver.

    With a keyset (``after``) the query's own time bound on the side the scan starts from is
    written ``+e.time`` so SQLite starts the index range at the keyset, not at the bound (else
    every page would rescan the window from its start). The bound is still checked; it is
    implied by any cursor of this query.
    """
    dialect = SQLiteDialect(log_id)
    direction = "DESC" if order == "newest" else "ASC"
    terms = conjuncts(query)
    tail = Fragment("")
    if after is not None:
        cmp = "<" if order == "newest" else ">"
        starts = ("<", "<=") if order == "newest" else (">", ">=")
        moved = [t for t in terms if isinstance(t, Compare) and t.field.column == "time" and t.op in starts]
        terms = [t for t in terms if not any(t is m for m in moved)]
        for term in moved:
            assert isinstance(term, Compare)
            tail += Fragment(f" AND +e.time {term.op} ?", (term.value,))
        tail += Fragment(f" AND (e.time, e.leaf_index) {cmp} (?, ?)", (after.time, after.leaf_index))
    tail += Fragment(f" ORDER BY e.time {direction}, e.leaf_index {direction} LIMIT ?", (limit,))
    if driver.kind == "ordered":  # rows come in result order: no sort, stop after the page
        head = Fragment(f"SELECT {columns('e', names)} FROM entries AS e INDEXED BY {driver.index} "
                        "WHERE e.log = ? AND ", (log,))
        return head + compile_where(all_of(terms), dialect) + tail
    # A selective driver: sort only (time, leaf_index) of the matches, then read the page's rows
    # (sorting whole rows, bodies included, costs three times as much).
    if driver.kind == "text":
        residual = all_of([t for t in terms if not isinstance(t, Text)])
        inner = Fragment(
            "SELECT e.leaf_index AS li, e.time AS t FROM q_text CROSS JOIN entries AS e "
            "ON e.log = ? AND e.leaf_index = q_text.rowid - ? "
            "WHERE q_text MATCH ? AND q_text.rowid BETWEEN ? AND ? "
            "AND substr(e.body, 1, 1) = x'7b' AND ",
            (log, dialect.low, " AND ".join(phrases), dialect.low, dialect.high),
        ) + compile_where(residual, dialect) + tail
    else:
        inner = Fragment(f"SELECT e.leaf_index AS li, e.time AS t FROM entries AS e "
                         f"INDEXED BY {driver.index} WHERE e.log = ? AND ", (log,)) \
            + compile_where(all_of(terms), dialect) + tail
    return (Fragment(f"SELECT {columns('o', names)} FROM (") + inner
            + Fragment(f") AS top CROSS JOIN entries AS o ON o.log = ? AND o.leaf_index = top.li "
                       f"ORDER BY top.t {direction}, top.li {direction}", (log,)))
