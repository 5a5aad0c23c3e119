"""ASGI and WSGI middleware: request ids, trace context, audit context, access events, no raising."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from trailseal.sdk import (
    AuditMiddleware,
    AuditRecorder,
    WSGIAuditMiddleware,
    current_context,
    emit,
    set_actor,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Exploding:
    """A client whose every emit fails (a spool that is full under policy 'raise', a bug...)."""

    def emit(self, event: Any = None, **fields: Any) -> str:
        raise RuntimeError("boom")


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/invoices/{invoice_id}")
    async def read(invoice_id: str) -> dict[str, Any]:
        set_actor("alice", actor_type="user")  # the app authenticates inside
        emit(action="invoice.view", resource=f"invoice:{invoice_id}")
        context = current_context()
        return {"request_id": context.request_id, "trace_id": context.trace_id}

    @app.get("/api/sync")
    def sync_route() -> dict[str, Any]:
        emit(action="report.run", actor="scheduler", resource="report:daily")  # on a worker thread
        return {}

    @app.get("/api/forbidden")
    async def forbidden() -> None:
        raise HTTPException(403)

    @app.get("/api/crash")
    async def crash() -> None:
        raise ValueError("bug in the app")

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def call(app: Any, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
            return await http.get(path, headers=headers)

    return asyncio.run(go())


def test_asgi_sets_context_and_emits_access_events(audit_recorder: AuditRecorder) -> None:
    app = AuditMiddleware(make_app(), access_events=["/api"], tenant=lambda scope: "acme",
                          actor=lambda scope: {"id": "anonymous"})
    answer = call(app, "/api/invoices/inv-42", {"x-request-id": "req-123", "traceparent": TRACEPARENT,
                                                 "user-agent": "pytest"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "req-123"
    assert answer.json() == {"request_id": "req-123", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
    view, access = audit_recorder.recorded
    assert view.event.action == "invoice.view" and view.event.actor.id == "alice"
    assert view.event.request_id == "req-123" and view.event.span_id == "00f067aa0ba902b7" and view.log == "acme"
    assert access.event.action == "http.request" and access.event.outcome == "success"
    assert access.event.actor.id == "alice" and access.event.actor.user_agent == "pytest"
    assert access.event.resource.id == "GET /api/invoices/{invoice_id}"
    assert access.event.metadata is not None and access.event.metadata["status"] == 200

    call(app, "/healthz")  # not selected by the route filter
    assert len(audit_recorder.events) == 2


def test_asgi_generates_request_ids_and_maps_outcomes(audit_recorder: AuditRecorder) -> None:
    app = AuditMiddleware(make_app(), access_events=True)
    answer = call(app, "/api/sync", {"x-request-id": "bad id with spaces"})
    generated = answer.headers["x-request-id"]
    assert generated != "bad id with spaces" and len(generated) == 36
    assert audit_recorder.find("report.run")[0].request_id == generated
    assert call(app, "/api/forbidden").status_code == 403
    assert call(app, "/api/crash").status_code == 500
    outcomes = [(e.metadata or {}).get("status") for e in audit_recorder.find("http.request")]
    assert outcomes == [200, 403, 500]
    assert [e.outcome for e in audit_recorder.find("http.request")] == ["success", "denied", "failure"]
    assert all(e.actor.id == "anonymous" for e in audit_recorder.find("http.request"))


def test_asgi_never_raises_into_the_app(caplog: pytest.LogCaptureFixture) -> None:
    app = AuditMiddleware(make_app(), client=Exploding(), access_events=True,
                          actor=lambda scope: 1 / 0)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.ERROR, logger="trailseal.sdk"):
        assert call(app, "/healthz").status_code == 200
    assert "running it without audit context" in caplog.text
    app = AuditMiddleware(make_app(), client=Exploding(), access_events=True)
    with caplog.at_level(logging.ERROR, logger="trailseal.sdk"):
        assert call(app, "/healthz").status_code == 200
    assert "could not record audit event" in caplog.text and "http.request" in caplog.text


def test_asgi_passes_other_scopes_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(AuditMiddleware(inner)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/crash":
        raise ValueError("bug")
    emit(action="page.view", resource="page:home")
    start_response("201 Created", [("content-type", "text/plain")])

    def body() -> Iterable[bytes]:
        yield (current_context().request_id or "").encode()

    return body()


def run_wsgi(app: Any, path: str, headers: dict[str, str] | None = None) -> tuple[str, dict[str, str], bytes]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "192.0.2.9", **(headers or {})}
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        got["status"], got["headers"] = status, dict(headers)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return got["status"], got["headers"], body


def test_wsgi_twin(audit_recorder: AuditRecorder) -> None:
    app = WSGIAuditMiddleware(wsgi_app, access_events=True, actor=lambda environ: environ.get("REMOTE_USER"))
    status, headers, body = run_wsgi(app, "/", {"HTTP_X_REQUEST_ID": "r-9", "HTTP_TRACEPARENT": TRACEPARENT,
                                                "REMOTE_USER": "bob"})
    assert status == "201 Created" and headers["X-Request-ID"] == "r-9" and body == b"r-9"
    view, access = audit_recorder.events
    assert view.actor.id == "bob" and view.actor.ip == "192.0.2.9" and view.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert access.action == "http.request" and access.metadata is not None and access.metadata["status"] == 201
    with pytest.raises(ValueError, match="bug"):
        run_wsgi(app, "/crash")
    assert audit_recorder.events[-1].outcome == "failure"


def test_wsgi_never_raises_into_the_app(caplog: pytest.LogCaptureFixture) -> None:
    def quiet(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    with caplog.at_level(logging.ERROR, logger="trailseal.sdk"):
        status, _, body = run_wsgi(WSGIAuditMiddleware(quiet, client=Exploding(), access_events=True), "/")
    assert status == "200 OK" and body == b"ok"
    assert "could not record audit event" in caplog.text
