"""Build a wire-form event from ``emit(...)`` arguments and the audit context, cheaply.

This runs on the caller's thread, so it checks only what is cheap and most often wrong — the
required fields, the ``action`` pattern, the ``outcome`` value — and raises ``InvalidEvent`` for
those at once. Everything else is checked by the server (a refused event goes to the client's
dead-letter table, never silently away). ``strict=True`` runs the full ``Event.from_dict``.

:func:`keyword_item` is the path ``emit(action=..., ...)`` takes (no event value): it builds the
wire dict directly from the arguments, checks it and serializes it. Serializing on the caller's
thread is deliberate: it snapshots ``before``/``after``/``metadata`` (the caller may change them
after ``emit`` returns) and a value JSON cannot carry raises there, not later. Only the text of
the time stamp is left to the spooler thread: the clock is read in ``emit`` (one
``time.time_ns()``, which also dates the id) and :func:`complete` writes the ``time`` member
into the body before the event is spooled — the same bytes ``orjson.dumps`` of the whole event
would give.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from time import time_ns as _time_ns  # keyword_item has a parameter named time
from typing import Any

import orjson

from trailseal.core.errors import InvalidEvent
from trailseal.core.event import OUTCOMES, Event, format_time
from trailseal.sdk.context import AuditContext, actor_value, effective_context
from trailseal.sdk.ids import format_time_ns, new_event_id
from trailseal.sdk.spool import Item

__all__ = ["QueueItem", "build_event", "complete", "keyword_item", "now_rfc3339"]

_ACTION_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+)*")
_NESTED = ("actor", "resource", "source", "producer", "schema")


QueueItem = Item | tuple[str, str, bytes, int]
"""What ``emit`` queues: ``(log, event_id, body)``, or ``(log, event_id, body without its time,
time.time_ns() of the emit)`` for :func:`complete` to finish on the spooler thread."""

# Where keyword_item's body gets its "time" member: right after the generated id (36 characters).
_TIME_AT = len(b'{"id":"",') + 36


def now_rfc3339() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the date and time of day are
    formatted once per second)."""
    return format_time_ns(_time_ns())


def complete(items: list[QueueItem]) -> list[Item]:
    """``items`` as the spool takes them: each body given its ``time`` member (spooler thread).

    ``(log, id, b'{"id":"<id>",<rest>', now_ns)`` becomes
    ``(log, id, b'{"id":"<id>","time":"<now_ns as RFC 3339>",<rest>')``: byte for byte what
    ``orjson.dumps`` gives for the event with its ``time`` (orjson writes a plain string as is).
    """
    done: list[Item] = []
    for item in items:
        if len(item) == 4:
            log, event_id, body, now_ns = item
            item = (
                log,
                event_id,
                b'%b"time":"%b",%b'
                % (body[:_TIME_AT], format_time_ns(now_ns).encode(), body[_TIME_AT:]),
            )
        done.append(item)
    return done


def resource_value(resource: Any) -> dict[str, Any] | None:
    """``"type:id"``, ``(type, id)``, a mapping or a ``Resource`` as a wire-form dict."""
    if resource is None:
        return None
    if isinstance(resource, str):
        kind, sep, ident = resource.partition(":")
        if not sep or not kind or not ident:
            raise InvalidEvent(
                "resource", f"want 'TYPE:ID' (e.g. 'invoice:inv-42'), got {resource!r}"
            )
        return {"type": kind, "id": ident}
    if isinstance(resource, tuple) and len(resource) == 2:
        return {"type": resource[0], "id": resource[1]}
    if isinstance(resource, Mapping):
        return {key: value for key, value in resource.items() if value is not None}
    slots = getattr(resource, "__slots__", None)
    if slots is not None:
        return {name: value for name in slots if (value := getattr(resource, name)) is not None}
    raise InvalidEvent(
        "resource",
        f"want 'TYPE:ID', a (type, id) tuple or a mapping, got {type(resource).__name__}",
    )


def _wire(event: Event | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(event, Event):
        return event.to_dict()
    if isinstance(event, Mapping):
        out = dict(event)
        for name in _NESTED:
            if name in out and out[name] is not None and not isinstance(out[name], Mapping):
                value = out[name]
                out[name] = {k: v for k in value.__slots__ if (v := getattr(value, k)) is not None}
        return out
    raise TypeError(f"emit: event must be an Event or a mapping, got {type(event).__name__}")


def build_event(
    event: Event | Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    context: AuditContext,
    *,
    source: Mapping[str, Any] | None,
    strict: bool,
) -> tuple[dict[str, Any], str | None]:
    """Return ``(wire event without producer, target log or None)``.

    Precedence, highest first: keyword ``fields``, then ``event``, then the audit ``context``,
    then the client's ``source``. ``id`` and ``time`` are generated when absent. The event's
    ``producer`` is dropped: the client stamps its own. A ``log`` field selects the target log
    (as does the context's ``tenant``) and is not sent as an envelope field.
    """
    out = _wire(event) if event is not None else {}
    for name, value in fields.items():
        if value is not None:
            out[name] = value
    if "actor" in fields and fields["actor"] is not None:
        out["actor"] = actor_value(fields["actor"])
    elif "actor" not in out and context.actor is not None:
        out["actor"] = dict(context.actor)
    if "resource" in fields and fields["resource"] is not None:
        out["resource"] = resource_value(fields["resource"])
    for name in ("request_id", "trace_id", "span_id"):
        if name not in out:
            value = getattr(context, name)
            if value is not None:
                out[name] = value
    if "source" not in out and source:
        out["source"] = dict(source)
    moment = out.get("time")
    now = _time_ns()  # one reading of the clock dates the id and, when absent, the event
    if moment is None:
        out["time"] = format_time_ns(now)
    elif isinstance(moment, datetime):
        out["time"] = format_time(moment)
    if "id" not in out:
        out["id"] = new_event_id(now)
    out.pop("producer", None)
    log = out.pop("log", None) or context.tenant
    for name in ("received_at", "schema"):
        out.pop(name, None)
    _check(out)
    if strict:
        Event.from_dict(out)
    return out, log


_good_actions: set[str] = set()  # actions that passed the pattern check (an app has few)


def _check_action(action: Any) -> None:
    if action in _good_actions:
        return
    if not isinstance(action, str) or not action:
        raise InvalidEvent("action", "required field is missing")
    if len(action) > 128 or not _ACTION_RE.fullmatch(action):
        raise InvalidEvent(
            "action", f"must be lowercase dotted segments like iam.role.update, got {action!r}"
        )
    if len(_good_actions) < 4096:
        _good_actions.add(action)


def keyword_item(
    default_log: str,
    client_source: Mapping[str, Any] | None,
    action: Any,
    actor: Any,
    resource: Any,
    outcome: Any,
    reason: Any,
    before: Any,
    after: Any,
    metadata: Any,
    time: Any,
    id: Any,
    request_id: Any,
    trace_id: Any,
    span_id: Any,
    source: Any,
    log: Any,
) -> QueueItem:
    """``emit(action=..., ...)`` without an event value, as a queue item: ``(log, event id, JSON
    body)``, or — when neither ``time`` nor ``id`` is given, the usual case — ``(log, event id,
    JSON body without its time, time.time_ns())`` for :func:`complete`.

    The same event as :func:`build_event` followed by ``orjson.dumps`` (same precedence, same
    checks, same errors), built directly: this runs on the caller's thread for every event.
    """
    if action not in _good_actions:
        _check_action(action)
    context = effective_context()
    if actor is None:
        actor = context.actor
        if actor is not None and type(actor) is not dict:
            actor = dict(actor)
    elif type(actor) is str:
        actor = {"id": actor}
    else:
        actor = actor_value(actor)
    if actor is None or type(actor.get("id")) is not str or not actor["id"]:
        raise InvalidEvent(
            "actor.id", "required field is missing (pass actor=... or set audit_context)"
        )
    if type(resource) is str:
        kind, sep, ident = resource.partition(":")
        if not sep or not kind or not ident:
            raise InvalidEvent(
                "resource", f"want 'TYPE:ID' (e.g. 'invoice:inv-42'), got {resource!r}"
            )
        resource = {"type": kind, "id": ident}
    else:
        resource = resource_value(resource)
        if resource is None:
            raise InvalidEvent("resource", "required field is missing")
        for name in ("type", "id"):
            if not isinstance(resource.get(name), str) or not resource[name]:
                raise InvalidEvent(f"resource.{name}", "required field is missing")
    now = _time_ns()  # the one reading of the clock: it dates the id and (if absent) the event
    stamp: int | None = now
    if time is None and id is None:
        # The usual case: the time text is written on the spooler thread (complete()).
        id = new_event_id(now)
        out: dict[str, Any] = {"id": id, "action": action, "actor": actor, "resource": resource}
    else:
        if id is None:
            id = new_event_id(now)
        if time is None:
            time = format_time_ns(now)
        elif isinstance(time, datetime):
            time = format_time(time)
        out = {"id": id, "time": time, "action": action, "actor": actor, "resource": resource}
        stamp = None
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise InvalidEvent(
                "outcome", f"must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}"
            )
        out["outcome"] = outcome
    if reason is not None:
        out["reason"] = reason
    if before is not None:
        out["before"] = before
    if after is not None:
        out["after"] = after
    if metadata is not None:
        out["metadata"] = metadata
    if request_id is None:
        request_id = context.request_id
    if request_id is not None:
        out["request_id"] = request_id
    if trace_id is None:
        trace_id = context.trace_id
    if trace_id is not None:
        out["trace_id"] = trace_id
    if span_id is None:
        span_id = context.span_id
    if span_id is not None:
        out["span_id"] = span_id
    if source is not None:
        out["source"] = source
    elif client_source:
        out["source"] = client_source
    log = log or context.tenant or default_log
    if stamp is None:
        return log, id, orjson.dumps(out)
    return log, id, orjson.dumps(out), stamp


def _check(out: Mapping[str, Any]) -> None:
    """The cheap checks: required fields present, action and outcome well-formed."""
    _check_action(out.get("action"))
    actor = out.get("actor")
    if not isinstance(actor, Mapping) or not isinstance(actor.get("id"), str) or not actor["id"]:
        raise InvalidEvent(
            "actor.id", "required field is missing (pass actor=... or set audit_context)"
        )
    resource = out.get("resource")
    if not isinstance(resource, Mapping):
        raise InvalidEvent("resource", "required field is missing")
    for name in ("type", "id"):
        if not isinstance(resource.get(name), str) or not resource[name]:
            raise InvalidEvent(f"resource.{name}", "required field is missing")
    outcome = out.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidEvent(
            "outcome", f"must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}"
        )
