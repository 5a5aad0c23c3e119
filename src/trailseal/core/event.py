"""The audit event envelope of ARCHITECTURE.md §2 as immutable, validated values.

``Event.from_dict`` validates a wire-form event (one JSON object), ``Event.to_dict`` gives it back
(absent fields omitted), ``Event.canonical_bytes`` is its RFC 8785 form: the Merkle leaf data.

================  ========  =================================================================
field             required  rule; every string is 1..N characters (omit a field, never send "")
================  ========  =================================================================
id                no        1..128 of ``[A-Za-z0-9._:-]``; a UUIDv7 is generated when absent
time              yes       RFC 3339, any offset; stored as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
                            (digits past 6 truncated, a leap second ``:60`` → ``:59.999999``)
actor             yes       ``id`` (required, ≤ 256), ``type`` (≤ 128), ``ip`` (IPv4/IPv6,
                            stored compressed), ``user_agent`` (≤ 1024)
action            yes       ≤ 128 of ``[a-z0-9_]+(\\.[a-z0-9_-]+)*``: lowercase dot-separated
                            segments, most specific last, no ``-`` in the first segment and
                            no ``*`` (wildcards belong to subscriptions, not to events)
resource          yes       ``type`` (required, ≤ 128), ``id`` (required, ≤ 256), ``name`` (≤ 1024)
outcome           no        ``success`` | ``failure`` | ``denied`` | ``unknown``
request_id,       no        ≤ 256 each
trace_id, span_id
source            no        ``service``, ``host``, ``region``, ``environment``: optional, ≤ 256
producer          no        ``id`` (required, ≤ 256), ``seq`` (integer 0..2**53-1, for gap checks)
before, after,    no        any I-JSON object (RFC 7493: str keys, finite numbers, integers within
metadata                    ±(2**53-1)), stored by reference, not copied: do not mutate it
reason            no        ≤ 4096
received_at       server    RFC 3339, normalized like ``time``
log               server    1..128 of ``[A-Za-z0-9._-]``
schema            server    ``id`` (required, ≤ 256), ``version`` (required, integer ≥ 1)
================  ========  =================================================================

A ``null`` optional field counts as absent. Unknown fields are rejected at every level (extra
data belongs in ``metadata``). Every failure raises ``InvalidEvent(field, message)`` naming the
dotted path (``actor.id``, ``producer.seq``, ``metadata.items[2].price``).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import operator
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, TypeVar

from trailseal.core.canonical import MAX_SAFE_INTEGER, canonicalize
from trailseal.core.errors import CanonicalizationError, InvalidEvent
from trailseal.core.hashing import leaf_hash
from trailseal.core.ids import new_event_id

__all__ = ["OUTCOMES", "Actor", "Event", "Producer", "Resource", "SchemaRef", "Source"]
__all__ += ["format_time", "normalize_time"]

OUTCOMES = frozenset({"success", "failure", "denied", "unknown"})
"""The allowed values of ``Event.outcome``."""

_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LOG_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_ACTION_RE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_-]+)*")
# RFC 3339 §5.6 date-time; "T" and "Z" may be lowercase (§5.6 NOTE). [0-9], not \d: no other digits.
_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_NORMAL_TIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def normalize_time(text: Any, field: str = "time") -> str:
    """Return RFC 3339 ``text`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; ``InvalidEvent`` if bad.

    Offsets are applied (``2024-05-01T14:00:00+02:00`` → ``2024-05-01T12:00:00.000000Z``);
    fractions beyond microseconds are truncated; a leap second (RFC 3339 §5.7) is clamped to
    ``:59.999999`` of the same minute, which keeps it ordered before the next second.
    """
    if type(text) is str and _NORMAL_TIME_RE.fullmatch(text):
        try:
            datetime.fromisoformat(text[:26])  # already normalized: only check the ranges
            return text
        except ValueError:
            pass  # a leap second or an impossible date: the general path below tells which
    value: str = text if type(text) is str else ""
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise InvalidEvent(field, f"must be an RFC 3339 date-time like 2024-05-01T12:00:00Z, got {text!r}")
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    micro = int(match[7][:6].ljust(6, "0")) if match[7] else 0
    leap = second == 60
    try:
        moment = datetime(year, month, day, hour, minute, 59 if leap else second, 999_999 if leap else micro)
        if match[8]:  # RFC 3339 §4.2: local time = UTC + offset
            if int(match[9]) > 23 or int(match[10]) > 59:
                raise ValueError(f"offset {match[8]}{match[9]}:{match[10]} out of range")
            offset = timedelta(hours=int(match[9]), minutes=int(match[10]))
            moment = moment - offset if match[8] == "+" else moment + offset
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(field, f"invalid date-time {text!r}: {exc}") from None
    return moment.isoformat(timespec="microseconds") + "Z"


def format_time(moment: datetime) -> str:
    """Format a timezone-aware ``datetime`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"format_time: naive datetime {moment!r}; give it a tzinfo")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


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


def _build(cls: type[_T], setters: tuple[Callable[[Any, Any], None], ...], values: Any) -> _T:
    """A ``cls`` instance from already-validated field values, set through the slot descriptors.

    Equivalent to ``cls(*values)`` but about twice as fast: a frozen dataclass's ``__init__`` goes
    through ``object.__setattr__`` per field, and from_dict builds up to six of them per event.
    """
    instance = object.__new__(cls)
    deque(map(operator.call, setters, repeat(instance), values), maxlen=0)
    return instance


# A field check takes the raw value (None when absent) and the field name, and returns the value
# to store or raises InvalidEvent. from_dict runs one per field, in declaration order.
_Check = Callable[[Any, str], Any]


def _required(check: _Check) -> _Check:
    """``check``, but a missing (or null) value is an error."""

    def required(value: Any, field: str) -> Any:
        if value is None:
            raise InvalidEvent(field, "required field is missing")
        return check(value, field)

    return required


def _string(limit: int, pattern: re.Pattern[str] | None = None, rule: str = "") -> _Check:
    """A check for a string of 1..``limit`` characters, optionally matching ``pattern``."""

    def check(value: Any, field: str) -> Any:
        if type(value) is str and 0 < len(value) <= limit:
            if pattern is None or pattern.fullmatch(value):
                return value
            raise InvalidEvent(field, f"must be {rule}, got {value!r}")
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidEvent(field, f"must be a string, got {_kind(value)}")
        if not value:
            raise InvalidEvent(field, "must not be empty (omit the field instead)")
        if len(value) > limit:
            raise InvalidEvent(field, f"must be at most {limit} characters, got {len(value)}")
        return check(str(value), field)  # a str subclass: store a plain str

    return check


def _integer(low: int) -> _Check:
    """A check for an integer in ``low``..2**53-1 (RFC 7493 §2.2)."""

    def check(value: Any, field: str) -> Any:
        if value is not None and (type(value) is not int or not low <= value <= MAX_SAFE_INTEGER):
            raise InvalidEvent(field, f"must be an integer in {low}..2**53-1, got {value!r}")
        return value

    return check


def _record(cls: type[Any], **checks: _Check) -> _Check:
    """A check for a JSON object with the fields ``checks`` (no others), built into ``cls``."""
    spec = tuple(checks.items())
    setters = tuple(getattr(cls, name).__set__ for name in checks)

    def check(value: Any, field: str) -> Any:
        if value is None:
            return None
        if type(value) is not dict and not isinstance(value, Mapping):
            raise InvalidEvent(field, f"must be an object, got {_kind(value)}")
        if not value.keys() <= checks.keys():
            raise InvalidEvent(f"{field}.{min(map(str, value.keys() - checks.keys()))}", "unknown field")
        try:
            return _build(cls, setters, [check(value.get(name), name) for name, check in spec])
        except InvalidEvent as exc:
            raise InvalidEvent(f"{field}.{exc.field}", exc.detail) from None

    return check


def _ip(value: Any, field: str) -> Any:
    normalized = _normalize_ip(value) if type(value) is str else None
    if normalized is None and value is not None:
        raise InvalidEvent(field, f"must be an IPv4 or IPv6 address, got {value!r}")
    return normalized


def _json_object(value: Any, field: str) -> Any:
    """Check for a JSON object with an RFC 8785 form (so I-JSON, RFC 7493); kept, not copied."""
    if value is not None:
        if type(value) is not dict:
            raise InvalidEvent(field, f"must be a JSON object, got {_kind(value)}")
        try:
            canonicalize(value)
        except CanonicalizationError as exc:
            raise InvalidEvent(field, str(exc)) from None
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


_ID_CHECK = _string(128, _ID_RE, "1..128 characters of [A-Za-z0-9._:-]")
_LOG_CHECK = _string(128, _LOG_RE, "1..128 characters of [A-Za-z0-9._-]")
_ID_256, _TEXT_256 = _required(_string(256)), _string(256)
_ACTION = _string(128, _ACTION_RE, "lowercase dotted segments like iam.role.update")
_OUTCOME = _string(7, re.compile("|".join(OUTCOMES)), "one of " + ", ".join(sorted(OUTCOMES)))
# Every wire field with its check, in Event's declaration order (from_dict relies on it).
_EVENT_CHECKS: dict[str, _Check] = {
    "id": lambda value, field: new_event_id() if value is None else _ID_CHECK(value, field),
    "time": _required(normalize_time),
    "actor": _required(_record(Actor, id=_ID_256, type=_string(128), ip=_ip, user_agent=_string(1024))),
    "action": _required(_ACTION),
    "resource": _required(_record(Resource, type=_required(_string(128)), id=_ID_256, name=_string(1024))),
    "outcome": _OUTCOME,
    "request_id": _TEXT_256,
    "trace_id": _TEXT_256,
    "span_id": _TEXT_256,
    "source": _record(Source, service=_TEXT_256, host=_TEXT_256, region=_TEXT_256, environment=_TEXT_256),
    "producer": _record(Producer, id=_ID_256, seq=_integer(0)),
    "before": _json_object,
    "after": _json_object,
    "reason": _string(4096),
    "metadata": _json_object,
    "received_at": lambda value, field: None if value is None else normalize_time(value, field),
    "log": _LOG_CHECK,
    "schema": _record(SchemaRef, id=_ID_256, version=_required(_integer(1))),
}
_CHECKS = tuple(_EVENT_CHECKS.items())
_NESTED = frozenset({"actor", "resource", "source", "producer", "schema"})


def _compact(value: Any) -> dict[str, Any]:
    """A sub-object as a dict without its None fields."""
    return {name: item for name in value.__slots__ if (item := getattr(value, name)) is not None}


@dataclass(frozen=True, slots=True)
class Event:
    """One audit event (ARCHITECTURE.md §2). Build it with ``from_dict``, which validates.

    ``time`` and ``received_at`` hold normalized UTC strings (see ``normalize_time``); ``before``,
    ``after`` and ``metadata`` hold the JSON objects as given. The server fills ``received_at``,
    ``log`` and ``schema`` with ``with_server_fields``; they are part of the leaf. Events whose
    payload objects are set are not hashable (the dicts are not).
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
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Validate a wire-form event (a parsed JSON object) and build the ``Event``.

        Raises ``InvalidEvent(field, message)`` for the first problem, in field order.
        """
        if type(data) is not dict and not isinstance(data, Mapping):
            raise InvalidEvent("", f"an event must be a JSON object, got {_kind(data)}")
        if not data.keys() <= _EVENT_CHECKS.keys():
            unknown = min(map(str, data.keys() - _EVENT_CHECKS.keys()))
            raise InvalidEvent(unknown, "unknown field (put extra data in metadata)")
        get = data.get
        return _build(cls, _EVENT_SETTERS, [check(get(name), name) for name, check in _CHECKS])

    def to_dict(self) -> dict[str, Any]:
        """The wire form: a new dict, fields in declaration order, absent (None) fields omitted."""
        out: dict[str, Any] = {}
        for name in _EVENT_CHECKS:
            value = getattr(self, name)
            if value is not None:
                out[name] = _compact(value) if name in _NESTED else value
        return out

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
        log = _required(_LOG_CHECK)(log, "log")
        return dataclasses.replace(self, received_at=received_at, log=log, schema=schema)

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


_EVENT_SETTERS = tuple(getattr(Event, name).__set__ for name in _EVENT_CHECKS)


def _strings(value: Any) -> Iterator[str]:
    """Every string value below a JSON value, depth-first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (Mapping, list, tuple)):
        for item in value.values() if isinstance(value, Mapping) else value:
            yield from _strings(item)
