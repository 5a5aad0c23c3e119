"""Retention policies, runs, legal holds and archive segments (docs/retention.md).

Every change is an audit event in the ``_system`` log, with the caller as actor. Long work
(plans, runs, restores) runs in a worker thread. The scheduled runs of ``serve`` start with this
router and stop before the runtime closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, FastAPI, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.errors import FormatError, NotFoundError
from trailseal.retention.policy import format_keep, parse_keep
from trailseal.retention.scheduler import RetentionScheduler
from trailseal.server.access import principal_of
from trailseal.server.http import json_response
from trailseal.server.retention import retention_for
from trailseal.server.runtime import Runtime

_log = logging.getLogger("trailseal.retention")


def _actor(request: Request) -> str:
    """Who is calling, as the access layer resolved it."""
    return principal_of(request).actor or "anonymous"


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise FormatError(f"{name}: required field is missing")
        return None
    if not isinstance(value, str):
        raise FormatError(f"{name}: must be a string")
    return value


def _keep(body: dict[str, Any]) -> int | None:
    if "keep_days" in body:
        days = body["keep_days"]
        if days is not None and (not isinstance(days, int) or isinstance(days, bool)):
            raise FormatError("keep_days: must be an integer or null (forever)")
        return days
    keep = _text(body, "keep", required=True)
    assert keep is not None
    return parse_keep(keep)


def router(runtime: Runtime) -> APIRouter:
    """Retention, hold and archive routes (+ the scheduler's lifespan)."""
    settings = runtime.settings
    interval = settings.retention_interval_seconds

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if interval > 0:
            try:
                scheduler = RetentionScheduler(retention_for(runtime), interval)
                scheduler.start()
            except FormatError as exc:
                _log.error("scheduled retention is off: %s", exc)
        try:
            yield
        finally:
            if scheduler is not None:
                await asyncio.to_thread(scheduler.stop)

    api = APIRouter(lifespan=lifespan)

    def log_of(log: str | None) -> str:
        return log or settings.default_log

    def hold_in(hold_id: str, log: str | None) -> Any:
        """The hold, only if it belongs to ``log`` (tenant isolation: the access layer checks
        the caller's grant on that parameter)."""
        hold = retention_for(runtime).get_hold(hold_id)
        if hold.log != log_of(log):
            raise NotFoundError(f"hold {hold_id!r} does not exist in log {log_of(log)!r}")
        return hold

    # -- policies ----------------------------------------------------------------------------
    @api.get("/v1/retention/policies", tags=["retention"])
    async def list_policies(log: str | None = None) -> Response:
        """The retention policies that can apply to ``log`` (its own and the ``*`` ones)."""
        policies = retention_for(runtime).policies(log_of(log))
        return json_response({"policies": [{**p.to_json(), "keep": format_keep(p.keep_days)}
                                           for p in policies]})

    @api.put("/v1/retention/policies", tags=["retention"])
    async def put_policy(request: Request, body: dict[str, Any] = Body(...),
                         log: str | None = Query(None, description="Log, or * for every log.")) -> Response:
        """Create or change a policy of ``log``: ``{"action": "auth.*", "keep": "90d" |
        "forever", "name"?}``."""
        if body.get("log") not in (None, log_of(log)):
            raise FormatError("log: give the policy's log as the `log` query parameter")
        log = log_of(log)
        action = _text(body, "action") or "*"
        keep = _keep(body)
        policy = await asyncio.to_thread(
            retention_for(runtime).set_policy, log, action, keep, actor=_actor(request),
            name=_text(body, "name"),
        )
        return json_response({**policy.to_json(), "keep": format_keep(policy.keep_days)})

    @api.delete("/v1/retention/policies/{name}", tags=["retention"])
    async def delete_policy(request: Request, name: str, log: str | None = None) -> Response:
        """Remove a policy of ``log``."""
        if not any(p.name == name and p.log == log_of(log)
                   for p in retention_for(runtime).policies()):
            raise NotFoundError(f"retention policy {name!r} does not exist in log {log_of(log)!r}")
        gone = await asyncio.to_thread(retention_for(runtime).delete_policy, name,
                                       actor=_actor(request))
        return json_response({"deleted": gone.to_json()})

    # -- overview, plan, run -----------------------------------------------------------------
    @api.get("/v1/retention", tags=["retention"])
    async def show(log: str | None = None) -> Response:
        """Policies in force, holds, archive and prune state, recent runs of ``log``."""
        return json_response(await asyncio.to_thread(retention_for(runtime).show, log_of(log)))

    @api.get("/v1/retention/plan", tags=["retention"])
    async def plan(log: str | None = None) -> Response:
        """Dry run: what a run would archive, prune and keep, and why."""
        found = await asyncio.to_thread(retention_for(runtime).plan, log_of(log))
        return json_response(found.to_json())

    @api.post("/v1/retention/apply", tags=["retention"])
    async def apply(request: Request, log: str | None = Query(None, description="Log, or * for all.")) -> Response:
        """Run retention now (archive, then prune); answers when the run is done."""
        retention = retention_for(runtime)
        actor = _actor(request)
        if log == "*":
            runs = await asyncio.to_thread(retention.apply_all, actor=actor)
        else:
            runs = [await asyncio.to_thread(retention.apply, log_of(log), actor=actor)]
        return json_response({"runs": [r.to_json() for r in runs]})

    # -- holds -------------------------------------------------------------------------------
    @api.post("/v1/holds", tags=["retention"], status_code=201)
    async def create_hold(request: Request, body: dict[str, Any] = Body(...),
                          log: str | None = None) -> Response:
        """Place a legal hold on ``log``: ``{"case", "owner", "selector": {...}, "expires_at"?,
        "reason"?}``."""
        if body.get("log") not in (None, log_of(log)):
            raise FormatError("log: give the hold's log as the `log` query parameter")
        selector = body.get("selector")
        if not isinstance(selector, dict):
            raise FormatError("selector: required object, e.g. {\"kind\": \"tenant\"}")
        hold = await asyncio.to_thread(
            retention_for(runtime).create_hold, log_of(log),
            case=_text(body, "case", required=True) or "",
            owner=_text(body, "owner", required=True) or "", selector=selector,
            actor=_actor(request), expires_at=_text(body, "expires_at"),
            reason=_text(body, "reason") or "",
        )
        return json_response(retention_for(runtime).hold_json(hold), status=201)

    @api.get("/v1/holds", tags=["retention"])
    async def list_holds(log: str | None = None, released: bool = True) -> Response:
        """Holds of ``log``, oldest first; ``released=false`` hides released ones."""
        retention = retention_for(runtime)
        holds = retention.list_holds(log_of(log), include_released=released)
        return json_response({"holds": [retention.hold_json(h) for h in holds]})

    @api.get("/v1/holds/{hold_id}", tags=["retention"])
    async def get_hold(hold_id: str, log: str | None = None) -> Response:
        """One hold of ``log`` with its status."""
        return json_response(retention_for(runtime).hold_json(hold_in(hold_id, log)))

    @api.patch("/v1/holds/{hold_id}", tags=["retention"])
    async def change_hold(request: Request, hold_id: str, body: dict[str, Any] = Body(...),
                          log: str | None = None) -> Response:
        """Change ``expires_at`` (null: no expiry), ``owner``, ``case`` or ``reason``."""
        hold_in(hold_id, log)
        extra = set(body) - {"expires_at", "owner", "case", "reason"}
        if extra:
            raise FormatError(f"{min(extra)}: unknown field")
        kwargs: dict[str, Any] = {"owner": _text(body, "owner"), "case": _text(body, "case"),
                                  "reason": _text(body, "reason")}
        if "expires_at" in body:
            kwargs["expires_at"] = _text(body, "expires_at")
        retention = retention_for(runtime)
        hold = await asyncio.to_thread(retention.change_hold, hold_id, actor=_actor(request),
                                       **kwargs)
        return json_response(retention.hold_json(hold))

    @api.post("/v1/holds/{hold_id}/release", tags=["retention"])
    async def release_hold(request: Request, hold_id: str,
                           body: dict[str, Any] | None = Body(None),
                           log: str | None = None) -> Response:
        """Release a hold: ``{"reason"?}``."""
        hold_in(hold_id, log)
        retention = retention_for(runtime)
        hold = await asyncio.to_thread(retention.release_hold, hold_id, actor=_actor(request),
                                       reason=_text(body or {}, "reason") or "")
        return json_response(retention.hold_json(hold))

    # -- archive -----------------------------------------------------------------------------
    @api.get("/v1/archive/segments", tags=["retention"])
    async def list_segments(log: str | None = None) -> Response:
        """The log's sealed archive segments."""
        retention = retention_for(runtime)
        return json_response({"log": log_of(log), "target": retention.target.url,
                              "segments": [s.to_json() for s in retention.segments(log_of(log))]})

    @api.post("/v1/archive/segments/{segment}/restore", tags=["retention"])
    async def restore(request: Request, segment: str, log: str | None = None,
                      keep_days: int | None = Query(None, ge=1, le=3650)) -> Response:
        """Verify a segment and bring its pruned events back for ``keep_days``."""
        result = await asyncio.to_thread(retention_for(runtime).restore, log_of(log), segment,
                                         actor=_actor(request), keep_days=keep_days)
        return json_response(result)

    return api
