"""``/v1/schemas``: the schema registry of a tenant (docs/pipeline.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.canonical import loads
from trailseal.core.errors import FormatError, InvalidEvent
from trailseal.schema.compat import IncompatibleSchema
from trailseal.server.http import json_response, read_body
from trailseal.server.runtime import Runtime, utc_now

_LOG = Query(None, description="Tenant log (default: the default log).")
_MAX_SCHEMA_BYTES = 1_000_000


async def _json_body(request: Request) -> dict[str, Any]:
    value = loads(await read_body(request, _MAX_SCHEMA_BYTES))
    if not isinstance(value, dict):
        raise FormatError("body: want a JSON object")
    return value


def _registration(body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    key, document = body.get("key"), body.get("schema")
    compatibility = body.get("compatibility", "backward")
    if not isinstance(key, str) or not isinstance(document, dict) or not isinstance(compatibility, str):
        raise FormatError('body: want {"key": "<action pattern>", "schema": {...}, "compatibility": "backward"}')
    return key, document, compatibility


def router(runtime: Runtime) -> APIRouter:
    """Schema registry routes."""
    settings = runtime.settings
    registry = runtime.pipeline.registry
    api = APIRouter(tags=["pipeline"])

    @api.get("/v1/schemas")
    async def list_schemas(log: str | None = _LOG) -> Response:
        """Every key with its versions (built-ins included); ``latest`` marks the one in force."""
        target = log or settings.default_log
        rows = registry.versions(target)
        latest = {s.key: s.version for s in rows}
        return json_response(
            {"log": target, "schemas": [dict(s.to_json(document=False), latest=latest[s.key] == s.version) for s in rows]}
        )

    @api.post("/v1/schemas", status_code=201)
    async def add_schema(request: Request, log: str | None = _LOG) -> Response:
        """Register the next version of a key after the compatibility check (409 with a counter-example)."""
        target = log or settings.default_log
        key, document, compatibility = _registration(await _json_body(request))
        stored = registry.register(target, key, document, compatibility=compatibility, created_at=utc_now())
        return json_response(stored.to_json(), status=201)

    @api.post("/v1/schemas/check")
    async def check(request: Request, log: str | None = _LOG) -> Response:
        """Dry run: a registration's compatibility (``key``/``schema``), or how ``events`` validate."""
        target = log or settings.default_log
        body = await _json_body(request)
        if "events" in body:
            events = body["events"]
            if not isinstance(events, list):
                raise FormatError("body: events must be a list of event objects")
            return json_response({"log": target, "results": [_validate(runtime, target, e) for e in events]})
        key, document, compatibility = _registration(body)
        try:
            checked = registry.check(target, key, document, compatibility)
        except IncompatibleSchema as exc:
            return json_response({"compatible": False, "detail": str(exc), "counter_example": exc.counter_example.to_json()})
        return json_response({"compatible": True, "key": key, "version": checked.version})

    @api.get("/v1/schemas/{key}")
    async def get_schema(key: str, log: str | None = _LOG, version: int | None = Query(None, ge=1)) -> Response:
        """One version of a key with its document (the latest by default)."""
        return json_response(registry.get(log or settings.default_log, key, version).to_json())

    @api.get("/v1/schemas/{key}/versions")
    async def versions(key: str, log: str | None = _LOG) -> Response:
        """Every version of a key, with documents."""
        rows = registry.versions(log or settings.default_log, key)
        if not rows:
            registry.get(log or settings.default_log, key)  # raises NotFoundError
        return json_response({"key": key, "versions": [s.to_json() for s in rows]})

    return api


def _validate(runtime: Runtime, log: str, raw: Any) -> dict[str, Any]:
    from trailseal.core.event import Event

    try:
        event = Event.from_dict(raw)
    except InvalidEvent as exc:
        return {"valid": False, "malformed": {"field": exc.field, "detail": exc.detail}}
    tenant = runtime.pipeline.tenant(log)
    resolved = tenant.resolve(event.action)
    if resolved is None:
        ok = tenant.policy.unknown_action == "accept"
        return {"valid": ok, "schema": None, "violations": [] if ok else [
            {"pointer": "/action", "rule": "unknown-action", "detail": "no schema for this action", "value": event.action}]}
    version, compiled = resolved
    body = {k: v for k, v in event.to_dict().items() if k not in ("received_at", "log", "schema")}
    found = compiled.violations(body)
    return {"valid": not found, "schema": {"id": version.key, "version": version.version},
            "violations": [v.to_json() for v in found]}
