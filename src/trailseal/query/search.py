"""``SearchStore``: the read side every backend provides, and keyset pagination over it.

Results are ordered by ``(time, leaf_index)`` — event time, ties broken by log position — newest
first or oldest first. Pages continue from the last row's position (a keyset), never with an
offset, so deep pages cost what the first page costs and a page boundary never skips or repeats
an event while new events arrive.

A cursor is opaque base64url JSON ``{"t": time, "i": leaf_index, "n": now, "f": fingerprint}``:
the position, the clock the query's relative times were resolved against (so ``time:>-2h``
keeps meaning the same window on every page), and a fingerprint of ``(log, q, order)``; a
cursor used with another query is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from trailseal.core.errors import FormatError
from trailseal.core.event import format_time
from trailseal.query.ast import Node
from trailseal.query.parser import parse
from trailseal.query.times import to_datetime
from trailseal.storage.base import LeafEntry

Order = Literal["newest", "oldest"]
ORDERS: tuple[Order, ...] = ("newest", "oldest")
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an entry sorts: event time (normalized UTC), then leaf index."""

    time: str
    leaf_index: int


def position_of(entry: LeafEntry) -> Position:
    """The sort position of ``entry``."""
    return Position(entry.time, entry.leaf_index)


@runtime_checkable
class SearchStore(Protocol):
    """Query evaluation over one backend's entries (one log per call)."""

    def search(
        self,
        log: str,
        query: Node,
        *,
        order: Order = "newest",
        limit: int = 100,
        after: Position | None = None,
    ) -> list[LeafEntry]:
        """Up to ``limit`` entries of ``log`` matching ``query`` in ``order``, strictly after
        ``after`` in that order. Pruned entries are returned when their kept columns match."""

    def close(self) -> None:
        """Release what the search holds (not the store)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of results and the cursor of the next (``None`` on the last page)."""

    entries: list[LeafEntry]
    next_cursor: str | None
    now: datetime


def fingerprint(log: str, q: str, order: Order) -> str:
    """A short hash binding a cursor to its query."""
    return hashlib.sha256(orjson.dumps([log, q, order])).hexdigest()[:16]


def encode_cursor(position: Position, now: datetime, mark: str) -> str:
    """The opaque cursor for continuing after ``position``."""
    raw = orjson.dumps({"t": position.time, "i": position.leaf_index, "n": format_time(now), "f": mark})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, mark: str) -> tuple[Position, datetime]:
    """Position and clock of a cursor; :class:`FormatError` if malformed or for another query."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        position = Position(str(data["t"]), int(data["i"]))
        now = to_datetime(str(data["n"]))
        got = str(data["f"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise FormatError("cursor: malformed; pass the next_cursor of a previous page") from None
    if got != mark:
        raise FormatError("cursor: belongs to another query, log or order; start without cursor")
    return position, now


def check_order(order: str) -> Order:
    """``order`` if it is ``newest`` or ``oldest``; :class:`FormatError` otherwise."""
    for known in ORDERS:
        if order == known:
            return known
    raise FormatError(f"order: want newest or oldest, got {order!r}")


def search_page(
    search: SearchStore,
    log: str,
    q: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    order: Order = "newest",
    now: datetime | None = None,
) -> Page:
    """Parse ``q`` and fetch one page (``limit`` in 1..1000) after ``cursor``."""
    if not 1 <= limit <= MAX_PAGE:
        raise FormatError(f"limit: want 1..{MAX_PAGE}, got {limit}")
    mark = fingerprint(log, q, order)
    after: Position | None = None
    clock = now or datetime.now(UTC)
    if cursor:
        after, clock = decode_cursor(cursor, mark)
    node = parse(q, now=clock)
    rows = search.search(log, node, order=order, limit=limit + 1, after=after)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(position_of(rows[-1]), clock, mark) if more and rows else None
    return Page(rows, next_cursor, clock)


RawRow = tuple[str, int, bytes, bytes]
"""``(time, leaf_index, leaf_hash, body)`` of one match: what an export needs of it."""


@runtime_checkable
class RowSearch(Protocol):
    """A backend that can also hand out a page of matches as :data:`RawRow` tuples."""

    def search_rows(
        self,
        log: str,
        query: Node,
        *,
        order: Order = "newest",
        limit: int = 100,
        after: Position | None = None,
    ) -> list[RawRow]:
        """The rows of :meth:`SearchStore.search`'s page, as :data:`RawRow` tuples."""


class Matches(Iterator[LeafEntry]):
    """Every match of a query (or the first ``limit``), fetched ``batch`` at a time by keyset.

    Iterating yields :class:`LeafEntry` objects. A consumer that needs only the leaf (an
    export) calls :meth:`raw_pages` *instead* of iterating: pages of :data:`RawRow` tuples,
    four columns read per match and no objects built, when the backend is a
    :class:`RowSearch`.
    """

    def __init__(self, search: SearchStore, log: str, query: Node, order: Order,
                 limit: int | None, batch: int) -> None:
        self.search, self.log, self.query = search, log, query
        self.order, self.limit, self.batch = order, limit, batch
        self._entries: Iterator[LeafEntry] | None = None

    def __iter__(self) -> Matches:
        return self

    def __next__(self) -> LeafEntry:
        if self._entries is None:
            self._entries = self._iter_entries()
        return next(self._entries)

    def _pages(self, fetch: Callable[..., list[Any]], position: Callable[[Any], Position]
               ) -> Iterator[list[Any]]:
        after: Position | None = None
        remaining = self.limit
        while remaining is None or remaining > 0:
            size = self.batch if remaining is None else min(self.batch, remaining)
            rows = fetch(self.log, self.query, order=self.order, limit=size, after=after)
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = position(rows[-1])
            if remaining is not None:
                remaining -= len(rows)

    def _iter_entries(self) -> Iterator[LeafEntry]:
        for page in self._pages(self.search.search, position_of):
            yield from page

    def raw_pages(self) -> Iterator[list[RawRow]] | None:
        """Pages of raw rows, or ``None`` if the backend has none (or iteration has begun)."""
        if self._entries is not None or not isinstance(self.search, RowSearch):
            return None
        self._entries = iter(())  # the matches are consumed through the pages
        return self._pages(self.search.search_rows, _raw_position)


def _raw_position(row: RawRow) -> Position:
    return Position(row[0], row[1])


def iter_matches(
    search: SearchStore,
    log: str,
    query: Node,
    *,
    order: Order = "oldest",
    limit: int | None = None,
    batch: int = 2000,
) -> Matches:
    """Every match (or the first ``limit``), fetched ``batch`` at a time by keyset (an iterator
    of entries; see :class:`Matches` for the raw rows an export reads)."""
    return Matches(search, log, query, order, limit, batch)
