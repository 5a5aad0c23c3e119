"""Access control in front of every route: a pure-ASGI middleware over :mod:`trailseal.access`.

For each HTTP request under ``/v1`` it resolves the route *template* (from the application's own
routes, so routes added later are covered), looks up the policy rule, derives the tenants
(``{log}``, ``log`` query values, or the default log), authenticates the caller (API key or OIDC
JWT), spends a rate-limit token, authorizes, and records the request in the ``_system`` log
when the rule is audited — or when it is denied. Refusals are raised as
``trailseal.core.errors`` exceptions and rendered by :mod:`trailseal.server.problems`.

With ``auth_required`` off (development only) every request passes as an anonymous admin and
nothing is self-audited: there is no actor to record.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.routing import BaseRoute, compile_path

from trailseal.access.apikeys import KeyStore, looks_like_key
from trailseal.access.gate import (
    AccessConfig,
    FirstRateLimited,
    Gate,
    bearer,
    claimed_actor,
    tenants_for,
)
from trailseal.access.policy import Rule, classify
from trailseal.access.principal import Principal
from trailseal.access.roles import ANY_TENANT, SYSTEM_LOG, Grant, Role
from trailseal.access.selfaudit import AccessRecord, AuditRecorder
from trailseal.access.stores import open_key_store
from trailseal.core.errors import AccessError, RateLimited
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.runner import Sequencer
from trailseal.server import problems
from trailseal.server.settings import Settings
from trailseal.storage.base import Store

if TYPE_CHECKING:
    from trailseal.access.oidc import OIDCConfig

_log = logging.getLogger("trailseal.server")

SCOPE_KEY = "trailseal.principal"
#: The caller when ``auth_required`` is off: an admin on every tenant, recorded nowhere.
UNAUTHENTICATED = Principal("unauthenticated", "disabled", frozenset({Grant(ANY_TENANT, Role.ADMIN)}))

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass
class Access:
    """What a serving process holds for access control."""

    settings: Settings
    keys: KeyStore
    gate: Gate
    recorder: AuditRecorder | None

    @property
    def enabled(self) -> bool:
        """Whether requests are authenticated (``auth_required``)."""
        return self.settings.auth_required

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued self-audit event is committed."""
        if self.recorder is not None:
            self.recorder.flush(timeout)

    def close(self) -> None:
        """Release the key store."""
        self.keys.close()


def oidc_config(settings: Settings) -> OIDCConfig | None:
    """The OIDC part of ``settings``, or ``None`` when no issuer is configured."""
    if not settings.oidc_issuer:
        return None
    from trailseal.access.oidc import OIDCConfig, parse_group_grants

    return OIDCConfig(
        issuer=settings.oidc_issuer,
        audience=settings.oidc_audience,
        jwks=settings.oidc_jwks,
        algorithms=tuple(a.strip() for a in settings.oidc_algorithms.split(",") if a.strip()),
        subject_claim=settings.oidc_subject_claim,
        grants_claim=settings.oidc_grants_claim,
        group_claim=settings.oidc_group_claim,
        group_grants=parse_group_grants(settings.oidc_group_grants),
        leeway_seconds=settings.oidc_leeway_seconds,
        cache_seconds=settings.oidc_jwks_cache_seconds,
    )


def _token_verifier(config: OIDCConfig) -> Any:
    from trailseal.access.oidc import TokenVerifier

    return TokenVerifier(config)


def build_access(
    settings: Settings, store: Store, sequencer: Sequencer, *, clock: Callable[[], str]
) -> Access:
    """Key store, gate and self-audit recorder for a serving process."""
    keys = open_key_store(store, settings.data_dir)
    oidc = oidc_config(settings)
    gate = Gate(
        AccessConfig(
            auth_required=settings.auth_required,
            public_verification=settings.public_verification,
            default_log=settings.default_log,
            rate_per_second=settings.rate_limit_per_second,
            burst=settings.rate_limit_burst,
        ),
        keys,
        tokens=_token_verifier(oidc) if oidc is not None else None,
    )

    def submit(event: dict[str, Any]) -> concurrent.futures.Future[Any]:
        prepared = prepare(event, log=SYSTEM_LOG, received_at=clock())
        return sequencer.submit_future(SYSTEM_LOG, [prepared])

    recorder = (
        AuditRecorder(submit, clock=clock, server_name=settings.server_name)
        if settings.auth_required
        else None
    )
    return Access(settings, keys, gate, recorder)


@dataclass(frozen=True)
class RouteEntry:
    """One route of the application, flattened: its template, regex and methods."""

    template: str
    regex: re.Pattern[str]
    convertors: dict[str, Any]
    methods: frozenset[str] | None  # None: any method (mounts)


def _flatten(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[RouteEntry]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps routers nested
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from _flatten(inner.routes, prefix + str(getattr(context, "prefix", "") or ""))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        methods = getattr(route, "methods", None)
        if methods is None and hasattr(route, "routes"):  # a Mount: everything below its path
            template = prefix + path.rstrip("/") + "/{path:path}"
        else:
            template = prefix + path
        regex, _, convertors = compile_path(template)
        yield RouteEntry(template, regex, convertors,
                         frozenset(m.upper() for m in methods) if methods else None)


def route_table(routes: Sequence[BaseRoute]) -> list[RouteEntry]:
    """Every route of an application (nested routers flattened), in matching order."""
    return list(_flatten(routes))


def resolve(table: Sequence[RouteEntry], method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The template and path parameters ``path`` resolves to (the path itself if none)."""
    method = "GET" if method == "HEAD" else method
    partial: tuple[str, dict[str, Any]] | None = None
    for entry in table:
        match = entry.regex.match(path)
        if match is None:
            continue
        params = {k: entry.convertors[k].convert(v) for k, v in match.groupdict().items()}
        if entry.methods is None or method in entry.methods:
            return entry.template, params
        if partial is None:
            partial = (entry.template, params)
    return partial or (path, {})


def principal_of(request: Request) -> Principal:
    """The caller the middleware resolved for ``request``."""
    found = request.scope.get(SCOPE_KEY)
    return found if isinstance(found, Principal) else UNAUTHENTICATED


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


class AccessControl:
    """The middleware; ``routes`` are the application's routes (read at each request, so routes
    included after construction count too)."""

    def __init__(self, app: Any, *, routes: Sequence[BaseRoute], access: Access) -> None:
        self.app = app
        self.routes = routes
        self.access = access
        self.default_log = access.settings.default_log
        self._table: list[RouteEntry] | None = None  # built at the first request

    def _template(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        if self._table is None:
            self._table = route_table(self.routes)
        return resolve(self._table, scope["method"], scope["path"])

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.access.enabled:
            scope[SCOPE_KEY] = UNAUTHENTICATED
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not (path == "/v1" or path.startswith("/v1/")):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        template, params = self._template(scope)
        rule = classify(method, template)
        query_string = scope.get("query_string", b"").decode("latin-1")
        tenants = tenants_for(
            rule, params, parse_qsl(query_string, keep_blank_values=True), self.default_log
        )
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        gate = self.access.gate
        credential: str | None = None
        principal: Principal | None = None
        try:
            credential = bearer(headers)
            if credential is not None and not looks_like_key(credential):
                principal = await asyncio.to_thread(gate.authenticate, credential)
            else:
                principal = gate.authenticate(credential)
            if principal.authenticated:
                gate.rate_limit(principal)
            gate.authorize(principal, rule, tenants)
        except AccessError as exc:
            if not isinstance(exc, RateLimited) or isinstance(exc, FirstRateLimited):
                actor, kind = (
                    (principal.actor, principal.kind)
                    if principal is not None and principal.authenticated
                    else claimed_actor(credential)
                )
                response = problems.to_response(exc)
                action = "access.rate_limited" if isinstance(exc, RateLimited) else rule.action
                self._record(scope, headers, rule, tenants, template, query_string, actor, kind,
                             response.status_code, action=action, detail=str(exc))
            else:
                response = problems.to_response(exc)
            await response(scope, receive, send)
            return
        scope[SCOPE_KEY] = principal
        if not rule.audited:
            await self.app(scope, receive, send)
            return
        await self._audited(scope, receive, send, headers, rule, tenants, template, query_string,
                            principal)

    async def _audited(self, scope: Scope, receive: Any, send: Any, headers: dict[str, str],
                       rule: Rule, tenants: tuple[str, ...], template: str, query_string: str,
                       principal: Principal) -> None:
        state = {"started": False, "swallow": False}

        async def send_audited(message: Message) -> None:
            if state["swallow"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                try:
                    self._record(scope, headers, rule, tenants, template, query_string,
                                 principal.actor, principal.kind, int(message["status"]),
                                 action=rule.action, strict=True)
                except Exception as exc:  # not recorded: do not serve the response
                    state["swallow"] = True
                    await problems.to_response(exc)(scope, _no_body, send)
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_audited)
        except BaseException:
            if not state["started"]:
                self._record(scope, headers, rule, tenants, template, query_string,
                             principal.actor, principal.kind, 500, action=rule.action)
            raise

    def _record(self, scope: Scope, headers: dict[str, str], rule: Rule, tenants: tuple[str, ...],
                template: str, query_string: str, actor: str, kind: str, status: int, *,
                action: str, detail: str | None = None, strict: bool = False) -> None:
        recorder = self.access.recorder
        if recorder is None:
            return
        client = scope.get("client")
        record = AccessRecord(
            actor=actor, actor_type=kind, action=action, tenants=tenants,
            outcome=_outcome(status), method=scope["method"], path=scope["path"], route=template,
            query=query_string, status=status, ip=client[0] if client else None,
            user_agent=headers.get("user-agent"), request_id=headers.get("x-request-id"),
            detail=detail,
        )
        try:
            recorder.record(record)
        except Exception:
            if strict:
                raise
            _log.exception("self-audit: could not record %s by %s", action, actor)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
