"""Request and response helpers shared by the route modules."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.canonical import loads
from trailseal.core.errors import FormatError, LimitExceeded

_NDJSON = "application/x-ndjson"

EVENT_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event envelope, a JSON array of them, or NDJSON (one per line).",
        "content": {
            "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            _NDJSON: {"schema": {"type": "string"}},
        },
    }
}


def json_response(value: Any, status: int = 200) -> Response:
    """orjson-encoded JSON response."""
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceeded("max_body_bytes", f"body is {declared} bytes, limit {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise LimitExceeded("max_body_bytes", f"body exceeds limit {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(body: bytes, content_type: str) -> tuple[list[Any], list[int] | None]:
    """Decode a request body into raw events (and their byte sizes for NDJSON)."""
    if not body.strip():
        raise FormatError("body: empty; send one event object, a JSON array, or NDJSON")
    if content_type.split(";")[0].strip().lower() == _NDJSON:
        events: list[Any] = []
        sizes: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                events.append(loads(line))
            except FormatError as exc:
                raise FormatError(f"line {number}: {exc}") from exc
            sizes.append(len(line))
        return events, sizes
    value = loads(body)
    if isinstance(value, dict):
        return [value], [len(body)]
    if isinstance(value, list):
        return value, None
    raise FormatError(
        f"body: expected an event object or an array of events, got {type(value).__name__}"
    )
