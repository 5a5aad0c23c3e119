"""``/healthz`` and ``/readyz``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import Response

from trailseal import __version__
from trailseal.server import problems
from trailseal.server.http import json_response
from trailseal.server.runtime import Runtime


def router(runtime: Runtime) -> APIRouter:
    """Health routes."""
    settings = runtime.settings
    api = APIRouter(tags=["health"])

    @api.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return json_response({"status": "ok", "version": __version__})

    @api.get("/readyz")
    async def readyz() -> Response:
        """Readiness: the store answers and the default log's writer is alive."""
        try:
            await asyncio.to_thread(runtime.store.tree_size, settings.default_log)
            worker = runtime.sequencer.worker(settings.default_log)
        except Exception as exc:
            return problems.problem(503, "not ready", f"store: {exc}", kind="not-ready")
        if worker.failure is not None:
            return problems.problem(503, "not ready", f"sequencer: {worker.failure}", kind="not-ready")
        trouble = runtime.scaleout.readiness(runtime.sequencer)  # PostgreSQL session, bus
        if trouble is not None:
            return problems.problem(503, "not ready", trouble, kind="not-ready")
        return json_response({"status": "ready", "queued_events": runtime.sequencer.queued_events,
                              **runtime.scaleout.status(runtime.sequencer)})

    return api
