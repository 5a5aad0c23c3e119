"""The query language's syntax tree: what :func:`~trailseal.query.parser.parse` returns.

Every node is a frozen value. Times are already resolved to normalized UTC strings
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``, which sort as text) and ranges to pairs of comparisons, so a
backend compiler only maps each node to its dialect; it never interprets user text again::

    Node := MatchAll | Compare | AnyOf | Pattern | Exists | Text | And | Or | Not

``Compare`` and ``AnyOf`` values are ``str``, ``int``, ``float`` or ``bool``; a field of kind
``any`` (``metadata.*``, ``before.*``, ``after.*``) given an unquoted ``5`` gets
``AnyOf(field, (5, "5"))`` so it matches the number or the string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trailseal.query.fields import Field

Scalar = str | int | float | bool
Operator = Literal["=", "<", "<=", ">", ">="]


@dataclass(frozen=True, slots=True)
class MatchAll:
    """Every event (the empty query, or ``*``)."""


@dataclass(frozen=True, slots=True)
class Compare:
    """``field op value``: equality or an ordering (time fields compare as normalized text)."""

    field: Field
    op: Operator
    value: Scalar


@dataclass(frozen=True, slots=True)
class AnyOf:
    """``field`` equals one of ``values`` (``action:(a OR b)``)."""

    field: Field
    values: tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Pattern:
    """``field`` matches a wildcard pattern: ``parts`` alternate literal text and ``*``/``?``.

    Kept as parts (never as one string) so each dialect escapes literals its own way.
    """

    field: Field
    parts: tuple[str, ...]

    @property
    def prefix(self) -> str:
        """The literal text before the first wildcard."""
        literal = []
        for part in self.parts:
            if part in ("*", "?"):
                break
            literal.append(part)
        return "".join(literal)

    @property
    def is_prefix(self) -> bool:
        """True for ``literal*``: a pure prefix match (index range scans can answer it)."""
        return len(self.parts) == 2 and self.parts[1] == "*" and self.parts[0] not in ("*", "?")


@dataclass(frozen=True, slots=True)
class Exists:
    """``field:*``: the field is present (not null)."""

    field: Field


@dataclass(frozen=True, slots=True)
class Text:
    """Free text over the event's text fields: a word or a quoted phrase, optionally a prefix.

    ``raw`` is the user's text; backends tokenize it as they tokenize the indexed text (SQLite
    FTS5 ``unicode61``: letters and digits, case-folded, diacritics removed).
    """

    raw: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class And:
    """Every item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one item matches."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The item does not match (an absent field does not match, so ``NOT`` of it does)."""

    item: Node


Node = MatchAll | Compare | AnyOf | Pattern | Exists | Text | And | Or | Not


def conjuncts(node: Node) -> list[Node]:
    """The top-level AND terms of ``node`` (``[node]`` if it is not an ``And``)."""
    if isinstance(node, And):
        out: list[Node] = []
        for item in node.items:
            out.extend(conjuncts(item))
        return out
    if isinstance(node, MatchAll):
        return []
    return [node]


def all_of(items: list[Node]) -> Node:
    """The conjunction of ``items`` (``MatchAll`` for none, the item itself for one)."""
    flat: list[Node] = []
    for item in items:
        flat.extend(conjuncts(item))
    if not flat:
        return MatchAll()
    return flat[0] if len(flat) == 1 else And(tuple(flat))
