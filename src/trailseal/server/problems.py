"""The one place where errors become HTTP: RFC 9457 ``application/problem+json``.

===========================  ======  ==========================================
exception                    status  notes
===========================  ======  ==========================================
BatchError / InvalidEvent    422     ``errors``: ``[{index, field, detail}]``
FormatError                  400     malformed JSON, proof parameters, paths; ``position``
                                     of a query syntax error
LimitExceeded                413*    ``limit`` names it (*or its own status)
ConflictError                409     ``event_id``
IncompatibleSchema           409     ``counter_example`` (a ConflictError)
NotFoundError                404
OverloadedError              503     ``Retry-After``
SequencerUnavailable         503     ``Retry-After``
VerificationError            503     the log refuses to sign; operator must act
AuthenticationError          401     ``WWW-Authenticate: Bearer``
PermissionDenied             403     names the permission, never any data
RateLimited                  429     ``Retry-After``
anything else                500     logged with a reference id
===========================  ======  ==========================================
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.errors import (
    AuthenticationError,
    ConflictError,
    FormatError,
    InvalidEvent,
    LimitExceeded,
    NotFoundError,
    OverloadedError,
    PermissionDenied,
    RateLimited,
    TrailsealError,
    VerificationError,
)
from trailseal.pipeline.prepare import BatchError
from trailseal.schema.compat import IncompatibleSchema
from trailseal.sequencer.runner import SequencerUnavailable

_log = logging.getLogger("trailseal.server")

PROBLEM_TYPE = "https://trailseal.dev/problems/"


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    kind: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def to_response(exc: BaseException, retry_after: float = 1.0) -> Response:
    """Map any exception to its problem response."""
    if isinstance(exc, AuthenticationError):
        return problem(
            401, "unauthorized", str(exc), kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="trailseal"'},
        )
    if isinstance(exc, PermissionDenied):
        return problem(403, "forbidden", str(exc), kind="forbidden", permission=exc.permission)
    if isinstance(exc, RateLimited):
        return problem(
            429, "too many requests", str(exc), kind="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
        )
    if isinstance(exc, BatchError):
        errors = [
            {"index": index, "field": err.field, "detail": err.detail} for index, err in exc.errors
        ]
        return problem(422, "invalid event", str(exc), kind="invalid-event", errors=errors)
    if isinstance(exc, InvalidEvent):
        return problem(
            422, "invalid event", str(exc), kind="invalid-event",
            errors=[{"field": exc.field, "detail": exc.detail}],
        )
    if isinstance(exc, LimitExceeded):
        return problem(exc.status, "limit exceeded", str(exc), kind="limit-exceeded", limit=exc.limit)
    if isinstance(exc, FormatError):
        position = getattr(exc, "position", None)  # a query syntax error: where it is
        extra = {} if position is None else {"position": position}
        return problem(400, "bad request", str(exc), kind="bad-request", **extra)
    if isinstance(exc, IncompatibleSchema):
        return problem(409, "incompatible schema", str(exc), kind="incompatible-schema",
                       counter_example=exc.counter_example.to_json())
    if isinstance(exc, ConflictError):
        return problem(409, "conflict", str(exc), kind="conflict", event_id=exc.event_id)
    if isinstance(exc, NotFoundError):
        return problem(404, "not found", str(exc), kind="not-found")
    if isinstance(exc, OverloadedError | SequencerUnavailable):
        wait = exc.retry_after if isinstance(exc, OverloadedError) else retry_after
        return problem(
            503, "service unavailable", str(exc), kind="overloaded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    if isinstance(exc, VerificationError):
        _log.error("integrity failure: %s", exc)
        return problem(
            503, "integrity check failed", str(exc), kind="integrity",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    reference = uuid.uuid4().hex[:12]
    _log.error("unhandled error %s", reference, exc_info=exc)
    kind = "internal" if not isinstance(exc, TrailsealError) else "trailseal"
    return problem(
        500, "internal error", f"unexpected error; reference {reference} is in the server log",
        kind=kind,
    )


async def handle(request: Request, exc: Exception) -> Response:
    """Starlette exception handler."""
    return to_response(exc)
