"""Pure-ASGI audit middleware: request id, trace context, audit context, access events.

::

    app = AuditMiddleware(app, client=audit, access_events=["/api"],
                          actor=lambda scope: scope.get("user_id"), tenant=lambda scope: "acme")

Per HTTP or WebSocket connection it takes the ``X-Request-ID`` header (or makes a UUIDv7) and
echoes it on the response, reads the W3C ``traceparent`` (via OpenTelemetry when installed), and
runs the app inside an :func:`~trailseal.sdk.audit_context` with the request id, trace and span
ids, the actor (``actor(scope)``, plus the client's IP and user agent) and the tenant
(``tenant(scope)``). With ``access_events`` selecting the request, it emits one ``http.request``
event when the response is done, with the route, status, outcome and duration. An actor
identified later, inside the app, with :func:`~trailseal.sdk.set_actor` is used for it.

It never raises into the host application: its own failures are logged, the app's exceptions
pass through unchanged (after an access event with status 500).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from trailseal.sdk.access import AccessFilter, access_event, aemit_safely, client_ip, wants_access
from trailseal.sdk.context import AuditContext, RequestState, _current, _request, actor_value
from trailseal.sdk.default import Emitter
from trailseal.sdk.tracing import request_id_from, trace_ids

__all__ = ["AuditMiddleware"]

_log = logging.getLogger("trailseal.sdk")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AuditMiddleware:
    """See the module docstring. ``client`` defaults to the default client at emit time."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: Emitter | None = None,
        access_events: AccessFilter = False,
        actor: Callable[[Scope], str | Mapping[str, Any] | None] | None = None,
        tenant: Callable[[Scope], str | None] | None = None,
        action: str = "http.request",
        request_id_header: str = "x-request-id",
    ) -> None:
        self.app = app
        self.client = client
        self.access_events = access_events
        self.actor = actor
        self.tenant = tenant
        self.action = action
        self.header = request_id_header.lower()
        self._header_bytes = self.header.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            context, request_id = self._context(scope)
        except Exception:
            _log.exception("trailseal middleware: cannot read the request; running it without audit context")
            await self.app(scope, receive, send)
            return
        status = 0
        header = (self._header_bytes, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message.get("status", 0))
                headers = list(message.get("headers") or ())
                if not any(name.lower() == self._header_bytes for name, _ in headers):
                    headers.append(header)
                    message = {**message, "headers": headers}
            await send(message)

        state = RequestState()
        token, request_token = _current.set(context), _request.set(state)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            await self._access(scope, status if status else 500, started, context, state)
            raise
        else:
            await self._access(scope, status, started, context, state)
        finally:
            _current.reset(token)
            _request.reset(request_token)

    def _context(self, scope: Scope) -> tuple[AuditContext, str]:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers") or ()}
        request_id = request_id_from(headers.get(self.header))
        trace_id, span_id = trace_ids(headers)
        actor = actor_value(self.actor(scope)) if self.actor is not None else None
        client = scope.get("client")
        extra = {"ip": client_ip(client[0]) if client else None, "user_agent": headers.get("user-agent", "")[:1024] or None}
        if actor is not None:
            actor = {**{k: v for k, v in extra.items() if v}, **actor}
        tenant = self.tenant(scope) if self.tenant is not None else None
        outer = _current.get()
        context = AuditContext(
            actor=actor or outer.actor, tenant=tenant or outer.tenant, request_id=request_id,
            trace_id=trace_id or outer.trace_id, span_id=span_id or outer.span_id,
        )
        return context, request_id

    async def _access(self, scope: Scope, status: int, started: float, context: AuditContext, state: RequestState) -> None:
        try:
            method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
            path = scope.get("path", "")
            if not wants_access(self.access_events, method, path):
                return
            route = getattr(scope.get("route"), "path", None)
            fields = access_event(action=self.action, method=method, path=path, route=route, status=status,
                                  duration=time.perf_counter() - started, context=context, late_actor=state.actor)
            client = scope.get("client")
            if state.actor is None and context.actor is None and client and client_ip(client[0]):
                fields["actor"]["ip"] = client_ip(client[0])
        except Exception:
            _log.exception("trailseal middleware: cannot build the access event")
            return
        await aemit_safely(self.client, fields)
