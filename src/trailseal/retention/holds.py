"""Legal holds: which events a hold covers, and whether it is in force.

A hold belongs to one log (tenant) and selects events with one selector (JSON)::

    {"kind": "tenant"}                                           every event of the log
    {"kind": "time_range", "from": "2025-03-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"}
    {"kind": "event_ids", "ids": ["0193a0c4-...", ...]}
    {"kind": "query", "q": "actor.id:alice AND action:iam.*"}

A time range is half open, either end may be omitted, and it covers an event when the event's
``time`` *or* its ``received_at`` falls in it (a hold errs on the side of keeping). A query hold
is evaluated by the query engine through :class:`QueryMatcher`; where no engine is installed a
query hold cannot be created, and one that exists holds every event of its log (fail safe).

A hold is in force until it is released or its ``expires_at`` passes — judged against the
retention horizon, never the bare system clock (a clock jump cannot expire a hold early).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from trailseal.core.errors import FormatError
from trailseal.retention.policy import format_time, parse_time
from trailseal.storage.base import LeafEntry, Store
from trailseal.storage.retention import HoldRecord

KINDS = ("tenant", "time_range", "event_ids", "query")
MAX_EVENT_IDS = 100_000


class QueryMatcher(Protocol):
    """The query engine's side of query holds: the leaves of ``log`` in ``[start, end)`` that
    ``query`` matches. Raises FormatError for a query that does not parse."""

    def __call__(self, store: Store, log: str, query: str, start: int, end: int) -> Iterable[int]:
        """Matching leaf indexes."""


def find_query_matcher() -> QueryMatcher | None:
    """``trailseal.query.match_leaves`` when the query engine provides it, else ``None``."""
    try:
        module = importlib.import_module("trailseal.query")
    except ImportError:
        return None
    found = getattr(module, "match_leaves", None)
    return found if callable(found) else None


def normalize_selector(selector: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a selector and return its canonical form (times normalized, ids de-duplicated)."""
    if not isinstance(selector, Mapping):
        raise FormatError("selector: must be an object")
    kind = selector.get("kind")
    if kind not in KINDS:
        raise FormatError(f"selector.kind: want one of {', '.join(KINDS)}, got {kind!r}")
    extra = set(selector) - {"kind", "from", "to", "ids", "q"}
    if extra:
        raise FormatError(f"selector.{min(extra)}: unknown field")
    if kind == "tenant":
        return {"kind": "tenant"}
    if kind == "time_range":
        out: dict[str, Any] = {"kind": "time_range"}
        for end in ("from", "to"):
            value = selector.get(end)
            if value is not None:
                if not isinstance(value, str):
                    raise FormatError(f"selector.{end}: must be an RFC 3339 time")
                out[end] = format_time(parse_time(value))
        if "from" not in out and "to" not in out:
            raise FormatError("selector: a time range needs 'from', 'to' or both")
        if "from" in out and "to" in out and out["from"] >= out["to"]:
            raise FormatError(f"selector: empty time range [{out['from']}, {out['to']})")
        return out
    if kind == "event_ids":
        ids = selector.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
            raise FormatError("selector.ids: want a non-empty list of event ids")
        if len(ids) > MAX_EVENT_IDS:
            raise FormatError(f"selector.ids: {len(ids)} ids, limit {MAX_EVENT_IDS}")
        return {"kind": "event_ids", "ids": sorted(set(ids))}
    query = selector.get("q")
    if not isinstance(query, str) or not query.strip():
        raise FormatError("selector.q: want a non-empty query string")
    return {"kind": "query", "q": query}


def in_force(hold: HoldRecord, at: str) -> bool:
    """Not released, and not expired at ``at`` (the retention horizon)."""
    return hold.released_at is None and (hold.expires_at is None or hold.expires_at > at)


def describe(selector: Mapping[str, Any]) -> str:
    """One line for people."""
    kind = selector.get("kind")
    if kind == "tenant":
        return "every event of the log"
    if kind == "time_range":
        return f"events in [{selector.get('from', '-inf')}, {selector.get('to', '+inf')})"
    if kind == "event_ids":
        return f"{len(selector.get('ids', []))} event id(s)"
    return f"query {selector.get('q')!r}"


@dataclass
class HoldMatcher:
    """The holds in force on one log, ready to test entries in leaf order."""

    holds: list[HoldRecord]
    tenant: list[str] = field(default_factory=list)
    ranges: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    ids: dict[str, list[str]] = field(default_factory=dict)
    leaves: dict[int, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        store: Store,
        log: str,
        holds: Iterable[HoldRecord],
        at: str,
        end: int,
        matcher: QueryMatcher | None,
    ) -> HoldMatcher:
        """Holds of ``log`` in force at ``at``; query holds resolved over leaves ``[0, end)``."""
        active = [h for h in holds if h.log == log and in_force(h, at)]
        built = cls(active)
        for hold in active:
            sel = hold.selector
            kind = sel.get("kind")
            if kind == "tenant":
                built.tenant.append(hold.hold_id)
            elif kind == "time_range":
                built.ranges.append((hold.hold_id, sel.get("from"), sel.get("to")))
            elif kind == "event_ids":
                for event_id in sel.get("ids", []):
                    built.ids.setdefault(event_id, []).append(hold.hold_id)
            elif kind == "query" and matcher is not None:
                try:
                    for leaf_index in matcher(store, log, str(sel.get("q")), 0, end):
                        built.leaves.setdefault(int(leaf_index), []).append(hold.hold_id)
                except Exception as exc:  # any failure: keep everything (fail safe)
                    built.tenant.append(hold.hold_id)
                    built.warnings.append(f"hold {hold.hold_id}: query failed ({exc}); "
                                          f"holding every event of log {log}")
            else:
                built.tenant.append(hold.hold_id)
                built.warnings.append(f"hold {hold.hold_id}: no query engine to evaluate "
                                      f"{sel.get('q')!r}; holding every event of log {log}")
        return built

    def covering(self, entry: LeafEntry) -> list[str]:
        """Ids of the holds that cover ``entry`` (empty: none)."""
        found = list(self.tenant)
        for hold_id, start, stop in self.ranges:
            for moment in (entry.time, entry.received_at):
                if moment and (start is None or moment >= start) and (stop is None or moment < stop):
                    found.append(hold_id)
                    break
        found.extend(self.ids.get(entry.event_id, ()))
        found.extend(self.leaves.get(entry.leaf_index, ()))
        return found
