"""``/v1/keys``: create, list, show, revoke and rotate API keys (global admins only).

The policy table (``trailseal.access.policy``) requires ``keys.manage`` on ``*``; these handlers
only do the work. A new key's secret is in the creating response and nowhere else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from trailseal.access.apikeys import (
    IssuedKey,
    create_key,
    parse_duration,
    parse_expiry,
    revoke_key,
    rotate_key,
)
from trailseal.access.roles import Grant
from trailseal.core.errors import FormatError, NotFoundError
from trailseal.server.access import principal_of
from trailseal.server.http import json_response, read_body
from trailseal.server.runtime import Runtime

_BODY_LIMIT = 64 * 1024

KEY_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["name", "grants"],
                    "properties": {
                        "name": {"type": "string"},
                        "grants": {"type": "array", "items": {"type": "string"},
                                   "example": ["acme:producer"]},
                        "expires": {"type": "string", "example": "30d"},
                        "rate_per_second": {"type": "number"},
                        "burst": {"type": "integer"},
                    },
                }
            }
        },
    }
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _json_body(request: Request, *, required: bool) -> dict[str, Any]:
    body = await read_body(request, _BODY_LIMIT)
    if not body.strip():
        if required:
            raise FormatError("body: empty; send a JSON object")
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"body: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"body: want a JSON object, got {type(value).__name__}")
    return value


def _issued(issued: IssuedKey, now: dt.datetime) -> Response:
    return json_response({"key": issued.token, **issued.record.to_json(now)}, status=201)


def router(runtime: Runtime) -> APIRouter:
    """Key management routes."""
    keys = runtime.access.keys
    api = APIRouter(tags=["access"])

    @api.get("/v1/keys")
    async def list_keys() -> Response:
        """Every key (never its secret), oldest first, with its status."""
        now = _now()
        records = await asyncio.to_thread(keys.list_keys)
        return json_response({"keys": [r.to_json(now) for r in records]})

    @api.post("/v1/keys", openapi_extra=KEY_BODY_DOC, status_code=201)
    async def post_key(request: Request) -> Response:
        """Create a key; the response holds its secret, shown this once."""
        body = await _json_body(request, required=True)
        now = _now()
        try:
            grants = [Grant.parse(str(g)) for g in body.get("grants") or []]
            expires = body.get("expires")
            rate = body.get("rate_per_second")
            burst = body.get("burst")
            issued = await asyncio.to_thread(
                create_key, keys,
                name=str(body.get("name") or ""), grants=grants, now=now,
                created_by=principal_of(request).actor,
                expires_at=parse_expiry(str(expires), now) if expires else None,
                rate_per_second=float(rate) if rate is not None else None,
                burst=int(burst) if burst is not None else None,
            )
        except (ValueError, TypeError) as exc:
            raise FormatError(str(exc)) from None
        return _issued(issued, now)

    @api.get("/v1/keys/{key_id}")
    async def get_key(key_id: str) -> Response:
        """One key."""
        record = await asyncio.to_thread(keys.get, key_id)
        if record is None:
            raise NotFoundError(f"key {key_id!r} not found")
        return json_response(record.to_json(_now()))

    @api.delete("/v1/keys/{key_id}")
    async def delete_key(key_id: str) -> Response:
        """Revoke a key; the next request that presents it is refused."""
        now = _now()
        record = await asyncio.to_thread(revoke_key, keys, key_id, now)
        return json_response(record.to_json(now))

    @api.post("/v1/keys/{key_id}/rotate", status_code=201)
    async def post_rotate(key_id: str, request: Request) -> Response:
        """Issue a successor; the old key is revoked now or after ``{"grace": "1h"}``."""
        body = await _json_body(request, required=False)
        now = _now()
        try:
            grace = body.get("grace")
            seconds = parse_duration(str(grace)) if grace else 0
            issued = await asyncio.to_thread(
                rotate_key, keys, key_id, now, created_by=principal_of(request).actor,
                grace_seconds=seconds,
            )
        except (ValueError, TypeError) as exc:
            raise FormatError(str(exc)) from None
        return _issued(issued, now)

    return api
