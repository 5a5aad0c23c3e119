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
from collections.abc import Mapping
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


def _collect(value: Any, parts: list[str]) -> None:
    """Append every string and number below ``value`` to ``parts`` (depth-first)."""
    kind = type(value)
    if kind is str:
        parts.append(value)
    elif kind is dict:
        for item in value.values():
            _collect(item, parts)
    elif kind is list:
        for item in value:
            _collect(item, parts)
    elif kind is int or kind is float:
        parts.append(orjson.dumps(value).decode())
    elif isinstance(value, Mapping):  # any other mapping (callers outside the hot path)
        for item in value.values():
            _collect(item, parts)


def event_text(event: Mapping[str, Any]) -> str:
    """The searchable text of an envelope (see the module docstring).

    On the commit path (the full-text index is written in the append transaction), so the
    usual shapes — strings and objects of strings — are handled inline without recursion.
    """
    parts: list[str] = []
    append = parts.append
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if key not in _SKIP_TOP:
                append(value)
        elif key in _SKIP_TOP:
            continue
        elif kind is dict:
            if key == "producer":
                producer_id = value.get("id")
                if type(producer_id) is str:
                    append(producer_id)
                continue
            for item in value.values():
                if type(item) is str:
                    append(item)
                else:
                    _collect(item, parts)
        elif key == "producer" and isinstance(value, Mapping):
            producer_id = value.get("id")
            if isinstance(producer_id, str):
                append(producer_id)
        else:
            _collect(value, parts)
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
