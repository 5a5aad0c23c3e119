"""WSGI audit middleware: the twin of :class:`~trailseal.sdk.asgi.AuditMiddleware` (PEP 3333).

::

    app.wsgi_app = WSGIAuditMiddleware(app.wsgi_app, client=audit, access_events=True,
                                       actor=lambda environ: environ.get("REMOTE_USER"))

The audit context is set while the app is called *and* while its response is iterated; the access
event is emitted when the server closes the response. Never raises into the host application.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from trailseal.sdk.access import AccessFilter, access_event, client_ip, emit_safely, wants_access
from trailseal.sdk.context import AuditContext, RequestState, _current, _request, actor_value
from trailseal.sdk.default import Emitter
from trailseal.sdk.tracing import request_id_from, trace_ids

__all__ = ["WSGIAuditMiddleware"]

_log = logging.getLogger("trailseal.sdk")

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class WSGIAuditMiddleware:
    """See the module docstring. ``client`` defaults to the default client at emit time."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        client: Emitter | None = None,
        access_events: AccessFilter = False,
        actor: Callable[[Environ], str | Mapping[str, Any] | None] | None = None,
        tenant: Callable[[Environ], str | None] | None = None,
        action: str = "http.request",
        request_id_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.client = client
        self.access_events = access_events
        self.actor = actor
        self.tenant = tenant
        self.action = action
        self.header = request_id_header
        self._environ_key = "HTTP_" + request_id_header.upper().replace("-", "_")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            context, request_id = self._context(environ)
        except Exception:
            _log.exception("trailseal middleware: cannot read the request; running it without audit context")
            return self.app(environ, start_response)
        run = contextvars.copy_context()
        state = RequestState()
        run.run(_current.set, context)
        run.run(_request.set, state)
        status = [0]

        def start_with_id(status_line: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
            try:
                status[0] = int(status_line.split(" ", 1)[0])
                if not any(name.lower() == self.header.lower() for name, _ in headers):
                    headers = [*headers, (self.header, request_id)]
            except Exception:
                _log.exception("trailseal middleware: cannot add the request id header")
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        started = time.perf_counter()
        try:
            body = run.run(self.app, environ, start_with_id)
        except BaseException:
            run.run(self._access, environ, status[0] or 500, started, context, state)
            raise
        return _Response(body, run, lambda: self._access(environ, status[0] or 500, started, context, state))

    def _context(self, environ: Environ) -> tuple[AuditContext, str]:
        request_id = request_id_from(environ.get(self._environ_key))
        headers = {"traceparent": environ.get("HTTP_TRACEPARENT", "")}
        trace_id, span_id = trace_ids(headers)
        actor = actor_value(self.actor(environ)) if self.actor is not None else None
        if actor is not None:
            extra = {"ip": client_ip(environ.get("REMOTE_ADDR")), "user_agent": (environ.get("HTTP_USER_AGENT") or "")[:1024]}
            actor = {**{k: v for k, v in extra.items() if v}, **actor}
        tenant = self.tenant(environ) if self.tenant is not None else None
        outer = _current.get()
        return AuditContext(
            actor=actor or outer.actor, tenant=tenant or outer.tenant, request_id=request_id,
            trace_id=trace_id or outer.trace_id, span_id=span_id or outer.span_id,
        ), request_id

    def _access(self, environ: Environ, status: int, started: float, context: AuditContext, state: RequestState) -> None:
        try:
            method = str(environ.get("REQUEST_METHOD", "GET"))
            path = str(environ.get("PATH_INFO", "")) or "/"
            if not wants_access(self.access_events, method, path):
                return
            fields = access_event(action=self.action, method=method, path=path, route=None, status=status,
                                  duration=time.perf_counter() - started, context=context, late_actor=state.actor)
        except Exception:
            _log.exception("trailseal middleware: cannot build the access event")
            return
        emit_safely(self.client, fields)


class _Response:
    """The app's response iterable, iterated inside the request's context; emits on ``close``."""

    def __init__(self, body: Iterable[bytes], run: contextvars.Context, done: Callable[[], None]) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._run = run
        self._done: Callable[[], None] | None = done

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._run.run(iter, self._body)
        return self._run.run(next, self._iterator)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self._run.run(close)
        finally:
            done, self._done = self._done, None
            if done is not None:
                self._run.run(done)
