"""The event envelope (ARCHITECTURE.md §2): validation, normalization, round trips, ids."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
import time
import uuid
from collections import UserDict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given

from tests.factories import make_event
from tests.strategies import event_dicts, events, rfc3339_times
from trailseal.core.canonical import canonicalize, dumps, loads
from trailseal.core.errors import InvalidEvent
from trailseal.core.event import (
    Actor,
    Event,
    Producer,
    Resource,
    SchemaRef,
    Source,
    format_time,
    normalize_time,
)
from trailseal.core.ids import new_event_id

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
MINIMAL = {
    "time": "2024-05-01T12:00:00Z",
    "actor": {"id": "alice"},
    "action": "iam.role.update",
    "resource": {"type": "role", "id": "admin"},
}


def _with(**changes: Any) -> dict[str, Any]:
    """MINIMAL with top-level fields replaced (a value of ... removes the field)."""
    data = {**MINIMAL, **changes}
    return {name: value for name, value in data.items() if value is not ...}


def _field_of(data: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict(data)
    assert str(info.value).startswith(f"{info.value.field}: " if info.value.field else "")
    return info.value.field


# --- a valid event -------------------------------------------------------------------------------


def test_minimal_event() -> None:
    event = Event.from_dict(MINIMAL)
    assert UUID7.fullmatch(event.id)
    assert event.time == "2024-05-01T12:00:00.000000Z"
    assert event.actor == Actor("alice")
    assert event.resource == Resource("role", "admin")
    assert event.to_dict() == {**MINIMAL, "id": event.id, "time": event.time}
    assert list(event.to_dict()) == ["id", "time", "actor", "action", "resource"]


def test_full_event() -> None:
    data = make_event(
        id="evt-1",
        producer={"id": "p1", "seq": 0},
        received_at="2026-11-28T10:15:31.000001Z",
        log="acme",
        schema={"id": "iam.role.update", "version": 2},
        span_id="00f067aa0ba902b7",
    )
    event = Event.from_dict(data)
    assert event.producer == Producer("p1", 0)
    assert event.schema == SchemaRef("iam.role.update", 2)
    assert event.source == Source("identity", "idp-1", "eu-west-1", "prod")
    assert event.to_dict() == data
    assert Event.from_dict(event.to_dict()) == event


def test_null_optional_fields_are_absent() -> None:
    event = Event.from_dict(_with(outcome=None, reason=None, source=None, actor={"id": "a", "ip": None}))
    assert event.outcome is None and event.source is None and event.actor.ip is None
    assert "outcome" not in event.to_dict() and "ip" not in event.to_dict()["actor"]


def test_accepts_mappings_and_str_subclasses() -> None:
    class Name(str):
        pass

    event = Event.from_dict(UserDict(_with(actor=UserDict({"id": Name("alice")}), reason=Name("r"))))
    assert type(event.actor.id) is str and type(event.reason) is str
    assert event.actor.id == "alice"


def test_fast_construction_equals_init() -> None:
    event = Event.from_dict(make_event(producer={"id": "p", "seq": 1}, schema={"id": "s", "version": 1}))
    rebuilt = Event(**{f.name: getattr(event, f.name) for f in dataclasses.fields(Event)})
    assert rebuilt == event and repr(rebuilt) == repr(event) and type(event) is Event
    assert Actor(event.actor.id, event.actor.type, event.actor.ip, event.actor.user_agent) == event.actor

    class Tagged(Event):
        __slots__ = ()

    tagged = Tagged.from_dict(MINIMAL)
    assert type(tagged) is Tagged and tagged.actor == Actor("alice")
    assert type(tagged.with_server_fields(received_at="2024-05-01T12:00:00Z", log="x")) is Tagged


def test_event_is_immutable() -> None:
    event = Event.from_dict(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.action = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.actor.id = "mallory"  # type: ignore[misc]


def test_actor_ip_is_normalized() -> None:
    assert Event.from_dict(_with(actor={"id": "a", "ip": "2001:DB8:0::1"})).actor.ip == "2001:db8::1"
    assert Event.from_dict(_with(actor={"id": "a", "ip": "192.0.2.1"})).actor.ip == "192.0.2.1"


@pytest.mark.parametrize("action", ["login", "iam.role.update", "k8s.pods.exec", "a1.b_c.d-e", "_x.y"])
def test_valid_actions(action: str) -> None:
    assert Event.from_dict(_with(action=action)).action == action


# --- invalid events name the field -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["time", "actor", "action", "resource"])
def test_missing_required_top_level_field(name: str) -> None:
    assert _field_of(_with(**{name: ...})) == name
    assert _field_of(_with(**{name: None})) == name


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_with(actor={}), "actor.id"),
        (_with(actor={"type": "user"}), "actor.id"),
        (_with(resource={"id": "x"}), "resource.type"),
        (_with(resource={"type": "x"}), "resource.id"),
        (_with(producer={"seq": 1}), "producer.id"),
        (_with(schema={"version": 1}), "schema.id"),
        (_with(schema={"id": "s"}), "schema.version"),
    ],
)
def test_missing_required_nested_field(data: dict[str, Any], field: str) -> None:
    assert _field_of(data) == field


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (_with(colour="red"), "colour", "unknown field"),
        (_with(actor={"id": "a", "colour": "red"}), "actor.colour", "unknown field"),
        (_with(resource={"type": "t", "id": "i", "size": 1}), "resource.size", "unknown field"),
        (_with(source={"zone": "z"}), "source.zone", "unknown field"),
        (_with(id=""), "id", "empty"),
        (_with(id="a b"), "id", r"\[A-Za-z0-9._:-\]"),
        (_with(id="x" * 129), "id", "at most 128"),
        (_with(id=7), "id", "must be a string, got number"),
        (_with(time=1714564800), "time", "RFC 3339"),
        (_with(time="yesterday"), "time", "RFC 3339"),
        (_with(time="2024-02-30T00:00:00Z"), "time", "day is out of range"),
        (_with(actor="alice"), "actor", "must be an object, got string"),
        (_with(actor=["alice"]), "actor", "must be an object, got array"),
        (_with(actor={"id": ""}), "actor.id", "empty"),
        (_with(actor={"id": 42}), "actor.id", "got number"),
        (_with(actor={"id": "a" * 257}), "actor.id", "at most 256"),
        (_with(actor={"id": "a", "type": True}), "actor.type", "got boolean"),
        (_with(actor={"id": "a", "ip": "10.0.0.256"}), "actor.ip", "IPv4 or IPv6"),
        (_with(actor={"id": "a", "ip": 167772161}), "actor.ip", "IPv4 or IPv6"),
        (_with(actor={"id": "a", "ip": "1" * 65}), "actor.ip", "IPv4 or IPv6"),
        (_with(actor={"id": "a", "user_agent": "u" * 1025}), "actor.user_agent", "at most 1024"),
        (_with(action="IAM.Role.Update"), "action", "lowercase dotted"),
        (_with(action="iam.role.*"), "action", "lowercase dotted"),
        (_with(action="iam..role"), "action", "lowercase dotted"),
        (_with(action="-iam.role"), "action", "lowercase dotted"),
        (_with(action="iam.role."), "action", "lowercase dotted"),
        (_with(action="a" * 129), "action", "at most 128"),
        (_with(action=["iam"]), "action", "got array"),
        (_with(resource="x"), "resource", "must be an object"),
        (_with(resource={"type": "t", "id": None}), "resource.id", "missing"),
        (_with(resource={"type": "t", "id": "i", "name": ""}), "resource.name", "empty"),
        (_with(outcome="ok"), "outcome", "denied, failure, success, unknown"),
        (_with(outcome="SUCCESS"), "outcome", "one of"),
        (_with(outcome=1), "outcome", "one of"),
        (_with(request_id=""), "request_id", "empty"),
        (_with(trace_id="t" * 257), "trace_id", "at most 256"),
        (_with(span_id=5), "span_id", "got number"),
        (_with(reason="r" * 4097), "reason", "at most 4096"),
        (_with(source="web"), "source", "must be an object"),
        (_with(source={"region": 1}), "source.region", "got number"),
        (_with(producer={"id": "p", "seq": -1}), "producer.seq", "0..2\\*\\*53-1"),
        (_with(producer={"id": "p", "seq": 1.0}), "producer.seq", "integer"),
        (_with(producer={"id": "p", "seq": True}), "producer.seq", "integer"),
        (_with(producer={"id": "p", "seq": 2**53}), "producer.seq", "integer"),
        (_with(before=[1]), "before", "must be a JSON object, got array"),
        (_with(after="x"), "after", "must be a JSON object, got string"),
        (_with(metadata={"n": 2**53 + 1}), "metadata", "integer 9007199254740993 .* at '/n'"),
        (_with(metadata={"a": [1, {"b": float("nan")}]}), "metadata", "at '/a/1/b'"),
        (_with(metadata={"s": {1, 2}}), "metadata", "unsupported type set"),
        (_with(metadata={1: "x"}), "metadata", "not a string"),
        (_with(received_at="now"), "received_at", "RFC 3339"),
        (_with(log="acme corp"), "log", r"\[A-Za-z0-9._-\]"),
        (_with(schema={"id": "s", "version": 0}), "schema.version", "1..2"),
        (_with(schema={"id": "s", "version": "1"}), "schema.version", "integer"),
    ],
)
def test_invalid_field(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.from_dict(data)
    assert info.value.field == field
    assert re.search(message, info.value.detail), info.value.detail


@pytest.mark.parametrize("data", [[MINIMAL], "{}", None, 42])
def test_event_must_be_an_object(data: Any) -> None:
    assert _field_of(data) == ""


def test_invalid_event_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^actor\.id: required field is missing$"):
        Event.from_dict(_with(actor={}))


# --- time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("2024-05-01T12:34:56.789012Z", "2024-05-01T12:34:56.789012Z"),
        ("2024-05-01T12:34:56Z", "2024-05-01T12:34:56.000000Z"),
        ("2024-05-01t12:34:56.5z", "2024-05-01T12:34:56.500000Z"),
        ("2024-05-01T12:34:56.123456789Z", "2024-05-01T12:34:56.123456Z"),
        ("2024-05-01T14:34:56+02:00", "2024-05-01T12:34:56.000000Z"),
        ("2024-05-01T07:04:56.1-05:30", "2024-05-01T12:34:56.100000Z"),
        ("2024-05-01T12:34:56-00:00", "2024-05-01T12:34:56.000000Z"),
        ("2024-12-31T23:30:00-01:00", "2025-01-01T00:30:00.000000Z"),
        ("2024-03-01T00:30:00+01:00", "2024-02-29T23:30:00.000000Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
    ],
)
def test_time_normalization(text: str, normalized: str) -> None:
    assert normalize_time(text) == normalized
    assert Event.from_dict(_with(time=text)).time == normalized


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01", "2024-05-01T12:34Z", "2024-05-01 12:34:56Z", "2024-05-01T12:34:56",
        "2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T12:61:00Z",
        "2024-05-01T12:00:00+24:00", "2024-05-01T12:00:00+01:60", "2024-05-01T12:00:00+0100",
        "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01", "2024-05-01T12:00:00.Z",
        "\uff12\uff10\uff12\uff14-05-01T12:00:00Z", " 2024-05-01T12:00:00Z", "2024-05-01T12:00:00,5Z",
        "2024-05-01T12:34:56.789012+01Z",
    ],
)  # fmt: skip
def test_time_rejected(text: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        normalize_time(text)
    assert info.value.field == "time"


@given(rfc3339_times())
def test_time_normalization_property(pair: tuple[str, str]) -> None:
    text, normalized = pair
    assert normalize_time(text) == normalized
    assert normalize_time(normalized) == normalized


def test_format_time() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2024-05-01T12:00:00.000007Z"
    assert format_time(datetime(5, 1, 2, tzinfo=UTC)) == "0005-01-02T00:00:00.000000Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2024, 5, 1))


# --- round trips, canonical bytes, server fields -----------------------------------------------------


@given(events())
def test_round_trip(event: Event) -> None:
    assert Event.from_dict(event.to_dict()) == event
    assert Event.from_dict(loads(dumps(event.to_dict()))) == event
    assert event.canonical_bytes() == canonicalize(loads(event.canonical_bytes()))


@given(event_dicts())
def test_to_dict_gives_back_the_input(data: dict[str, Any]) -> None:
    event = Event.from_dict(data)
    assert event.to_dict() == {**data, "id": event.id}


def test_canonical_bytes_and_leaf_hash() -> None:
    data = make_event(id="evt-1")
    event = Event.from_dict(data)
    body = event.canonical_bytes()
    assert body == canonicalize(event.to_dict())
    assert body.startswith(b'{"action":"iam.role.update","actor":{"id":"alice@example.com"')
    assert event.leaf_hash() == hashlib.sha256(b"\x00" + body).digest()
    reordered = dict(reversed(list(data.items())))
    assert Event.from_dict(reordered).leaf_hash() == event.leaf_hash()


def test_with_server_fields() -> None:
    event = Event.from_dict(MINIMAL)
    stamped = event.with_server_fields(
        received_at="2024-05-01T14:00:01+02:00", log="acme", schema=SchemaRef("iam.role.update", 1)
    )
    assert stamped.received_at == "2024-05-01T12:00:01.000000Z"
    assert (stamped.log, stamped.schema) == ("acme", SchemaRef("iam.role.update", 1))
    assert event.received_at is None  # the original is unchanged
    assert stamped.leaf_hash() != event.leaf_hash()
    assert stamped.to_dict()["schema"] == {"id": "iam.role.update", "version": 1}
    assert Event.from_dict(stamped.to_dict()) == stamped
    at = datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert event.with_server_fields(received_at=at, log="acme").received_at == stamped.received_at
    with pytest.raises(InvalidEvent) as info:
        event.with_server_fields(received_at="2024-05-01T12:00:01Z", log="no spaces")
    assert info.value.field == "log"
    with pytest.raises(InvalidEvent) as info:
        event.with_server_fields(received_at="later", log="acme")
    assert info.value.field == "received_at"


def test_text_for_full_text_index() -> None:
    event = Event.from_dict(make_event(producer={"id": "idp-producer", "seq": 3}))
    text = event.text()
    for expected in ["iam.role.update", "success", "alice@example.com", "203.0.113.7", "role",
                     "break-glass for incident INC-2231", "identity", "idp-producer",
                     "bob@example.com", "viewer", "admins"]:  # fmt: skip
        assert expected in text
    assert "None" not in text and "  " not in text
    assert Event.from_dict(MINIMAL).text() == "iam.role.update alice role admin"


# --- UUIDv7 ids (RFC 9562 §5.7) ------------------------------------------------------------------------


def test_uuid7_format() -> None:
    before_ms = time.time_ns() // 1_000_000
    event_id = new_event_id()
    after_ms = time.time_ns() // 1_000_000
    assert UUID7.fullmatch(event_id)
    parsed = uuid.UUID(event_id)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before_ms <= parsed.int >> 80 <= after_ms + 1  # unix_ts_ms in the top 48 bits


def test_uuid7_monotonic_and_unique() -> None:
    ids = [new_event_id() for _ in range(100_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)


def test_uuid7_unique_across_threads() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_event_id() for _ in range(10_000))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [event_id for out in results for event_id in out]
    assert len(set(every)) == len(every)
    for out in results:
        assert out == sorted(out)


def test_generated_and_given_ids() -> None:
    first, second = Event.from_dict(MINIMAL), Event.from_dict(MINIMAL)
    assert UUID7.fullmatch(first.id) and first.id < second.id
    assert Event.from_dict(_with(id="order-17:v2")).id == "order-17:v2"
