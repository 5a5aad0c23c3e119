"""The ASGI application: FastAPI with one router per feature, behind the in-flight guard.

Routes live in :mod:`trailseal.server.routes`; errors become RFC 9457 problem+json in
:mod:`trailseal.server.problems` only. To add a feature's routes, add its module to ``ROUTERS``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, FastAPI

from trailseal import __version__
from trailseal.core.errors import TrailsealError
from trailseal.server import problems
from trailseal.server.access import AccessControl
from trailseal.server.limits import InflightLimit
from trailseal.server.routes import (
    health,
    ingest,
    keys,
    logs,
    pipeline_policy,
    producers,
    quarantine,
    query,
    retention,
    schemas,
    subjects,
)
from trailseal.server.runtime import Runtime

ROUTERS: list[Callable[[Runtime], APIRouter]] = [
    health.router,
    ingest.router,
    logs.router,
    keys.router,
    retention.router,
    schemas.router,
    quarantine.router,
    subjects.router,
    producers.router,
    pipeline_policy.router,
    query.router,
]


def create_app(runtime: Runtime) -> Any:
    """Build the ASGI app for ``runtime``."""
    settings = runtime.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.sequencer.worker(settings.default_log)
        yield
        await asyncio.to_thread(runtime.close)

    app = FastAPI(
        title="trailseal",
        version=__version__,
        description="Tamper-evident audit trail: ingest, receipts, checkpoints and proofs.",
        lifespan=lifespan,
    )
    app.add_exception_handler(TrailsealError, problems.handle)
    app.add_exception_handler(Exception, problems.handle)
    for make_router in ROUTERS:
        app.include_router(make_router(runtime))
    guarded = AccessControl(app, routes=app.router.routes, access=runtime.access)
    return InflightLimit(
        guarded, limit=settings.max_inflight_requests, retry_after=settings.retry_after_seconds
    )
