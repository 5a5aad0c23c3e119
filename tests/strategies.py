"""Shared Hypothesis strategies: JSON values (RFC 8785 / I-JSON) and audit events.

::

    json_scalars()       null, booleans, safe integers, finite floats, strings
    json_values()        any nesting of the above in lists and objects
    json_objects()       a JSON object (what before/after/metadata hold)
    object_keys()        object member names that stress RFC 8785 §3.2.3 ordering
    rfc3339_times()      (text, normalized) pairs: any offset, precision, "t"/"z" case
    event_dicts()        valid wire-form events (a parsed JSON object), optional fields varied
    events()             the same, validated into ``trailseal.core.event.Event``
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from trailseal.core.event import OUTCOMES, Event

MAX_SAFE_INTEGER = 2**53 - 1

# Every code point except surrogates (a str with a lone surrogate is not valid Unicode text).
UNICODE = st.characters(codec="utf-8")
# Characters where RFC 8785 differs from naive JSON encoders: controls, DEL, escapes, the BMP
# above U+E000 and the astral planes (UTF-16 order differs from code-point order between them).
TRICKY = st.sampled_from(
    "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f\x80\"\\/<>&'é\u2028\u2029\u20ac\ue000\ufb33\ufeff\uffff"
    "\U00010000\U0001d11e\U0001f602\U000e0001\U0010ffff"
)
TEXT_CHARS = st.one_of(st.characters(codec="ascii"), TRICKY, UNICODE)


def object_keys(max_size: int = 6) -> st.SearchStrategy[str]:
    """Object member names: ASCII, controls and characters on both sides of U+FFFF."""
    return st.text(TEXT_CHARS, max_size=max_size)


def json_scalars() -> st.SearchStrategy[Any]:
    """null, booleans, I-JSON integers (RFC 7493 §2.2), finite floats and strings."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        st.integers(-1000, 1000),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(TEXT_CHARS, max_size=12),
    )


def json_values(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars nested in lists and objects."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(object_keys(), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def json_objects(max_leaves: int = 15) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with any content."""
    return st.dictionaries(object_keys(), json_values(max_leaves), max_size=6)


@st.composite
def rfc3339_times(draw: st.DrawFn) -> tuple[str, str]:
    """An RFC 3339 date-time in any accepted spelling, and its normalized UTC form."""
    moment = draw(st.datetimes(datetime(1000, 1, 2), datetime(9998, 12, 30)))
    minutes = draw(st.integers(-23 * 60 - 59, 23 * 60 + 59))
    digits = draw(st.integers(0, 9))
    local = moment.replace(tzinfo=UTC).astimezone(timezone(timedelta(minutes=minutes)))
    text = local.strftime("%Y-%m-%d") + draw(st.sampled_from("Tt")) + local.strftime("%H:%M:%S")
    fraction = f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    if digits:
        text += "." + fraction
    if minutes == 0 and draw(st.booleans()):
        text += draw(st.sampled_from("Zz"))
    else:
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    kept = int(fraction[:6].ljust(6, "0")) if digits else 0
    utc = moment.replace(microsecond=kept)
    return text, utc.isoformat(timespec="microseconds") + "Z"


def _texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, min_size=1, max_size=max_size)


def _actions() -> st.SearchStrategy[str]:
    first = st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8)
    rest = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8)
    return st.tuples(first, st.lists(rest, max_size=4)).map(lambda parts: ".".join([parts[0], *parts[1]]))


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def event_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Valid wire-form events, each optional field present or absent."""
    ids = st.text("ABCDEFabcdef0123456789._:-", min_size=1, max_size=40)
    actor = st.fixed_dictionaries(
        {"id": _texts(40)},
        optional={
            "type": st.sampled_from(["user", "service", "role"]),
            "ip": st.ip_addresses().map(str),
            "user_agent": _texts(60),
        },
    )
    resource = st.fixed_dictionaries({"type": _texts(20), "id": _texts(40)}, optional={"name": _texts(40)})
    source = _optional(service=_texts(20), host=_texts(20), region=_texts(12), environment=_texts(8))
    producer = st.fixed_dictionaries(
        {"id": _texts(20)}, optional={"seq": st.integers(0, MAX_SAFE_INTEGER)}
    )
    schema = st.fixed_dictionaries({"id": _actions(), "version": st.integers(1, 1000)})
    normalized_times = rfc3339_times().map(lambda pair: pair[1])
    return st.fixed_dictionaries(
        {
            "time": normalized_times,
            "actor": actor,
            "action": _actions(),
            "resource": resource,
        },
        optional={
            "id": ids,
            "outcome": st.sampled_from(sorted(OUTCOMES)),
            "request_id": _texts(36),
            "trace_id": st.text("0123456789abcdef", min_size=32, max_size=32),
            "span_id": st.text("0123456789abcdef", min_size=16, max_size=16),
            "source": source,
            "producer": producer,
            "before": json_objects(),
            "after": json_objects(),
            "reason": _texts(200),
            "metadata": json_objects(),
            "received_at": normalized_times,
            "log": st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20),
            "schema": schema,
        },
    )


def events() -> st.SearchStrategy[Event]:
    """Valid ``Event`` values (``event_dicts()`` through ``Event.from_dict``)."""
    return event_dicts().map(Event.from_dict)
