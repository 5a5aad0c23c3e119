"""The audit event envelope of ARCHITECTURE.md §2 as immutable, validated values.

``Event.from_dict`` validates a wire-form event (one JSON object), ``Event.to_dict`` gives it back
(absent fields omitted), ``Event.canonical_bytes`` is its RFC 8785 form: the Merkle leaf data.

================  ========  =================================================================
field             required  rule; every string is 1..N characters (omit a field, never send "")
================  ========  =================================================================
id                no        1..128 of ``[A-Za-z0-9._:-]``; a UUIDv7 is generated when absent
time              yes       RFC 3339, any offset; stored as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
                            (digits past 6 truncated, a leap second ``:60`` → ``:59.999999``)
actor             yes       ``id`` (required, ≤ 256), ``type`` (≤ 128), ``ip`` (IPv4/IPv6
                            address ≤ 64, stored compressed), ``user_agent`` (≤ 1024)
action            yes       ≤ 128 of ``[a-z0-9_]+(\\.[a-z0-9_-]+)*``: lowercase dot-separated
                            segments, most specific last, no ``-`` in the first segment and
                            no ``*`` (wildcards belong to subscriptions, not to events)
resource          yes       ``type`` (required, ≤ 128), ``id`` (required, ≤ 256), ``name`` (≤ 1024)
outcome           no        ``success`` | ``failure`` | ``denied`` | ``unknown``
request_id,       no        ≤ 256 each
trace_id, span_id
source            no        ``service``, ``host``, ``region``, ``environment``: optional, ≤ 256
producer          no        ``id`` (required, ≤ 256), ``seq`` (integer 0..2**53-1, for gap checks)
before, after,    no        any JSON object with an RFC 8785 form (I-JSON, RFC 7493: str keys,
metadata                    finite numbers, no lossy integers); stored by reference: do not mutate
reason            no        ≤ 4096
received_at       server    RFC 3339, normalized like ``time``
log               server    1..128 of ``[A-Za-z0-9._-]``
schema            server    ``id`` (required, ≤ 256), ``version`` (required, integer ≥ 1)
================  ========  =================================================================

A ``null`` optional field counts as absent. Unknown fields are rejected at every level (extra
data belongs in ``metadata``). Every failure raises ``InvalidEvent(field, message)`` naming the
dotted path (``actor.id``, ``producer.seq``); a problem inside ``before``, ``after`` or
``metadata`` names that field, and its message gives the RFC 6901 pointer (``at '/items/2'``).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import operator
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import compress
from operator import is_not
from typing import Any, TypeVar

from trailseal.core.canonical import MAX_SAFE_INTEGER, canonicalize
from trailseal.core.errors import CanonicalizationError, InvalidEvent
from trailseal.core.hashing import leaf_hash
from trailseal.core.ids import format_time, new_event_id, normalize_time
from trailseal.core.slots import maker

__all__ = ["OUTCOMES", "Actor", "Event", "Producer", "Resource", "SchemaRef", "Source"]
__all__ += ["format_time", "normalize_time"]  # re-exported from trailseal.core.ids

OUTCOMES = frozenset({"success", "failure", "denied", "unknown"})
"""The allowed values of ``Event.outcome``."""

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LOG_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ACTION_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+)*")


@functools.lru_cache(maxsize=4096)
def _normalize_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    return _JSON_NAMES.get(type(value), type(value).__name__)


_JSON_NAMES = {bool: "boolean", int: "number", float: "number", str: "string", dict: "object"}
_JSON_NAMES.update({list: "array", type(None): "null"})
_T = TypeVar("_T")


def _new(cls: type[_T], values: Any) -> _T:
    """``cls(*values)`` for already-validated values, through the slot descriptors.

    A frozen dataclass's ``__init__`` calls ``object.__setattr__`` once per field, the largest
    cost of ``from_dict``; this is about 3x faster for ``Event`` (6x for ``Actor``). ``values``
    must be complete: one per field, in order.
    """
    make = _MAKERS.get(cls)
    if make is None:  # a subclass: its own __init__ knows its fields
        return cls(*values)
    return make(values)  # type: ignore[no-any-return]


# The from_dict fast path checks each field inline; anything unusual goes to these helpers, which
# return the value to store (None for an absent optional field) or raise InvalidEvent.
def _text(
    value: Any, field: str, limit: int, required: bool = False, pattern: re.Pattern[str] | None = None,
    rule: str = "",
) -> Any:
    """Check a string of 1..``limit`` characters, optionally matching ``pattern``."""
    if value is None:
        if required:
            raise InvalidEvent(field, "required field is missing")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(field, f"must be a string, got {_kind(value)}")
    if not value:
        raise InvalidEvent(field, "must not be empty (omit the field instead)")
    if len(value) > limit:
        raise InvalidEvent(field, f"must be at most {limit} characters, got {len(value)}")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidEvent(field, f"must be {rule}, got {value!r}")
    return str(value)  # a str subclass: store a plain str


def _object(value: Any, field: str, known: frozenset[str], required: bool = False) -> Any:
    """Check a JSON object with no fields but ``known``; None if absent and optional."""
    if value is None and required:
        raise InvalidEvent(field, "required field is missing")
    if value is not None and type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidEvent(field, f"must be an object, got {_kind(value)}")
    if value is not None and not value.keys() <= known:
        raise InvalidEvent(f"{field}.{min(map(str, value.keys() - known))}", "unknown field")
    return value


def _integer(value: Any, field: str, low: int, required: bool = False) -> Any:
    """Check an integer in ``low``..2**53-1 (RFC 7493 §2.2)."""
    if value is None and required:
        raise InvalidEvent(field, "required field is missing")
    if value is not None and (type(value) is not int or not low <= value <= MAX_SAFE_INTEGER):
        raise InvalidEvent(field, f"must be an integer in {low}..2**53-1, got {value!r}")
    return value


def _ip(value: Any, field: str) -> Any:
    # The length bound also bounds what the lru_cache of _normalize_ip can hold.
    normalized = _normalize_ip(value) if type(value) is str and len(value) <= 64 else None
    if normalized is None and value is not None:
        raise InvalidEvent(field, f"must be an IPv4 or IPv6 address, got {value!r}")
    return normalized


def _json_object(value: Any, field: str) -> Any:
    """Check a JSON object with an RFC 8785 form (so I-JSON, RFC 7493); kept, not copied."""
    if value is not None:
        if type(value) is not dict:
            raise InvalidEvent(field, f"must be a JSON object, got {_kind(value)}")
        try:
            canonicalize(value)
        except CanonicalizationError as exc:
            raise InvalidEvent(field, str(exc)) from None
    return value


def _json_object_type(value: Any, field: str) -> Any:
    """Only the type check of :func:`_json_object`."""
    if value is not None and type(value) is not dict:
        raise InvalidEvent(field, f"must be a JSON object, got {_kind(value)}")
    return value


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: ``id`` (required), ``type`` (``user``, ``service``...), ``ip``, ``user_agent``."""

    id: str
    type: str | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Resource:
    """What was acted on: ``type`` and ``id`` (required), and a display ``name``."""

    type: str
    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    """Where the event was produced; every field optional."""

    service: str | None = None
    host: str | None = None
    region: str | None = None
    environment: str | None = None


@dataclass(frozen=True, slots=True)
class Producer:
    """The emitting producer: ``id`` and an optional per-producer counter ``seq`` (≥ 0)."""

    id: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class SchemaRef:
    """The schema the server validated the event against: schema ``id`` and ``version`` (≥ 1)."""

    id: str
    version: int


def _compact(value: Any) -> dict[str, Any]:
    """A sub-object as a dict without its None fields."""
    return {name: item for name in value.__slots__ if (item := getattr(value, name)) is not None}


_ID_RULE = "1..128 characters of [A-Za-z0-9._:-]"
_LOG_RULE = "1..128 characters of [A-Za-z0-9._-]"
_ACTION_RULE = "lowercase dotted segments like iam.role.update"
_NESTED = frozenset({"actor", "resource", "source", "producer", "schema"})


@dataclass(frozen=True, slots=True)
class Event:
    """One audit event (ARCHITECTURE.md §2). Build it with ``from_dict``, which validates.

    ``time`` and ``received_at`` are normalized UTC strings; ``before``, ``after``, ``metadata`` are
    the JSON objects as given (so an Event holding them is not hashable). The server sets
    ``received_at``, ``log`` and ``schema`` with ``with_server_fields``; they are part of the leaf.
    """

    id: str
    time: str
    actor: Actor
    action: str
    resource: Resource
    outcome: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    source: Source | None = None
    producer: Producer | None = None
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    reason: str | None = None
    metadata: Mapping[str, Any] | None = None
    received_at: str | None = None
    log: str | None = None
    schema: SchemaRef | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, check_payloads: bool = True) -> Event:
        """Validate a wire-form event (a parsed JSON object) and build the ``Event``.

        Raises ``InvalidEvent(field, message)`` for the first problem found. Fields are checked inline
        for the common case; others go to a helper that accepts them or raises naming the field.
        ``check_payloads=False`` skips the RFC 8785 check of ``before``/``after``/``metadata``
        contents (their type is still checked) for a caller that canonicalizes the whole event
        next anyway, such as the pipeline's final stage.
        """
        payload = _json_object if check_payloads else _json_object_type
        if type(data) is not dict and not isinstance(data, Mapping):
            raise InvalidEvent("", f"an event must be a JSON object, got {_kind(data)}")
        if not data.keys() <= _FIELDS[Event]:
            raise InvalidEvent(min(map(str, data.keys() - _FIELDS[Event])), "unknown field (put extra data in metadata)")
        get = data.get
        event_id, time, action = get("id"), get("time"), get("action")
        if event_id is None:
            event_id = new_event_id()
        elif type(event_id) is not str or not _ID_RE.fullmatch(event_id):
            event_id = _text(event_id, "id", 128, True, _ID_RE, _ID_RULE)
        if time is None:
            raise InvalidEvent("time", "required field is missing")
        time = normalize_time(time)

        actor = get("actor")
        if type(actor) is not dict or not actor.keys() <= _FIELDS[Actor]:
            actor = _object(actor, "actor", _FIELDS[Actor], True)
        actor_id, kind, ip, agent = map(actor.get, ("id", "type", "ip", "user_agent"))
        if type(actor_id) is not str or not 0 < len(actor_id) <= 256:
            actor_id = _text(actor_id, "actor.id", 256, True)
        if kind is not None and (type(kind) is not str or not 0 < len(kind) <= 128):
            kind = _text(kind, "actor.type", 128)
        ip = _ip(ip, "actor.ip") if ip is not None else None
        if agent is not None and (type(agent) is not str or not 0 < len(agent) <= 1024):
            agent = _text(agent, "actor.user_agent", 1024)
        actor = _new(Actor, (actor_id, kind, ip, agent))
        if type(action) is not str or len(action) > 128 or not _ACTION_RE.fullmatch(action):
            action = _text(action, "action", 128, True, _ACTION_RE, _ACTION_RULE)

        resource = get("resource")
        if type(resource) is not dict or not resource.keys() <= _FIELDS[Resource]:
            resource = _object(resource, "resource", _FIELDS[Resource], True)
        kind, resource_id, name = map(resource.get, ("type", "id", "name"))
        if type(kind) is not str or not 0 < len(kind) <= 128:
            kind = _text(kind, "resource.type", 128, True)
        if type(resource_id) is not str or not 0 < len(resource_id) <= 256:
            resource_id = _text(resource_id, "resource.id", 256, True)
        if name is not None and (type(name) is not str or not 0 < len(name) <= 1024):
            name = _text(name, "resource.name", 1024)
        resource = _new(Resource, (kind, resource_id, name))

        outcome = get("outcome")
        if outcome is not None and (type(outcome) is not str or outcome not in OUTCOMES):
            raise InvalidEvent("outcome", f"must be one of {', '.join(sorted(OUTCOMES))}, got {outcome!r}")
        texts = list(map(get, _TEXTS))  # request_id, trace_id, span_id (≤ 256), reason (≤ 4096)
        for value in texts:  # a loop, not all(<generator>): this runs for every event
            if value is not None and (type(value) is not str or not 0 < len(value) <= 256):
                texts = [_text(get(name), name, 4096 if name == "reason" else 256) for name in _TEXTS]
                break
        source, producer, schema = get("source"), get("producer"), get("schema")
        if source is not None:
            if type(source) is not dict or not source.keys() <= _FIELDS[Source]:
                source = _object(source, "source", _FIELDS[Source])
            parts = list(map(source.get, _SOURCE))  # service, host, region, environment: ≤ 256
            for value in parts:
                if value is not None and (type(value) is not str or not 0 < len(value) <= 256):
                    parts = [_text(source.get(name), f"source.{name}", 256) for name in _SOURCE]
                    break
            source = _new(Source, parts)
        if producer is not None:
            producer_id = seq = None
            if type(producer) is dict and producer.keys() <= _FIELDS[Producer]:
                producer_id, seq = producer.get("id"), producer.get("seq")
            if (
                type(producer_id) is str and 0 < len(producer_id) <= 256
                and (seq is None or (type(seq) is int and 0 <= seq <= MAX_SAFE_INTEGER))
            ):
                producer = _new(Producer, (producer_id, seq))
            else:  # the checks one by one, for the message
                producer = _object(producer, "producer", _FIELDS[Producer])
                producer_id = _text(producer.get("id"), "producer.id", 256, True)
                producer = _new(Producer, (producer_id, _integer(producer.get("seq"), "producer.seq", 0)))
        received_at, log = get("received_at"), get("log")
        if received_at is not None:
            received_at = normalize_time(received_at, "received_at")
        if log is not None and (type(log) is not str or not _LOG_RE.fullmatch(log)):
            log = _text(log, "log", 128, True, _LOG_RE, _LOG_RULE)
        if schema is not None:
            schema = _object(schema, "schema", _FIELDS[SchemaRef])
            schema_id = _text(schema.get("id"), "schema.id", 256, True)
            schema = _new(SchemaRef, (schema_id, _integer(schema.get("version"), "schema.version", 1, True)))
        return _new(cls, (
            event_id, time, actor, action, resource, outcome, texts[0], texts[1], texts[2], source, producer,
            payload(get("before"), "before"), payload(get("after"), "after"), texts[3],
            payload(get("metadata"), "metadata"), received_at, log, schema,
        ))  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """The wire form: a new dict, fields in declaration order, absent (None) fields omitted."""
        out: dict[str, Any] = {}
        for name in _ORDER:
            value = getattr(self, name)
            if value is not None:
                out[name] = _compact(value) if name in _NESTED else value
        return out

    def revise(self, data: Mapping[str, Any], basis: Mapping[str, Any]) -> Event | None:
        """``Event.from_dict(data, check_payloads=False)``, checking only what changed; or None.

        ``basis`` is this event's ``to_dict()`` (members may have been removed from it, none
        changed); ``data`` is a copy of it in which members were replaced, added or removed, and
        no object ``basis`` holds was changed in place. A member of ``data`` that is the very
        object ``basis`` holds keeps this event's value; every other one is checked here.

        Returns the event ``from_dict`` would return, when it would return one and ``data`` is
        then exactly that event's ``to_dict()`` members (so both have the same canonical bytes).
        Returns None when it cannot tell cheaply — a failure (``from_dict`` then says which), a
        value ``from_dict`` would normalize, a ``null`` member, a changed ``id``, ``time``,
        ``action``, ``outcome`` or ``producer`` —: call ``from_dict`` then.
        """
        if type(data) is not dict or not data.keys() <= _FIELDS[Event]:
            return None
        values = list(_VALUES(self))
        for name in _FIELDS[Event] - data.keys():  # absent from data: absent from the event
            if name in _REQUIRED:
                return None
            values[_INDEX[name]] = None
        if None in data.values():  # from_dict reads null as absent; to_dict() would leave it out
            return None
        names = list(data)
        for name in compress(names, map(is_not, data.values(), map(basis.get, names))):  # changed
            check = _REVISE.get(name)
            value = check(data[name]) if check is not None else None
            if value is None:
                return None
            values[_INDEX[name]] = value
        return _new(Event, values)

    def canonical_bytes(self) -> bytes:
        """RFC 8785 canonical bytes of ``to_dict()``: the Merkle leaf data (ARCHITECTURE.md §2)."""
        return canonicalize(self.to_dict())

    def leaf_hash(self) -> bytes:
        """``SHA-256(0x00 || canonical_bytes())``, the RFC 6962 §2.1 leaf hash of this event."""
        return leaf_hash(self.canonical_bytes())

    def with_server_fields(
        self, *, received_at: str | datetime, log: str, schema: SchemaRef | None = None
    ) -> Event:
        """A copy with the server-added fields set, validated as ``from_dict`` would."""
        if isinstance(received_at, datetime):
            received_at = format_time(received_at)
        received_at = normalize_time(received_at, "received_at")
        log = _text(log, "log", 128, True, _LOG_RE, _LOG_RULE)
        values = list(map(self.__getattribute__, _ORDER))
        values[-3:] = received_at, log, schema  # the last three fields (checked at import)
        return _new(type(self), values)

    def text(self) -> str:
        """The free text for full-text indexing, space-separated: action, outcome, actor, resource,
        request/trace/span ids, source, reason, producer id, then the string values (not keys) in
        ``metadata``, ``before`` and ``after``, depth-first. Absent fields are skipped."""
        parts: list[Any] = [self.action, self.outcome, *_compact(self.actor).values()]
        parts += [*_compact(self.resource).values(), self.request_id, self.trace_id, self.span_id]
        parts += [*(_compact(self.source).values() if self.source else ()), self.reason]
        parts += [self.producer.id if self.producer else None, *_strings(self.metadata)]
        parts += [*_strings(self.before), *_strings(self.after)]
        return " ".join(part for part in parts if part)


_CLASSES = (Actor, Resource, Source, Producer, SchemaRef, Event)
_FIELDS = {cls: frozenset(field.name for field in dataclasses.fields(cls)) for cls in _CLASSES}
_ORDER = tuple(field.name for field in dataclasses.fields(Event))
_MAKERS: dict[type, Any] = {cls: maker(cls) for cls in _CLASSES}
assert _ORDER[-3:] == ("received_at", "log", "schema")
_TEXTS = ("request_id", "trace_id", "span_id", "reason")
_VALUES = operator.attrgetter(*_ORDER)  # every field of an Event, as a tuple
_INDEX = {name: index for index, name in enumerate(_ORDER)}
_REQUIRED = frozenset({"id", "time", "actor", "action", "resource"})
_SOURCE = ("service", "host", "region", "environment")
_ACTOR = ("id", "type", "ip", "user_agent")
_RESOURCE = ("type", "id", "name")


def _strings(value: Any) -> Iterator[str]:
    """Every string value below a JSON value, depth-first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (Mapping, list, tuple)):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _strings(item)


# ``Event.revise``: one check per member that may change after ``from_dict``, each accepting only
# what ``from_dict`` accepts *and keeps as given* (its ``to_dict()`` gives the same member back),
# returning the field value, or None for "ask from_dict".
def _revise_text(limit: int) -> Any:
    def check(value: Any) -> Any:
        return value if type(value) is str and 0 < len(value) <= limit else None

    return check


def _revise_actor(value: Any) -> Any:
    if type(value) is not dict or not value.keys() <= _FIELDS[Actor]:
        return None
    actor_id, kind, ip, agent = fields = tuple(map(value.get, _ACTOR))
    if type(actor_id) is not str or not 0 < len(actor_id) <= 256:
        return None
    present = 1  # members that are not None: all of them, or to_dict() would leave one out
    if kind is not None:
        if type(kind) is not str or not 0 < len(kind) <= 128:
            return None
        present += 1
    if ip is not None:
        if type(ip) is not str or len(ip) > 64 or _normalize_ip(ip) != ip:
            return None
        present += 1
    if agent is not None:
        if type(agent) is not str or not 0 < len(agent) <= 1024:
            return None
        present += 1
    return _new(Actor, fields) if present == len(value) else None


def _revise_resource(value: Any) -> Any:
    if type(value) is not dict or not value.keys() <= _FIELDS[Resource]:
        return None
    kind, resource_id, name = fields = tuple(map(value.get, _RESOURCE))
    if type(kind) is not str or not 0 < len(kind) <= 128:
        return None
    if type(resource_id) is not str or not 0 < len(resource_id) <= 256:
        return None
    if name is not None and (type(name) is not str or not 0 < len(name) <= 1024):
        return None
    return _new(Resource, fields) if len(value) == (2 if name is None else 3) else None


def _revise_source(value: Any) -> Any:
    if type(value) is not dict or not value.keys() <= _FIELDS[Source]:
        return None
    for item in value.values():
        if type(item) is not str or not 0 < len(item) <= 256:
            return None
    return _new(Source, tuple(map(value.get, _SOURCE)))


def _revise_time(value: Any) -> Any:
    return value if type(value) is str and _is_normal_time(value) else None


@functools.lru_cache(maxsize=256)  # one received_at per request: almost always a hit
def _is_normal_time(value: str) -> bool:
    try:
        return normalize_time(value, "received_at") == value
    except InvalidEvent:
        return False


def _revise_log(value: Any) -> Any:
    return value if type(value) is str and _LOG_RE.fullmatch(value) else None


def _revise_schema(value: Any) -> Any:
    if type(value) is not dict or value.keys() != {"id", "version"}:
        return None
    schema_id, version = value["id"], value["version"]
    if type(schema_id) is not str or not 0 < len(schema_id) <= 256:
        return None
    if type(version) is not int or not 1 <= version <= MAX_SAFE_INTEGER:
        return None
    found = _SCHEMA_REFS.get((schema_id, version))  # a tenant's events name few schemas
    if found is None:
        found = _new(SchemaRef, (schema_id, version))
        if len(_SCHEMA_REFS) < 4096:
            _SCHEMA_REFS[(schema_id, version)] = found
    return found


_SCHEMA_REFS: dict[tuple[str, int], SchemaRef] = {}  # immutable values: safe to share


def _revise_payload(value: Any) -> Any:
    return value if type(value) is dict else None


_REVISE: dict[str, Any] = {
    "actor": _revise_actor, "resource": _revise_resource, "source": _revise_source,
    "request_id": _revise_text(256), "trace_id": _revise_text(256), "span_id": _revise_text(256),
    "reason": _revise_text(4096),
    "before": _revise_payload, "after": _revise_payload, "metadata": _revise_payload,
    "received_at": _revise_time, "log": _revise_log, "schema": _revise_schema,
}  # fmt: skip
