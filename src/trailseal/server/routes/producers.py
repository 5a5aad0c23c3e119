"""``/v1/producers``: per-producer sequence tracking (gaps, duplicates, capture rate)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import Response

from trailseal.core.errors import NotFoundError
from trailseal.server.http import json_response
from trailseal.server.runtime import Runtime

_LOG = Query(None, description="Tenant log (default: the default log).")


def router(runtime: Runtime) -> APIRouter:
    """Producer routes."""
    settings = runtime.settings
    store = runtime.pipeline.state.producers
    api = APIRouter(tags=["pipeline"])

    @api.get("/v1/producers")
    async def list_producers(log: str | None = _LOG) -> Response:
        """Every producer of the log: events, sequence range, gaps, duplicates, late, capture rate."""
        target = log or settings.default_log
        rows = store.list_producers(target)
        totals = {
            "events": sum(r.events for r in rows),
            "gaps": sum(r.gaps for r in rows),
            "duplicates": sum(r.duplicates for r in rows),
        }
        return json_response({"log": target, "producers": [r.to_json() for r in rows], "totals": totals})

    @api.get("/v1/producers/{producer_id}")
    async def get_producer(producer_id: str, log: str | None = _LOG) -> Response:
        """One producer's counters."""
        target = log or settings.default_log
        for row in store.list_producers(target):
            if row.producer_id == producer_id:
                return json_response(row.to_json())
        raise NotFoundError(f"producer {producer_id!r} not seen in log {target!r}")

    return api
