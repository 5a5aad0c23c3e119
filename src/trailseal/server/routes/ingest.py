"""``POST /v1/events``."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.errors import FormatError, LimitExceeded
from trailseal.pipeline.prepare import prepare_all
from trailseal.server.http import EVENT_BODY_DOC, json_response, parse_events, read_body
from trailseal.server.runtime import Runtime, utc_now


def router(runtime: Runtime) -> APIRouter:
    """Ingest routes."""
    settings = runtime.settings
    limits = settings.limits
    api = APIRouter(tags=["ingest"])

    @api.post("/v1/events", openapi_extra=EVENT_BODY_DOC)
    async def post_events(
        request: Request,
        log: str | None = Query(None, description="Target log (default: the default log)."),
        proofs: bool = Query(False, description="Include an inclusion proof in each receipt."),
    ) -> Response:
        """Append events; answers once they are durably committed and covered by a checkpoint."""
        target = log or settings.default_log
        body = await read_body(request, limits.max_body_bytes)
        raws, sizes = parse_events(body, request.headers.get("content-type", ""))
        if len(raws) > limits.max_events_per_request:
            raise LimitExceeded(
                "max_events_per_request",
                f"{len(raws)} events, limit {limits.max_events_per_request}",
            )
        if not raws:
            raise FormatError("body: no events")
        prepared = prepare_all(
            raws,
            log=target,
            received_at=utc_now(),
            max_depth=limits.max_depth,
            max_event_bytes=limits.max_event_bytes,
            sizes=sizes,
        )
        receipts = await runtime.sequencer.submit(target, prepared, want_proofs=proofs)
        return json_response({"receipts": [r.to_json() for r in receipts]})

    return api
