"""``POST /v1/events``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.errors import FormatError, LimitExceeded
from trailseal.pipeline.stages import Correlation
from trailseal.server.http import EVENT_BODY_DOC, json_response, parse_events, read_body
from trailseal.server.ordering import producer_run
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
        # The pipeline stages (docs/pipeline.md): schema validation and quarantine, redaction,
        # enrichment, sampling, then canonical bytes and leaf hashes. A producer's batches are
        # handed to the sequencer in its seq order (server/ordering.py).
        pipeline = runtime.pipeline
        received_at = utc_now()
        correlation = Correlation.from_headers(
            request.headers.get("traceparent"), request.headers.get("x-request-id")
        )
        run = producer_run(raws)
        with runtime.order.hand_over(target, run):
            outcome = pipeline.process(
                raws,
                pipeline.context(target, received_at, correlation=correlation,
                                 max_depth=limits.max_depth, max_event_bytes=limits.max_event_bytes),
                sizes,
            )
            prepared = outcome.prepared
            await runtime.order.turn(target, run)
            if runtime.scaleout.bus is not None:  # "accepted" mode (docs/deploy.md)
                accepted = await runtime.scaleout.accept(
                    target, prepared, settings.origin(target), utc_now()
                ) if prepared else []
                pipeline.committed(outcome, received_at)
                return json_response({"receipts": pipeline.receipts(outcome, accepted)}, status=202)
            # Queued here, in this order; awaited below, after the hand-over is recorded.
            sequenced = runtime.sequencer.submit_future(target, prepared, want_proofs=proofs) if prepared else None
        receipts = await asyncio.wrap_future(sequenced) if sequenced is not None else []
        pipeline.committed(outcome, received_at)
        pipeline.flush_summaries(received_at)
        return json_response({"receipts": pipeline.receipts(outcome, receipts)})

    return api
