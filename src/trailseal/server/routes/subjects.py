"""``POST /v1/subjects/{subject}/forget``: crypto-shredding of a data subject's keys."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.canonical import loads
from trailseal.core.errors import FormatError
from trailseal.server.http import json_response, read_body
from trailseal.server.runtime import Runtime


def router(runtime: Runtime) -> APIRouter:
    """Data-subject routes."""
    settings = runtime.settings
    api = APIRouter(tags=["pipeline"])

    @api.post("/v1/subjects/{subject}/forget")
    async def forget(
        request: Request, subject: str,
        log: str | None = Query(None, description="Tenant log (default: the default log)."),
    ) -> Response:
        """Destroy the subject's encryption keys: its encrypted fields read "erased" from now on.

        Optional body ``{"actor": "...", "reason": "..."}``; the erasure is recorded in the log as a
        ``trailseal.subject.forget`` event naming the subject by its token.
        """
        raw = await read_body(request, 64 * 1024)
        body = loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise FormatError("body: want a JSON object like {\"actor\": \"...\", \"reason\": \"...\"}")
        actor = body.get("actor") or "admin"
        reason = body.get("reason")
        if not isinstance(actor, str) or not (reason is None or isinstance(reason, str)):
            raise FormatError("body: actor and reason must be strings")
        result = await runtime.pipeline.forget(log or settings.default_log, subject, actor=actor, reason=reason)
        return json_response(result)

    return api
