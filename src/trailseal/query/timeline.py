"""Incident timelines: what happened around a request, a trace or a moment, and how it connects.

Selection (exactly one of):

* ``request_id`` — the request's events, widened to every event of the traces they belong to
  and of the requests in those traces;
* ``trace_id`` — the trace's events, widened to every event of the requests they belong to;
* ``around`` a time with a ``window`` (default 2h) on each side, or ``before``/``after`` for
  asymmetric windows (``--around 14:05Z --before 2h --after 10m``: what changed before an
  outage).

An optional query ``q`` narrows any of them. The result is in time order, grouped by source
service, with:

* a **correlation tree**: an event's parent is the event whose ``span_id`` its
  ``metadata.parent_span_id`` names (or whose ``id`` its ``metadata.parent_event_id`` names),
  else the first earlier event of its request, else of its trace; cycles from bad data are cut;
* **changes**: ``before``/``after`` compared key by key (nested objects flattened to dotted
  paths; lists compared whole);
* **gaps**: for every producer in the timeline, the producer's sequence numbers within the
  timeline's time span (read from the log, not only the selected events) where one jumps by
  more than one — events lost between the producer and the trail, or not (yet) delivered. The
  span is read in one pass of at most 100,000 events; past that ``gaps_complete`` is false.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from trailseal.core.errors import FormatError
from trailseal.core.event import format_time
from trailseal.query.ast import AnyOf, Compare, Node, all_of
from trailseal.query.fields import FIELDS
from trailseal.query.parser import parse
from trailseal.query.search import SearchStore, iter_matches
from trailseal.query.text import load_body
from trailseal.query.times import parse_duration, parse_time, to_datetime
from trailseal.storage.base import LeafEntry

DEFAULT_LIMIT = 2000
MAX_LIMIT = 20_000
_GAP_SCAN_LIMIT = 100_000
_MAX_WIDEN = 200


@dataclass(frozen=True, slots=True)
class Change:
    """One key that differs between ``before`` and ``after``: ``added``, ``removed``, ``changed``."""

    path: str
    op: str
    before: Any = None
    after: Any = None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"path": self.path, "op": self.op, "before": self.before, "after": self.after}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, Mapping):
        return {prefix: value} if prefix else {}
    out: dict[str, Any] = {}
    for key in sorted(value):
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value[key], Mapping) and value[key]:
            out.update(_flatten(value[key], path))
        else:
            out[path] = value[key]
    return out


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[Change]:
    """The keys that differ between two objects, by dotted path, in path order."""
    old, new = _flatten(before or {}), _flatten(after or {})
    changes: list[Change] = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            changes.append(Change(path, "removed", old[path], None))
        elif path not in old:
            changes.append(Change(path, "added", None, new[path]))
        elif old[path] != new[path] or type(old[path]) is not type(new[path]):
            changes.append(Change(path, "changed", old[path], new[path]))
    return changes


@dataclass
class TimelineEvent:
    """One event as the timeline shows it."""

    leaf_index: int
    id: str
    time: str
    service: str | None
    action: str
    actor: str
    resource: str
    outcome: str | None
    request_id: str | None
    trace_id: str | None
    span_id: str | None
    reason: str | None
    producer: str | None
    seq: int | None
    changes: list[Change] = field(default_factory=list)
    parent: int | None = None  # leaf index of the parent event
    depth: int = 0
    event: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON form (without the full envelope)."""
        return {
            "leaf_index": self.leaf_index, "id": self.id, "time": self.time,
            "service": self.service, "action": self.action, "actor": self.actor,
            "resource": self.resource, "outcome": self.outcome, "request_id": self.request_id,
            "trace_id": self.trace_id, "span_id": self.span_id, "reason": self.reason,
            "producer": self.producer, "seq": self.seq, "parent": self.parent,
            "depth": self.depth, "changes": [c.to_json() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """A jump in one producer's sequence numbers: ``missing`` numbers between two events."""

    producer: str
    after_seq: int
    before_seq: int
    missing: int
    after_time: str
    before_time: str

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"producer": self.producer, "after_seq": self.after_seq,
                "before_seq": self.before_seq, "missing": self.missing,
                "after_time": self.after_time, "before_time": self.before_time}


@dataclass
class Timeline:
    """The events of one incident, correlated."""

    log: str
    title: str
    selector: dict[str, str]
    events: list[TimelineEvent]
    gaps: list[Gap]
    truncated: bool
    gaps_complete: bool = True
    start: str | None = None
    end: str | None = None

    def services(self) -> dict[str, list[TimelineEvent]]:
        """Events by source service, services in order of first appearance."""
        groups: dict[str, list[TimelineEvent]] = {}
        for event in self.events:
            groups.setdefault(event.service or "(no service)", []).append(event)
        return groups

    def children(self) -> dict[int | None, list[TimelineEvent]]:
        """Events by parent leaf index (``None``: the roots), each list in time order."""
        out: dict[int | None, list[TimelineEvent]] = {}
        for event in self.events:
            out.setdefault(event.parent, []).append(event)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form: events, service groups, the correlation tree (as parents) and gaps."""
        return {
            "log": self.log, "title": self.title, "selector": self.selector,
            "start": self.start, "end": self.end, "count": len(self.events),
            "truncated": self.truncated,
            "services": [
                {"service": name, "count": len(group), "first": group[0].time,
                 "last": group[-1].time, "events": [e.leaf_index for e in group]}
                for name, group in self.services().items()
            ],
            "events": [e.to_json() for e in self.events],
            "gaps": [g.to_json() for g in self.gaps],
            "gaps_complete": self.gaps_complete,
        }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _timeline_event(entry: LeafEntry) -> TimelineEvent | None:
    event = load_body(entry.body)
    if event is None:
        return None
    actor = event.get("actor") or {}
    resource = event.get("resource") or {}
    source = event.get("source") or {}
    producer = event.get("producer") or {}
    seq = producer.get("seq")
    before, after = event.get("before"), event.get("after")
    return TimelineEvent(
        leaf_index=entry.leaf_index, id=entry.event_id, time=entry.time,
        service=_text(source.get("service")), action=str(event.get("action", "")),
        actor=str(actor.get("id", "")),
        resource=f"{resource.get('type', '')}:{resource.get('id', '')}",
        outcome=_text(event.get("outcome")), request_id=_text(event.get("request_id")),
        trace_id=_text(event.get("trace_id")), span_id=_text(event.get("span_id")),
        reason=_text(event.get("reason")), producer=_text(producer.get("id")),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        changes=diff(before, after) if before is not None or after is not None else [],
        event=event,
    )


def correlate(events: list[TimelineEvent]) -> None:
    """Set ``parent`` and ``depth`` on time-ordered ``events`` (see the module docstring)."""
    by_span: dict[str, TimelineEvent] = {}
    by_id: dict[str, TimelineEvent] = {}
    first_of_request: dict[str, TimelineEvent] = {}
    first_of_trace: dict[str, TimelineEvent] = {}
    for e in events:
        if e.span_id:
            by_span.setdefault(e.span_id, e)
        by_id.setdefault(e.id, e)
        if e.request_id:
            first_of_request.setdefault(e.request_id, e)
        if e.trace_id:
            first_of_trace.setdefault(e.trace_id, e)
    index = {e.leaf_index: e for e in events}
    for e in events:
        meta = e.event.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        candidates = [
            by_span.get(str(meta.get("parent_span_id"))) if meta.get("parent_span_id") else None,
            by_id.get(str(meta.get("parent_event_id"))) if meta.get("parent_event_id") else None,
            first_of_request.get(e.request_id) if e.request_id else None,
            first_of_trace.get(e.trace_id) if e.trace_id else None,
        ]
        e.parent = next((c.leaf_index for c in candidates if c is not None and c is not e), None)
    for e in events:  # cut cycles (possible only through explicit parent ids)
        seen = {e.leaf_index}
        node = e
        while node.parent is not None:
            if node.parent in seen:
                node.parent = None
                break
            seen.add(node.parent)
            node = index[node.parent]
    for e in events:
        depth, node = 0, e
        while node.parent is not None:
            depth += 1
            node = index[node.parent]
        e.depth = depth


def find_gaps(search: SearchStore, log: str, events: list[TimelineEvent]) -> tuple[list[Gap], bool]:
    """Sequence jumps of the producers seen in ``events``, read from every event of the log in
    their time span (one pass, at most ``_GAP_SCAN_LIMIT`` events); ``(gaps, complete)``."""
    producers = {e.producer for e in events if e.producer and e.seq is not None}
    if not producers:
        return [], True
    span = all_of([Compare(FIELDS["time"], ">=", events[0].time),
                   Compare(FIELDS["time"], "<=", events[-1].time)])
    seen: dict[str, dict[int, str]] = {p: {} for p in producers}
    scanned = 0
    for entry in iter_matches(search, log, span, limit=_GAP_SCAN_LIMIT):
        scanned += 1
        event = load_body(entry.body) or {}
        producer = event.get("producer")
        if isinstance(producer, Mapping) and producer.get("id") in seen:
            seq = producer.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                seen[str(producer["id"])].setdefault(seq, entry.time)
    gaps: list[Gap] = []
    for producer in sorted(seen):
        numbers = seen[producer]
        ordered = sorted(numbers)
        for low, high in pairwise(ordered):
            if high > low + 1:
                gaps.append(Gap(producer, low, high, high - low - 1, numbers[low], numbers[high]))
    return gaps, scanned < _GAP_SCAN_LIMIT


def _window(around: str, window: str | None, before: str | None, after: str | None,
            now: datetime) -> tuple[str, str]:
    center = to_datetime(parse_time(around, now).start)
    default = parse_duration(window) if window else timedelta(hours=2)
    low = center - (parse_duration(before) if before else default)
    high = center + (parse_duration(after) if after else default)
    return format_time(low), format_time(high)


def build_timeline(
    search: SearchStore,
    log: str,
    *,
    request_id: str | None = None,
    trace_id: str | None = None,
    around: str | None = None,
    window: str | None = None,
    before: str | None = None,
    after: str | None = None,
    q: str = "",
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Timeline:
    """Select, correlate and group the events of one incident (see the module docstring)."""
    chosen = [name for name, value in (("request_id", request_id), ("trace_id", trace_id),
                                       ("around", around)) if value]
    if len(chosen) != 1:
        raise FormatError("timeline: give exactly one of request_id, trace_id or around")
    if not 1 <= limit <= MAX_LIMIT:
        raise FormatError(f"limit: want 1..{MAX_LIMIT}, got {limit}")
    clock = now or datetime.now(UTC)
    narrow = parse(q, now=clock)
    selector: dict[str, str] = {}
    seed: Node
    if request_id:
        selector["request_id"] = request_id
        seed = Compare(FIELDS["request_id"], "=", request_id)
        title = f"request_id {request_id}"
    elif trace_id:
        selector["trace_id"] = trace_id
        seed = Compare(FIELDS["trace_id"], "=", trace_id)
        title = f"trace_id {trace_id}"
    else:
        assert around is not None
        low, high = _window(around, window, before, after, clock)
        selector.update({"around": around, "from": low, "to": high})
        seed = all_of([Compare(FIELDS["time"], ">=", low), Compare(FIELDS["time"], "<=", high)])
        title = f"{low} to {high}"
    if q:
        selector["q"] = q
    selected = list(iter_matches(search, log, all_of([seed, narrow]), limit=limit + 1))
    # Widen along correlation ids: a request to its traces, then every request of those traces
    # (events of one operation need not all carry the trace id); a trace to its requests.
    steps = ["trace_id", "request_id"] if request_id else ["request_id"] if trace_id else []
    for other in steps:
        ids = sorted({v for e in selected if (v := getattr(e, other)) is not None})[:_MAX_WIDEN]
        if ids and len(selected) <= limit:
            extra = iter_matches(search, log, all_of([AnyOf(FIELDS[other], tuple(ids)), narrow]),
                                 limit=limit + 1)
            merged = {e.leaf_index: e for e in selected}
            merged.update((e.leaf_index, e) for e in extra)
            selected = sorted(merged.values(), key=lambda e: (e.time, e.leaf_index))
    truncated = len(selected) > limit
    events = [t for e in selected[:limit] if (t := _timeline_event(e)) is not None]
    events.sort(key=lambda e: (e.time, e.leaf_index))
    correlate(events)
    gaps, gaps_complete = find_gaps(search, log, events)
    return Timeline(
        log=log, title=title, selector=selector, events=events,
        gaps=gaps, gaps_complete=gaps_complete, truncated=truncated,
        start=events[0].time if events else selector.get("from"),
        end=events[-1].time if events else selector.get("to"),
    )
