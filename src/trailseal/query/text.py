"""The free text of an event (what full-text search sees) and a reference tokenizer.

The text is every string and number value of the stored envelope, depth-first in the stored
(RFC 8785, sorted-key) order, except the fields that are not prose: ``id``, ``time``,
``received_at``, ``log``, ``schema`` and ``producer.seq`` (times and counters would flood the
index with unique tokens that nobody searches as words). Keys are not included, values are.

:func:`tokens` mirrors SQLite FTS5's ``unicode61`` tokenizer closely enough for the reference
search (:mod:`trailseal.query.scan`): runs of letters, digits and private-use characters,
case-folded, with diacritics removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

_SKIP_TOP = frozenset({"id", "time", "received_at", "log", "schema"})
_ASCII_WORD = re.compile(r"[a-z0-9]+")


def load_body(body: bytes) -> dict[str, Any] | None:
    """The stored envelope as a dict, or ``None`` for a pruned (tombstone) or unreadable body."""
    if body[:1] != b"{":
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        yield orjson.dumps(value).decode()
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)


def event_text(event: Mapping[str, Any]) -> str:
    """The searchable text of an envelope (see the module docstring)."""
    parts: list[str] = []
    for key, value in event.items():
        if key in _SKIP_TOP:
            continue
        if key == "producer" and isinstance(value, Mapping):
            value = {k: v for k, v in value.items() if k != "seq"}
        parts.extend(_values(value))
    return " ".join(parts)


def body_text(body: bytes) -> str:
    """:func:`event_text` of stored canonical bytes; ``""`` for a pruned or unreadable body."""
    event = load_body(body)
    return "" if event is None else event_text(event)


def _fold(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c)) or char.lower()


def tokens(text: str) -> list[str]:
    """Words of ``text`` as FTS5 ``unicode61`` (remove_diacritics=1) would index them."""
    if text.isascii():  # ASCII letters and digits are the only ASCII word characters
        return _ASCII_WORD.findall(text.lower())
    out: list[str] = []
    word: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category[0] in "LN" or category == "Co":
            word.append(_fold(char))
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out
