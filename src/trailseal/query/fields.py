"""The searchable fields: every envelope field (ARCHITECTURE.md §2), how it is typed and stored.

``kind`` says how a value is read: ``string`` (exact, case-sensitive), ``time`` (RFC 3339 or
relative, compared as normalized UTC), ``integer``, or ``any`` (JSON under ``metadata``,
``before``, ``after``: a number, a boolean or a string). ``column`` names the ``entries`` column
when the value is stored in one; otherwise backends read it from the envelope at ``path``.

``access`` is a hint for backends about the cheapest way to find values:

* ``ordered`` — a B-tree index on ``(log, column, time, leaf_index)`` (or ``(log, time, ...)``),
  so results come out already in time order;
* ``unique`` — the ``(log, event_id)`` unique index;
* ``token`` — high-cardinality strings found through the full-text index, then checked exactly;
* ``scan`` — low-cardinality or rare fields, filtered while scanning in time order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from trailseal.core.errors import FormatError

Kind = Literal["string", "time", "integer", "any"]
Access = Literal["ordered", "unique", "token", "scan"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,128}")
_JSON_ROOTS = ("metadata", "before", "after")


@dataclass(frozen=True, slots=True)
class Field:
    """A searchable field: canonical dotted ``name``, value ``kind``, storage, access hint."""

    name: str
    kind: Kind
    path: tuple[str, ...]
    column: str | None = None
    access: Access = "scan"


def _field(name: str, kind: Kind, column: str | None = None, access: Access = "scan") -> Field:
    return Field(name, kind, tuple(name.split(".")), column, access)


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        _field("id", "string", "event_id", "unique"),
        _field("leaf_index", "integer", "leaf_index", "ordered"),
        _field("time", "time", "time", "ordered"),
        _field("received_at", "time", "received_at"),
        _field("action", "string", "action", "ordered"),
        _field("actor.id", "string", "actor_id", "ordered"),
        _field("actor.type", "string"),
        _field("actor.ip", "string", None, "token"),
        _field("actor.user_agent", "string", None, "token"),
        _field("resource.type", "string", "resource_type"),
        _field("resource.id", "string", "resource_id", "token"),
        _field("resource.name", "string", None, "token"),
        _field("outcome", "string", "outcome"),
        _field("request_id", "string", "request_id", "token"),
        _field("trace_id", "string", "trace_id", "token"),
        _field("span_id", "string", None, "token"),
        _field("source.service", "string", "source_service"),
        _field("source.host", "string", None, "token"),
        _field("source.region", "string"),
        _field("source.environment", "string"),
        _field("producer.id", "string", None, "token"),
        _field("producer.seq", "integer"),
        _field("reason", "string", None, "token"),
        _field("schema.id", "string"),
        _field("schema.version", "integer"),
    )
}
"""Every fixed field by canonical name. ``metadata.<key>...``, ``before.*``, ``after.*`` are
built on demand by :func:`lookup`."""

ALIASES: dict[str, str] = {
    "actor": "actor.id",
    "service": "source.service",
    "env": "source.environment",
    "ip": "actor.ip",
    "event_id": "id",
}
"""Short names accepted in queries for the most used fields."""


def lookup(name: str) -> Field:
    """The field called ``name`` (a canonical name, an alias, or ``metadata.<key>[.<key>...]``).

    Raises :class:`FormatError` for an unknown name, suggesting the closest known one.
    """
    canonical = ALIASES.get(name, name)
    found = FIELDS.get(canonical)
    if found is not None:
        return found
    root, _, rest = canonical.partition(".")
    if root in _JSON_ROOTS:
        segments = rest.split(".") if rest else []
        if not segments:
            raise FormatError(f"field {name!r}: name a key, like {root}.ticket")
        for segment in segments:
            if not _SEGMENT.fullmatch(segment):
                raise FormatError(
                    f"field {name!r}: key {segment!r} must be 1..128 of [A-Za-z0-9_-]"
                )
        return Field(canonical, "any", (root, *segments), None, "token")
    raise FormatError(f"unknown field {name!r}{_suggest(name)}")


def _suggest(name: str) -> str:
    """``" (did you mean X?)"`` for a near miss, else a pointer to the field list."""
    import difflib

    names = [*FIELDS, *ALIASES, "metadata.<key>"]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    return "; fields: " + ", ".join(FIELDS) + ", metadata.<key>, before.<key>, after.<key>"
