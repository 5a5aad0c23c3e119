"""``/v1/quarantine``: events that failed their schema, listed, fetched and re-driven."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.responses import Response

from trailseal.core.errors import ConflictError, NotFoundError
from trailseal.server.http import json_response
from trailseal.server.runtime import Runtime

_LOG = Query(None, description="Tenant log (default: the default log).")


def router(runtime: Runtime) -> APIRouter:
    """Quarantine routes."""
    settings = runtime.settings
    pipeline = runtime.pipeline
    api = APIRouter(tags=["pipeline"])

    @api.get("/v1/quarantine")
    async def list_quarantine(
        log: str | None = _LOG,
        status: str = Query("quarantined", pattern="^(quarantined|redriven|all)$"),
        action: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        after: str | None = Query(None, description="Continue after this quarantine id."),
    ) -> Response:
        """Quarantined events, oldest first, with their violations (values redacted)."""
        target = log or settings.default_log
        rows = pipeline.state.quarantine.list_quarantine(
            target, status=None if status == "all" else status, action=action, limit=limit, after=after
        )
        entries = [r.to_json(detail=False) for r in rows]
        nxt = rows[-1].quarantine_id if len(rows) == limit else None
        return json_response({"log": target, "entries": entries, "next": nxt})

    @api.get("/v1/quarantine/{quarantine_id}")
    async def get_entry(quarantine_id: str, log: str | None = _LOG) -> Response:
        """One entry with the event as stored there (redacted) and its violations."""
        target = log or settings.default_log
        record = pipeline.state.quarantine.get(target, quarantine_id)
        if record is None:
            raise NotFoundError(f"quarantine entry {quarantine_id!r} not found in log {target!r}")
        return json_response(record.to_json())

    @api.post("/v1/quarantine/redrive")
    async def redrive_all(
        log: str | None = _LOG, action: str | None = None,
        limit: int = Query(1000, ge=1, le=10_000), proofs: bool = False,
    ) -> Response:
        """Re-drive every waiting entry (of one action): each is re-validated, then sequenced."""
        target = log or settings.default_log
        results = []
        for record in pipeline.state.quarantine.list_quarantine(target, action=action, limit=limit):
            try:
                results.append(await pipeline.redrive(target, record.quarantine_id, want_proofs=proofs))
            except ConflictError as exc:
                results.append({"quarantine_id": record.quarantine_id, "status": "conflict", "detail": str(exc)})
        sequenced = sum(1 for r in results if r.get("status") == "sequenced")
        return json_response({"log": target, "sequenced": sequenced, "still_quarantined": len(results) - sequenced,
                              "results": results})

    @api.post("/v1/quarantine/{quarantine_id}/redrive")
    async def redrive(quarantine_id: str, log: str | None = _LOG, proofs: bool = False) -> Response:
        """Re-validate one entry against the current schemas; sequence it (original ``received_at``) if it passes."""
        return json_response(await pipeline.redrive(log or settings.default_log, quarantine_id, want_proofs=proofs))

    return api
