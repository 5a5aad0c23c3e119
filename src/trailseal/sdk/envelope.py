"""Build a wire-form event from ``emit(...)`` arguments and the audit context, cheaply.

This runs on the caller's thread, so it checks only what is cheap and most often wrong — the
required fields, the ``action`` pattern, the ``outcome`` value — and raises ``InvalidEvent`` for
those at once. Everything else is checked by the server (a refused event goes to the client's
dead-letter table, never silently away). ``strict=True`` runs the full ``Event.from_dict``.

:func:`keyword_item` is the path ``emit(action=..., ...)`` takes (no event value): it builds the
wire dict directly from the arguments, checks it and serializes it in about 4 µs. Serializing on
the caller's thread is deliberate: it snapshots ``before``/``after``/``metadata`` (the caller may
change them after ``emit`` returns) and a value JSON cannot carry raises there, not later.
"""

from __future__ import annotations

import re
import time as _time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from trailseal.core.errors import InvalidEvent
from trailseal.core.event import OUTCOMES, Event, format_time
from trailseal.core.ids import new_event_id
from trailseal.sdk.context import AuditContext, actor_value, effective_context

__all__ = ["build_event", "keyword_item", "now_rfc3339"]

_ACTION_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+)*")
_NESTED = ("actor", "resource", "source", "producer", "schema")


_second: tuple[int, str] = (-1, "")  # the last formatted second: emit() formats one per second


def now_rfc3339() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (about 1 µs: the date and time of
    day are formatted once per second)."""
    global _second
    seconds, micros = divmod(_time.time_ns() // 1000, 1_000_000)
    cached, prefix = _second
    if seconds != cached:
        prefix = _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds))
        _second = (seconds, prefix)
    return f"{prefix}.{micros:06d}Z"


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
    if moment is None:
        out["time"] = now_rfc3339()
    elif isinstance(moment, datetime):
        out["time"] = format_time(moment)
    if "id" not in out:
        out["id"] = new_event_id()
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
) -> tuple[str, str, bytes]:
    """``emit(action=..., ...)`` without an event value, as ``(log, event id, JSON body)``.

    The same result as :func:`build_event` followed by ``orjson.dumps`` (same precedence, same
    checks, same errors), built directly: this runs on the caller's thread for every event.
    """
    _check_action(action)
    context = effective_context()
    if id is None:
        id = new_event_id()
    if time is None:
        time = now_rfc3339()
    elif isinstance(time, datetime):
        time = format_time(time)
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
    out: dict[str, Any] = {
        "id": id,
        "time": time,
        "action": action,
        "actor": actor,
        "resource": resource,
    }
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
    return log or context.tenant or default_log, id, orjson.dumps(out)


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
