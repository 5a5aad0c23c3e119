"""The SQLite dialect: each syntax-tree leaf as an SQLite boolean expression over ``entries e``.

* Column fields read ``e.<column>`` (names from :data:`~trailseal.query.fields.FIELDS` only).
* Other fields read the stored envelope with ``json_extract(e.body, ?)``, the JSON path bound
  as a parameter; a pruned entry's body is a tombstone, not JSON, so every JSON read is guarded
  by ``substr(e.body, 1, 1) = x'7b'`` (``{``) and yields ``NULL`` for it.
* Wildcards become ``GLOB`` with the literal parts escaped (``[*]``, ``[?]``, ``[[]``); a literal
  prefix also becomes a range (``col >= 'iam.role.' AND col < 'iam.role/'``) so the B-tree
  index can answer it.
* Free text, where it drives a query, is an FTS5 ``MATCH`` on ``q_text`` (see
  :mod:`trailseal.query.sqlite_plan`): the user's text is an FTS5 string (``"..."``, quotes
  doubled), tokenized by FTS5 itself, so no FTS5 operator can be injected either. Elsewhere
  (inside OR/NOT, or too common to drive) it is ``q_match(e.body, text, prefix)``, the
  reference tokenizer applied to the row.
"""

from __future__ import annotations

from trailseal.query.ast import AnyOf, Compare, Exists, Pattern, Scalar, Text
from trailseal.query.compiler import Fragment, join
from trailseal.query.fields import Field

LOG_SHIFT = 40
"""FTS rowid = ``log_id << 40 | leaf_index``: stable keys, and one rowid range per log."""

_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def fts_string(raw: str, prefix: bool = False) -> str:
    """An FTS5 query string matching ``raw`` as a phrase (a prefix on its last word)."""
    return '"' + raw.replace('"', '""') + '"' + ("*" if prefix else "")


def glob_pattern(parts: tuple[str, ...]) -> str:
    """A GLOB pattern for wildcard ``parts`` with every literal character escaped."""
    out: list[str] = []
    for part in parts:
        if part in ("*", "?"):
            out.append(part)
        else:
            out.append("".join(_GLOB_SPECIAL.get(c, c) for c in part))
    return "".join(out)


def prefix_upper(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (``None`` if none)."""
    for cut in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[cut])
        if code < 0x10FFFF and not 0xD7FF <= code < 0xE000:
            return prefix[:cut] + chr(code + 1)
    return None


def json_path(field: Field) -> str:
    """SQLite JSON path of a field: ``$."metadata"."ticket"`` (keys are [A-Za-z0-9_-])."""
    return "$" + "".join(f'."{segment}"' for segment in field.path)


_IS_OBJECT = "substr(e.body, 1, 1) = x'7b'"


class SQLiteDialect:
    """Leaves → SQLite; ``log_id`` scopes free-text matches to one log's FTS rowids."""

    def __init__(self, log_id: int) -> None:
        self.low = log_id << LOG_SHIFT
        self.high = ((log_id + 1) << LOG_SHIFT) - 1

    # -- values ------------------------------------------------------------------------------
    def value(self, field: Field) -> Fragment:
        """The field's value as an SQL expression (``NULL`` when absent)."""
        if field.column is not None:
            return Fragment(f"e.{field.column}")
        return Fragment(f"(CASE WHEN {_IS_OBJECT} THEN json_extract(e.body, ?) END)",
                        (json_path(field),))

    def json_type(self, field: Field) -> Fragment:
        return Fragment(f"(CASE WHEN {_IS_OBJECT} THEN json_type(e.body, ?) END)",
                        (json_path(field),))

    def typed(self, field: Field, op: str, value: Scalar) -> Fragment:
        """``field op value`` with JSON type checks for ``any`` fields (1 ≠ true ≠ "1")."""
        if field.kind != "any":
            return self.value(field) + Fragment(f" {op} ?", (value,))
        if isinstance(value, bool):
            return self.json_type(field) + Fragment(" = ?", ("true" if value else "false",))
        kinds = "IN ('integer', 'real')" if isinstance(value, int | float) else "= 'text'"
        return (self.json_type(field) + Fragment(f" {kinds} AND ")
                + self.value(field) + Fragment(f" {op} ?", (value,)))

    # -- leaves ------------------------------------------------------------------------------
    def compare(self, node: Compare) -> Fragment:
        """``field op value``."""
        return self.typed(node.field, node.op, node.value)

    def any_of(self, node: AnyOf) -> Fragment:
        """``field IN (...)`` for columns; an OR of typed equalities for JSON."""
        if node.field.kind != "any":
            marks = ", ".join("?" * len(node.values))
            return self.value(node.field) + Fragment(f" IN ({marks})", tuple(node.values))
        parts = [Fragment("(") + self.typed(node.field, "=", v) + Fragment(")") for v in node.values]
        return join(parts, " OR ")

    def pattern(self, node: Pattern) -> Fragment:
        """``GLOB`` (case-sensitive), plus a range on the literal prefix for columns."""
        out = self.value(node.field) + Fragment(" GLOB ?", (glob_pattern(node.parts),))
        prefix = node.prefix
        if prefix and node.field.column is not None:
            out += Fragment(f" AND e.{node.field.column} >= ?", (prefix,))
            upper = prefix_upper(prefix)
            if upper is not None:
                out += Fragment(f" AND e.{node.field.column} < ?", (upper,))
        return out

    def exists(self, node: Exists) -> Fragment:
        """Present and not empty (pruned entries have their columns cleared to '')."""
        if node.field.column is not None:
            col = f"e.{node.field.column}"
            return Fragment(f"{col} IS NOT NULL AND {col} <> ''")
        return Fragment("COALESCE(") + self.json_type(node.field) + Fragment(", 'null') <> 'null'")

    def text(self, node: Text) -> Fragment:
        """Free text checked on the row's own text by ``q_match`` (registered by the search).

        Used where the full-text index does not drive the query: an FTS5 lookup per row costs
        ~100 µs (it opens every segment), the function ~25 µs, and a term common enough not to
        drive matches within a few rows.
        """
        return Fragment(f"{_IS_OBJECT} AND q_match(e.body, ?, ?)", (node.raw, int(node.prefix)))
