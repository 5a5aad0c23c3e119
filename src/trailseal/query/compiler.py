"""Syntax tree → parameterized SQL ``WHERE`` clause, shared by every SQL dialect.

The walk (AND, OR, NOT, parentheses) is dialect-neutral and lives here; each leaf node becomes
SQL through a small :class:`Dialect` (one per backend: :mod:`trailseal.query.sqlite_dialect`;
the PostgreSQL one comes with the scale-out work). Values only ever travel as bound
parameters; the SQL text is built from fixed fragments and the field catalog's column names.

Absent fields: a leaf on a field the event lacks yields SQL ``NULL``. ``NOT`` wraps its operand
in ``COALESCE(..., FALSE)`` so "absent" reads as "does not match" in every position (for
AND/OR trees this equals two-valued logic with absent = false; the reference search in
:mod:`trailseal.query.scan` evaluates exactly that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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
    Text,
)


@dataclass(frozen=True, slots=True)
class Fragment:
    """SQL text with ``?`` placeholders and the values to bind, in order."""

    sql: str
    params: tuple[Any, ...] = ()

    def __add__(self, other: Fragment) -> Fragment:
        return Fragment(self.sql + other.sql, self.params + other.params)


def join(fragments: list[Fragment], separator: str) -> Fragment:
    """``fragments`` joined by ``separator`` (SQL text), parameters concatenated."""
    return Fragment(separator.join(f.sql for f in fragments),
                    tuple(p for f in fragments for p in f.params))


class Dialect(Protocol):
    """How one backend writes each leaf of the tree as a boolean SQL expression."""

    def compare(self, node: Compare) -> Fragment:
        """``field op value``."""

    def any_of(self, node: AnyOf) -> Fragment:
        """``field IN (values)``."""

    def pattern(self, node: Pattern) -> Fragment:
        """Wildcard match on the field."""

    def exists(self, node: Exists) -> Fragment:
        """The field is present."""

    def text(self, node: Text) -> Fragment:
        """Free-text match on the event."""


def compile_where(node: Node, dialect: Dialect) -> Fragment:
    """The boolean SQL expression for ``node`` (parenthesized, safe to AND with more)."""
    if isinstance(node, MatchAll):
        return Fragment("1 = 1")
    if isinstance(node, And):
        return Fragment("(") + join([compile_where(n, dialect) for n in node.items], " AND ") + Fragment(")")
    if isinstance(node, Or):
        return Fragment("(") + join([compile_where(n, dialect) for n in node.items], " OR ") + Fragment(")")
    if isinstance(node, Not):
        return Fragment("(NOT COALESCE(") + compile_where(node.item, dialect) + Fragment(", FALSE))")
    if isinstance(node, Compare):
        leaf = dialect.compare(node)
    elif isinstance(node, AnyOf):
        leaf = dialect.any_of(node)
    elif isinstance(node, Pattern):
        leaf = dialect.pattern(node)
    elif isinstance(node, Exists):
        leaf = dialect.exists(node)
    else:
        leaf = dialect.text(node)
    return Fragment("(") + leaf + Fragment(")")
