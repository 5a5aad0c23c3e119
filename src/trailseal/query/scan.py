"""The reference search: evaluate the syntax tree in Python over every entry of a log.

Deliberately naive — a full scan, a sort, a slice — so it can serve two purposes: the search of
the in-memory store (and any backend without a compiled dialect), and the oracle that tests
compare every SQL dialect against. Its semantics define the language:

* column fields read the entry's columns (as the SQL does), other fields the stored envelope;
* an absent field matches nothing, so ``NOT`` of it matches;
* ``any`` fields compare by JSON type: numbers with numbers, strings with strings, ``true``
  only with ``true``;
* wildcards are case-sensitive ``*`` (any run) and ``?`` (one character);
* free text: the query's words appear consecutively among the event's words
  (:func:`trailseal.query.text.tokens`), the last one as a prefix for ``word*``; pruned
  entries have no text.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from trailseal.query.ast import (
    And,
    AnyOf,
    Compare,
    Exists,
    MatchAll,
    Node,
    Not,
    Or,
    Pattern,
    Scalar,
    Text,
)
from trailseal.query.fields import Field
from trailseal.query.search import Order, Position, position_of
from trailseal.query.text import event_text, load_body, tokens
from trailseal.storage.base import LeafEntry, Store

_MISSING = object()


class _Row:
    """An entry with its envelope parsed once."""

    def __init__(self, entry: LeafEntry) -> None:
        self.entry = entry
        self.event = load_body(entry.body)
        self._words: list[str] | None = None
        self._vocabulary: frozenset[str] = frozenset()

    def value(self, field: Field) -> Any:
        if field.column is not None:
            return getattr(self.entry, "event_id" if field.column == "event_id" else field.column)
        node: Any = self.event
        for key in field.path:
            if not isinstance(node, dict) or key not in node:
                return _MISSING
            node = node[key]
        return _MISSING if node is None else node

    def words(self) -> tuple[list[str], frozenset[str]]:
        if self._words is None:
            self._words = [] if self.event is None else tokens(event_text(self.event))
            self._vocabulary = frozenset(self._words)
        return self._words, self._vocabulary


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(actual: Any, op: str, expected: Scalar, field: Field) -> bool:
    if actual is _MISSING or actual is None:
        return False
    if field.kind == "any":
        if isinstance(expected, bool):
            return isinstance(actual, bool) and actual == expected and op == "="
        if _is_number(expected):
            if not _is_number(actual):
                return False
        elif not isinstance(actual, str):
            return False
    elif isinstance(actual, str) != isinstance(expected, str):
        return False
    if op == "=":
        return bool(actual == expected)
    if op == "<":
        return bool(actual < expected)
    if op == "<=":
        return bool(actual <= expected)
    if op == ">":
        return bool(actual > expected)
    return bool(actual >= expected)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"  # what SQLite's json_extract yields for true/false
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


@functools.lru_cache(maxsize=1024)
def _pattern(parts: tuple[str, ...]) -> re.Pattern[str]:
    regex = "".join(".*" if p == "*" else "." if p == "?" else re.escape(p) for p in parts)
    return re.compile(regex, re.S)


@functools.lru_cache(maxsize=1024)
def _wanted(raw: str) -> tuple[str, ...]:
    return tuple(tokens(raw))


def _phrase(words: list[str], vocabulary: frozenset[str], wanted: tuple[str, ...], prefix: bool) -> bool:
    n = len(wanted)
    if n == 0 or not vocabulary.issuperset(wanted[:-1]):
        return False
    if not prefix and wanted[-1] not in vocabulary:
        return False
    for start in range(len(words) - n + 1):
        if tuple(words[start : start + n - 1]) != wanted[:-1]:
            continue
        last = words[start + n - 1]
        if last == wanted[-1] or (prefix and last.startswith(wanted[-1])):
            return True
    return False


def text_matches(event: dict[str, Any], raw: str, prefix: bool) -> bool:
    """Free text ``raw`` (a prefix when ``prefix``) among an envelope's words."""
    words = tokens(event_text(event))
    return _phrase(words, frozenset(words), _wanted(raw), prefix)


def matches(node: Node, row: _Row) -> bool:
    """Whether the entry matches ``node`` (two-valued: an absent field is simply false)."""
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, And):
        return all(matches(n, row) for n in node.items)
    if isinstance(node, Or):
        return any(matches(n, row) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, row)
    if isinstance(node, Compare):
        return _compare(row.value(node.field), node.op, node.value, node.field)
    if isinstance(node, AnyOf):
        actual = row.value(node.field)
        return any(_compare(actual, "=", v, node.field) for v in node.values)
    if isinstance(node, Pattern):
        actual = row.value(node.field)
        if actual is _MISSING or actual is None or isinstance(actual, dict | list):
            return False
        return _pattern(node.parts).fullmatch(_as_text(actual)) is not None
    if isinstance(node, Exists):
        actual = row.value(node.field)
        return actual is not _MISSING and actual is not None and actual != ""
    assert isinstance(node, Text)
    if row.event is None:
        return False
    words, vocabulary = row.words()
    return _phrase(words, vocabulary, _wanted(node.raw), node.prefix)


def entry_matches(node: Node, entry: LeafEntry) -> bool:
    """:func:`matches` for one stored entry."""
    return matches(node, _Row(entry))


class ScanSearch:
    """A :class:`~trailseal.query.search.SearchStore` over any ``Store``: scan, filter, sort."""

    def __init__(self, store: Store) -> None:
        self.store = store

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
        found = [e for e in self.store.iter_entries(log) if entry_matches(query, e)]
        found.sort(key=position_of, reverse=order == "newest")
        if after is not None:
            if order == "newest":
                found = [e for e in found if position_of(e) < after]
            else:
                found = [e for e in found if position_of(e) > after]
        return found[:limit]

    def close(self) -> None:
        """Nothing to release."""
