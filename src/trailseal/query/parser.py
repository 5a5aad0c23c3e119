"""The query language: one parser for the API, the CLI and the web console.

Grammar (keywords are upper case; juxtaposition means AND)::

    query    := or_expr
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := unary ("AND"? unary)*
    unary    := ("NOT" | "-") unary | primary
    primary  := "(" or_expr ")" | field ":" value | text
    value    := scalar                          exact, with * and ? wildcards when unquoted
              | (">" | ">=" | "<" | "<=") scalar
              | ("[" | "{") scalar "TO" scalar ("]" | "}")   inclusive [ ], exclusive { }; * = open
              | "(" scalar ("OR" scalar)* ")"   any of
    scalar   := '"' chars '"' | bare            bare ends at whitespace or ")"; \\ escapes a char
    text     := '"' phrase '"' | word | word*   free text over the event's text fields

Examples: ``actor.id:alice@example.com``, ``action:iam.role.*``, ``outcome:(denied OR failure)``,
``time:>-2h``, ``time:[2026-11-01 TO 2026-11-08}``, ``metadata.ticket:INC-2231``,
``NOT source.environment:prod``, ``"break-glass" AND resource.type:role``. See docs/query.md.

Every error is a :class:`QuerySyntaxError` carrying the 0-based ``position`` of the offending
character; nothing of the query text ever reaches SQL except as a bound parameter.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import NoReturn

from trailseal.core.errors import FormatError
from trailseal.query.ast import (
    And,
    AnyOf,
    Compare,
    Exists,
    MatchAll,
    Node,
    Not,
    Operator,
    Or,
    Pattern,
    Scalar,
    Text,
)
from trailseal.query.fields import Field, lookup
from trailseal.query.times import Period, parse_time

MAX_QUERY_LENGTH = 4096
MAX_DEPTH = 32
MAX_TERMS = 256

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(?=:)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?[0-9]+")
_KEYWORDS = ("AND", "OR", "NOT", "TO")
_OPS: tuple[Operator, ...] = (">=", "<=", ">", "<")


class QuerySyntaxError(FormatError):
    """A query that does not parse; ``position`` is the 0-based offset of the culprit."""

    def __init__(self, detail: str, position: int, query: str) -> None:
        self.detail = detail
        self.position = position
        self.query = query
        super().__init__(f"query: {detail} at position {position}")

    def caret(self) -> str:
        """The query with a ``^`` under the offending character (for terminals)."""
        return f"{self.query}\n{' ' * self.position}^"


def parse(text: str, *, now: datetime | None = None) -> Node:
    """Parse a query; relative times (``-2h``, ``now``) are resolved against ``now`` (UTC)."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"query is {len(text)} characters, limit {MAX_QUERY_LENGTH}",
                               MAX_QUERY_LENGTH, text[:MAX_QUERY_LENGTH])
    return _Parser(text, now or datetime.now(UTC)).parse()


def _is_token_char(char: str) -> bool:
    """Letters, digits and private-use characters make words (as FTS5 ``unicode61`` does)."""
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "Co"


class _Parser:
    def __init__(self, text: str, now: datetime) -> None:
        self.s = text
        self.i = 0
        self.now = now
        self.depth = 0
        self.terms = 0

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, detail: str, at: int | None = None) -> NoReturn:
        raise QuerySyntaxError(detail, self.i if at is None else at, self.s)

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def keyword(self, word: str) -> bool:
        """Is ``word`` (as a whole word) at the cursor?"""
        end = self.i + len(word)
        if self.s[self.i : end] != word:
            return False
        return end >= len(self.s) or self.s[end].isspace() or self.s[end] in "()"

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels")

    def count_term(self, at: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.fail(f"more than {MAX_TERMS} terms", at)

    # -- grammar ---------------------------------------------------------------------------
    def parse(self) -> Node:
        self.ws()
        if self.at_end():
            return MatchAll()
        node = self.or_expr()
        self.ws()
        if not self.at_end():
            self.fail(f"unexpected {self.s[self.i]!r}")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while True:
            self.ws()
            if not self.keyword("OR"):
                break
            self.i += 2
            self.ws()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while True:
            self.ws()
            if self.at_end() or self.s[self.i] == ")" or self.keyword("OR"):
                break
            if self.keyword("AND"):
                self.i += 3
                self.ws()
            items.append(self.unary())
        flat: list[Node] = []
        for item in items:
            flat.extend(item.items if isinstance(item, And) else (item,))
        return flat[0] if len(flat) == 1 else And(tuple(flat))

    def unary(self) -> Node:
        start = self.i
        if self.keyword("NOT"):
            self.i += 3
            self.ws()
            return self.negate(start)
        if self.s.startswith("-", self.i) and self.i + 1 < len(self.s) and not self.s[self.i + 1].isspace():
            self.i += 1
            return self.negate(start)
        return self.primary()

    def negate(self, start: int) -> Node:
        if self.at_end():
            self.fail("expected a term after NOT", start)
        self.nest()
        item = self.unary()
        self.depth -= 1
        return item.item if isinstance(item, Not) else Not(item)

    def primary(self) -> Node:
        self.ws()
        if self.at_end():
            self.fail("expected a term")
        char = self.s[self.i]
        if char == "(":
            open_at = self.i
            self.i += 1
            self.nest()
            self.ws()
            if self.s.startswith(")", self.i):
                self.fail("empty parentheses")
            node = self.or_expr()
            self.ws()
            if not self.s.startswith(")", self.i):
                self.fail("missing ')' to close this '('", open_at)
            self.i += 1
            self.depth -= 1
            return node
        if char == ")":
            self.fail("unexpected ')'")
        for word in ("AND", "OR", "TO"):
            if self.keyword(word):
                self.fail(f"expected a term before {word}")
        self.count_term(self.i)
        if char == '"':
            start = self.i
            phrase = self.quoted()
            return self.text(phrase, False, start)
        name = _FIELD_NAME.match(self.s, self.i)
        if name is not None:
            return self.field_term(name.group(), name.start())
        start = self.i
        chars = self.bare(stop=' \t\r\n()"')
        return self.text_word(chars, start)

    # -- scalars ---------------------------------------------------------------------------
    def quoted(self) -> str:
        """A double-quoted string (``\\"`` and ``\\\\`` escapes); the cursor is on the quote."""
        start = self.i
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            char = self.s[self.i]
            if char == "\\" and self.i + 1 < len(self.s):
                out.append(self.s[self.i + 1])
                self.i += 2
                continue
            if char == '"':
                self.i += 1
                return "".join(out)
            out.append(char)
            self.i += 1
        self.fail("unterminated quoted string", start)

    def bare(self, stop: str) -> list[tuple[str, bool]]:
        """Characters up to one of ``stop`` (or whitespace), each with ``escaped``."""
        out: list[tuple[str, bool]] = []
        while self.i < len(self.s):
            char = self.s[self.i]
            if char.isspace() or char in stop:
                break
            if char == "\\" and self.i + 1 < len(self.s):
                out.append((self.s[self.i + 1], True))
                self.i += 2
                continue
            out.append((char, False))
            self.i += 1
        return out

    def scalar(self, stop: str) -> tuple[list[tuple[str, bool]], bool, int]:
        """A quoted or bare value: ``(chars, quoted, start)``."""
        start = self.i
        if self.s.startswith('"', self.i):
            return [(c, True) for c in self.quoted()], True, start
        chars = self.bare(stop)
        if not chars:
            self.fail("expected a value")
        return chars, False, start

    # -- free text -------------------------------------------------------------------------
    def text_word(self, chars: list[tuple[str, bool]], start: int) -> Node:
        if chars == [("*", False)]:
            return MatchAll()
        prefix = bool(chars) and chars[-1] == ("*", False)
        body = chars[:-1] if prefix else chars
        for offset, (char, escaped) in enumerate(body):
            if char in "*?" and not escaped:
                self.fail("wildcards in free text only at the end of a word (like deploy*)",
                          start + offset)
        colon = next((i for i, (c, escaped) in enumerate(body) if c == ":" and not escaped), None)
        if colon is not None:
            name = "".join(c for c, _ in body[:colon])
            try:
                lookup(name)
                detail = f"field {name!r} needs a name of [A-Za-z0-9_.-]"
            except FormatError as exc:
                detail = str(exc)
            self.fail(f"{detail}; to search for text with a colon, quote it", start)
        word = "".join(c for c, _ in body)
        if word in _KEYWORDS:
            self.fail(f"expected a term, got {word}", start)
        return self.text(word, prefix, start)

    def text(self, raw: str, prefix: bool, start: int) -> Node:
        if not any(_is_token_char(c) for c in raw):
            self.fail("free text needs letters or digits to search for", start)
        return Text(raw, prefix)

    # -- field terms -----------------------------------------------------------------------
    def field_term(self, name: str, start: int) -> Node:
        try:
            field = lookup(name)
        except FormatError as exc:
            detail = str(exc)
            if "did you mean" not in detail:
                detail += '; to search for text with a colon, quote it ("http://...")'
            self.fail(detail, start)
        self.i += len(name) + 1  # the name and ':'
        if self.at_end() or self.s[self.i].isspace() or self.s[self.i] == ")":
            self.fail(f"expected a value after {name}:")
        char = self.s[self.i]
        if char == "(":
            return self.any_of(field)
        if char in "[{":
            return self.range(field)
        for op in _OPS:
            if self.s.startswith(op, self.i):
                self.i += len(op)
                if self.at_end() or self.s[self.i].isspace():
                    self.fail(f"expected a value after {name}:{op}")
                chars, quoted, at = self.scalar(stop=")")
                return self.compare(field, op, "".join(c for c, _ in chars), quoted, at)
        chars, quoted, at = self.scalar(stop=")")
        return self.equals(field, chars, quoted, at)

    def equals(self, field: Field, chars: list[tuple[str, bool]], quoted: bool, at: int) -> Node:
        wild = not quoted and any(c in "*?" and not escaped for c, escaped in chars)
        if wild:
            if field.kind in ("time", "integer"):
                if chars == [("*", False)]:
                    return Exists(field)
                self.fail(f"{field.name} takes no wildcards (use a range)", at)
            return self.pattern(field, chars)
        text = "".join(c for c, _ in chars)
        if field.kind == "time":
            return self.period(field, self.time(text, at), "=")
        return self.literal(field, "=", text, quoted, at)

    def pattern(self, field: Field, chars: list[tuple[str, bool]]) -> Node:
        if all(c == "*" and not escaped for c, escaped in chars):
            return Exists(field)
        parts: list[str] = []
        literal: list[str] = []
        for char, escaped in chars:
            if char in "*?" and not escaped:
                if literal:
                    parts.append("".join(literal))
                    literal = []
                if not (char == "*" and parts and parts[-1] == "*"):
                    parts.append(char)
            else:
                literal.append(char)
        if literal:
            parts.append("".join(literal))
        return Pattern(field, tuple(parts))

    def compare(self, field: Field, op: Operator, text: str, quoted: bool, at: int) -> Node:
        if field.kind == "time":
            return self.period(field, self.time(text, at), op)
        return self.literal(field, op, text, quoted, at)

    def literal(self, field: Field, op: Operator, text: str, quoted: bool, at: int) -> Node:
        """``field op text`` with ``text`` typed by the field's kind."""
        if field.kind == "integer":
            if not _INTEGER.fullmatch(text):
                self.fail(f"{field.name} takes an integer, got {text!r}", at)
            return Compare(field, op, int(text))
        if field.kind == "any" and not quoted:
            if text in ("true", "false"):
                value: Scalar = text == "true"
                return AnyOf(field, (value, text)) if op == "=" else Compare(field, op, text)
            if _NUMBER.fullmatch(text):
                number: int | float = float(text) if any(c in text for c in ".eE") else int(text)
                return AnyOf(field, (number, text)) if op == "=" else Compare(field, op, number)
        return Compare(field, op, text)

    def any_of(self, field: Field) -> Node:
        open_at = self.i
        self.i += 1
        self.nest()
        options: list[Node] = []
        while True:
            self.ws()
            if self.at_end():
                if options:
                    self.fail("expected a value after OR")
                self.fail("missing ')' to close the value list", open_at)
            chars, quoted, at = self.scalar(stop=")")
            if not quoted and "".join(c for c, _ in chars) in _KEYWORDS:
                self.fail("expected a value", at)
            options.append(self.equals(field, chars, quoted, at))
            self.ws()
            if self.s.startswith(")", self.i):
                self.i += 1
                break
            if not self.keyword("OR"):
                self.fail("expected OR or ')' in the value list")
            self.i += 2
        self.depth -= 1
        values: list[Scalar] = []
        rest: list[Node] = []
        for option in options:
            if isinstance(option, Compare) and option.op == "=":
                values.append(option.value)
            elif isinstance(option, AnyOf):
                values.extend(option.values)
            else:
                rest.append(option)
        if values:
            rest.insert(0, AnyOf(field, tuple(values)) if len(values) > 1 else Compare(field, "=", values[0]))
        return rest[0] if len(rest) == 1 else Or(tuple(rest))

    def range(self, field: Field) -> Node:
        open_at = self.i
        low_inclusive = self.s[self.i] == "["
        self.i += 1
        self.ws()
        low, low_quoted, low_at = self.scalar(stop="]}")
        self.ws()
        if not self.keyword("TO"):
            self.fail("expected TO in the range", self.i)
        self.i += 2
        self.ws()
        high, high_quoted, high_at = self.scalar(stop="]}")
        self.ws()
        if self.at_end() or self.s[self.i] not in "]}":
            self.fail("missing ']' or '}' to close the range", open_at)
        high_inclusive = self.s[self.i] == "]"
        self.i += 1
        bounds: list[Node] = []
        low_text, high_text = "".join(c for c, _ in low), "".join(c for c, _ in high)
        if not (low_text == "*" and not low_quoted):
            op: Operator = ">=" if low_inclusive else ">"
            bounds.append(self.compare(field, op, low_text, low_quoted, low_at))
        if not (high_text == "*" and not high_quoted):
            op = "<=" if high_inclusive else "<"
            bounds.append(self.compare(field, op, high_text, high_quoted, high_at))
        if not bounds:
            return Exists(field)
        flat: list[Node] = []
        for bound in bounds:
            flat.extend(bound.items if isinstance(bound, And) else (bound,))
        return flat[0] if len(flat) == 1 else And(tuple(flat))

    # -- times -----------------------------------------------------------------------------
    def time(self, text: str, at: int) -> Period:
        try:
            return parse_time(text, self.now)
        except FormatError as exc:
            self.fail(str(exc), at)

    def period(self, field: Field, value: Period, op: Operator) -> Node:
        """A comparison against a time period (see :mod:`trailseal.query.times`)."""
        start, end = value.start, value.end
        if value.instant:
            return Compare(field, op, start)
        if op == "=":
            return And((Compare(field, ">=", start), Compare(field, "<", end)))
        if op == ">":
            return Compare(field, ">=", end)
        if op == ">=":
            return Compare(field, ">=", start)
        if op == "<":
            return Compare(field, "<", start)
        return Compare(field, "<", end)  # "<="
