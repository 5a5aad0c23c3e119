"""The ASGI application: ingest, event reads, checkpoints, proofs, tiles and health.

Routes (all JSON unless noted; errors are RFC 9457 problem+json, see :mod:`.problems`):

- ``POST /v1/events`` — one event, a JSON array, or NDJSON; returns ``{"receipts": [...]}``
- ``GET  /v1/events/{id}`` — ``{"event": <stored envelope>, "receipt": {...}}``
- ``GET  /v1/logs`` — logs with their origins and verifier keys
- ``GET  /v1/logs/{log}/checkpoint`` — latest signed checkpoint (``text/plain``, C2SP note)
- ``GET  /v1/logs/{log}/proofs/inclusion`` — ``?leaf_index=&tree_size=`` or ``?event_id=``
- ``GET  /v1/logs/{log}/proofs/consistency`` — ``?first=&second=``
- ``GET  /v1/logs/{log}/tile/...`` — C2SP tlog-tiles (hash tiles and entry bundles)
- ``GET  /healthz``, ``GET /readyz``
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import FastAPI, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal import __version__
from trailseal.core.canonical import loads
from trailseal.core.errors import FormatError, LimitExceeded, NotFoundError, TrailsealError
from trailseal.pipeline.prepare import prepare_all
from trailseal.server import problems
from trailseal.server.limits import InflightLimit
from trailseal.server.runtime import Runtime, utc_now
from trailseal.server.tiles import tile_response
from trailseal.storage.keyfiles import verifier_keys
from trailseal.storage.proofs import consistency_proof, inclusion_proof, receipt_for

_NDJSON = "application/x-ndjson"

_EVENT_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One event envelope, a JSON array of them, or NDJSON (one per line).",
        "content": {
            "application/json": {"schema": {"oneOf": [{"type": "object"}, {"type": "array"}]}},
            _NDJSON: {"schema": {"type": "string"}},
        },
    }
}


def json_response(value: Any, status: int = 200) -> Response:
    """orjson-encoded JSON response."""
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LimitExceeded("max_body_bytes", f"body is {declared} bytes, limit {limit}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise LimitExceeded("max_body_bytes", f"body exceeds limit {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_events(body: bytes, content_type: str) -> tuple[list[Any], list[int] | None]:
    """Decode a request body into raw events (and their byte sizes for NDJSON)."""
    if not body.strip():
        raise FormatError("body: empty; send one event object, a JSON array, or NDJSON")
    if content_type.split(";")[0].strip().lower() == _NDJSON:
        events: list[Any] = []
        sizes: list[int] = []
        for number, line in enumerate(body.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                events.append(loads(line))
            except FormatError as exc:
                raise FormatError(f"line {number}: {exc}") from exc
            sizes.append(len(line))
        return events, sizes
    value = loads(body)
    if isinstance(value, dict):
        return [value], [len(body)]
    if isinstance(value, list):
        return value, None
    raise FormatError(
        f"body: expected an event object or an array of events, got {type(value).__name__}"
    )


def create_app(runtime: Runtime) -> Any:
    """Build the ASGI app (FastAPI wrapped in the in-flight guard)."""
    settings = runtime.settings
    limits = settings.limits
    store = runtime.store

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

    def known_log(log: str) -> str:
        if store.get_log(log) is None:
            raise NotFoundError(f"log {log!r} does not exist")
        return log

    @app.post("/v1/events", openapi_extra=_EVENT_BODY_DOC, tags=["ingest"])
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
        prepared = prepare_all(
            raws,
            log=target,
            received_at=utc_now(),
            max_depth=limits.max_depth,
            max_event_bytes=limits.max_event_bytes,
            sizes=sizes,
        )
        receipts = await runtime.sequencer.submit(target, prepared, want_proofs=proofs)
        return json_response({"receipts": [r.to_json() for r in receipts]})

    @app.get("/v1/events/{event_id}", tags=["read"])
    async def get_event(event_id: str, log: str | None = None) -> Response:
        """The stored envelope exactly as sequenced (its RFC 8785 bytes are the leaf input)."""
        target = log or settings.default_log
        entry = store.get_entry_by_id(target, event_id)
        if entry is None:
            raise NotFoundError(f"event {event_id!r} not found in log {target!r}")
        receipt = receipt_for(store, target, entry.leaf_index)
        payload = b'{"event":' + entry.body + b',"receipt":' + orjson.dumps(receipt.to_json()) + b"}"
        return Response(payload, media_type="application/json")

    @app.get("/v1/logs", tags=["verify"])
    async def list_logs() -> Response:
        """Every log with its origin, size and verifier keys."""
        out = []
        for info in store.list_logs():
            latest = store.latest_checkpoint(info.name)
            out.append(
                {
                    "log": info.name,
                    "origin": info.origin,
                    "tree_size": latest.tree_size if latest else 0,
                    "verifier_keys": verifier_keys(runtime.keyring(info.name)),
                }
            )
        return json_response({"logs": out})

    @app.get("/v1/logs/{log}/checkpoint", tags=["verify"])
    async def get_checkpoint(log: str) -> Response:
        """Latest signed checkpoint as a C2SP signed note."""
        latest = store.latest_checkpoint(known_log(log))
        if latest is None:
            raise NotFoundError(f"log {log!r} has no checkpoint yet")
        return Response(latest.note, media_type="text/plain; charset=utf-8")

    @app.get("/v1/logs/{log}/proofs/inclusion", tags=["verify"])
    async def get_inclusion(
        log: str,
        leaf_index: int | None = Query(None, ge=0),
        tree_size: int | None = Query(None, ge=1),
        event_id: str | None = None,
    ) -> Response:
        """RFC 9162 inclusion proof, by leaf index or by event id."""
        known_log(log)
        if event_id is not None:
            entry = store.get_entry_by_id(log, event_id)
            if entry is None:
                raise NotFoundError(f"event {event_id!r} not found in log {log!r}")
            leaf_index = entry.leaf_index
        if leaf_index is None:
            raise FormatError("proof: give leaf_index or event_id")
        if tree_size is None:
            latest = store.latest_checkpoint(log)
            tree_size = latest.tree_size if latest else 0
        hashes = inclusion_proof(store, log, leaf_index, tree_size)
        return json_response(
            {
                "leaf_index": leaf_index,
                "tree_size": tree_size,
                "hashes": [base64.b64encode(h).decode() for h in hashes],
            }
        )

    @app.get("/v1/logs/{log}/proofs/consistency", tags=["verify"])
    async def get_consistency(
        log: str, first: int = Query(..., ge=0), second: int = Query(..., ge=0)
    ) -> Response:
        """RFC 9162 consistency proof between two tree sizes."""
        hashes = consistency_proof(store, known_log(log), first, second)
        return json_response(
            {"first": first, "second": second, "hashes": [base64.b64encode(h).decode() for h in hashes]}
        )

    @app.get("/v1/logs/{log}/tile/{path:path}", tags=["verify"])
    async def get_tile(log: str, path: str) -> Response:
        """C2SP tlog-tiles read path: hash tiles and entry bundles (immutable once full)."""
        return tile_response(store, known_log(log), "tile/" + path)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return json_response({"status": "ok", "version": __version__})

    @app.get("/readyz", tags=["health"])
    async def readyz() -> Response:
        """Readiness: the store answers and the default log's writer is alive."""
        try:
            await asyncio.to_thread(store.tree_size, settings.default_log)
            worker = runtime.sequencer.worker(settings.default_log)
        except Exception as exc:
            return problems.problem(503, "not ready", f"store: {exc}", kind="not-ready")
        if worker.failure is not None:
            return problems.problem(503, "not ready", f"sequencer: {worker.failure}", kind="not-ready")
        return json_response(
            {"status": "ready", "queued_events": runtime.sequencer.queued_events}
        )

    return InflightLimit(
        app, limit=settings.max_inflight_requests, retry_after=settings.retry_after_seconds
    )
