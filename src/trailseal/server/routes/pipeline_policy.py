"""``/v1/pipeline/policy``: a tenant's unknown-action policy, redaction rules and sampling."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.canonical import loads
from trailseal.server.http import json_response, read_body
from trailseal.server.runtime import Runtime

_LOG = Query(None, description="Tenant log (default: the default log).")


def router(runtime: Runtime) -> APIRouter:
    """Pipeline policy routes."""
    settings = runtime.settings
    pipeline = runtime.pipeline
    api = APIRouter(tags=["pipeline"])

    @api.get("/v1/pipeline/policy")
    async def get_policy(log: str | None = _LOG) -> Response:
        """The policy in force (defaults filled in)."""
        target = log or settings.default_log
        return json_response({"log": target, "policy": pipeline.policy(target).to_json()})

    @api.put("/v1/pipeline/policy")
    async def put_policy(request: Request, log: str | None = _LOG) -> Response:
        """Replace the policy; omitted parts take their defaults. Applies to the next request."""
        target = log or settings.default_log
        policy = pipeline.set_policy(target, loads(await read_body(request, 1_000_000)))
        return json_response({"log": target, "policy": policy.to_json()})

    return api
