"""Request ids and W3C Trace Context for the middleware.

``trace_ids(headers)`` gives ``(trace_id, span_id)`` as lowercase hex: from the active
OpenTelemetry span when opentelemetry-api is installed and a span is recording (an OTel
middleware outside ours), else from the ``traceparent`` header — extracted with OpenTelemetry's
propagator when available, else parsed here per W3C Trace Context §3.2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from trailseal.core.ids import new_event_id

__all__ = ["parse_traceparent", "request_id_from", "trace_ids"]

# W3C Trace Context §3.2.2: version "-" trace-id "-" parent-id "-" trace-flags, lowercase hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")

try:  # optional: opentelemetry-api
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised when the extra is not installed
    _propagate = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_id)`` from a ``traceparent`` value; ``None`` if absent or invalid
    (version ``ff``, all-zero ids, a version-00 header with extra fields: W3C §3.2.2.1-3)."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id, span_id


def trace_ids(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` for a request with these (lowercase-named) headers."""
    if _trace is not None:
        span = _trace.get_current_span().get_span_context()
        if span.is_valid:
            return format(span.trace_id, "032x"), format(span.span_id, "016x")
        if _propagate is not None:
            extracted = _trace.get_current_span(_propagate.extract(dict(headers))).get_span_context()
            if extracted.is_valid:
                return format(extracted.trace_id, "032x"), format(extracted.span_id, "016x")
    parsed = parse_traceparent(headers.get("traceparent"))
    return parsed if parsed is not None else (None, None)


def request_id_from(value: str | None) -> str:
    """The incoming ``X-Request-ID`` when it is a sane token (≤ 128 characters, no spaces or
    control characters), else a new UUIDv7: a client cannot inject text into the trail this way."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return new_event_id()
