"""``Gate``: authenticate, rate-limit and authorize one request against the policy table.

The server's ASGI middleware feeds it the request's headers, route template and tenants; the gate
raises :class:`~trailseal.core.errors.AuthenticationError` (401),
:class:`~trailseal.core.errors.PermissionDenied` (403) or
:class:`~trailseal.core.errors.RateLimited` (429), which ``server/problems.py`` turns into HTTP.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trailseal.access.apikeys import KeyStore, authenticate_key, key_id_of, looks_like_key
from trailseal.access.policy import Rule, Scope
from trailseal.access.principal import ANONYMOUS, Principal
from trailseal.access.ratelimit import RateLimiter
from trailseal.access.roles import ANY_TENANT, SYSTEM_LOG, Permission
from trailseal.core.errors import AuthenticationError, PermissionDenied, RateLimited

if TYPE_CHECKING:  # joserfc is imported only when OIDC is configured
    from trailseal.access.oidc import TokenVerifier

_RATE_NOTE_EVERY = 60.0  # seconds between two `access.rate_limited` records per caller


@dataclass(frozen=True)
class AccessConfig:
    """The gate's knobs (the server builds them from its settings)."""

    auth_required: bool = True
    public_verification: bool = True
    default_log: str = "default"
    rate_per_second: float = 0.0
    burst: int = 0


def bearer(headers: Mapping[str, str]) -> str | None:
    """The presented credential: ``Authorization: Bearer X`` or ``X-API-Key: X``."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, credential = value.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthenticationError("authorization: want 'Bearer <api key or token>'")
        return credential.strip()
    key = headers.get("x-api-key")
    return key.strip() if key is not None else None


def claimed_actor(credential: str | None) -> tuple[str, str]:
    """``(actor, type)`` to record for a credential that failed: the key id if it has one."""
    if credential is None:
        return "anonymous", "anonymous"
    if looks_like_key(credential):
        return key_id_of(credential) or "malformed-key", "api_key"
    return "unverified-token", "oidc"


def tenants_for(
    rule: Rule,
    path_params: Mapping[str, object],
    query: Iterable[tuple[str, str]],
    default_log: str,
) -> tuple[str, ...]:
    """The tenants a request acts on: ``{log}``, else every ``log`` query value, else default."""
    if rule.scope is Scope.GLOBAL:
        return (ANY_TENANT,)
    if rule.scope is Scope.LISTING:
        return ()
    log = path_params.get("log")
    if isinstance(log, str) and log:
        return (log,)
    values: list[str] = []
    for name, value in query:
        if name in ("log", "logs"):
            values.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(dict.fromkeys(values)) or (default_log,)


class Gate:
    """Decides each request. ``keys`` is consulted on every request: no cache to invalidate."""

    def __init__(
        self,
        config: AccessConfig,
        keys: KeyStore,
        *,
        tokens: TokenVerifier | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.keys = keys
        self.tokens = tokens
        self.now = now
        self.monotonic = monotonic
        self.limiter = RateLimiter(config.rate_per_second, config.burst, clock=monotonic)
        self._rate_noted: dict[str, float] = {}

    def authenticate(self, credential: str | None) -> Principal:
        """API keys here; JWTs go through :meth:`authenticate_token` (it may fetch a JWKS)."""
        if credential is None:
            return ANONYMOUS
        if looks_like_key(credential):
            return authenticate_key(self.keys, credential, self.now())
        if self.tokens is None:
            raise AuthenticationError("bearer token: OIDC is not configured on this server")
        return self.tokens.verify(credential)

    def is_public(self, rule: Rule) -> bool:
        """Whether anonymous callers may use ``rule``'s routes."""
        return rule.permission is Permission.PUBLIC and self.config.public_verification

    def rate_limit(self, principal: Principal) -> None:
        """Spend one of the caller's tokens; raise :class:`RateLimited` when there is none.

        Only the first refusal per caller and minute is recorded by self-audit (it is raised as
        :class:`FirstRateLimited`), so a flood cannot turn into a flood of ``_system`` events.
        """
        wait = self.limiter.take(principal.actor, principal.rate_per_second, principal.burst)
        if wait <= 0:
            return
        now = self.monotonic()
        first = now - self._rate_noted.get(principal.actor, float("-inf")) >= _RATE_NOTE_EVERY
        if first:
            if len(self._rate_noted) > 10_000:
                self._rate_noted.clear()
            self._rate_noted[principal.actor] = now
        error = FirstRateLimited if first else RateLimited
        raise error(f"rate limit: {principal.actor} is over its request rate", retry_after=wait)

    def authorize(self, principal: Principal, rule: Rule, tenants: tuple[str, ...]) -> None:
        """Raise unless ``principal`` holds ``rule.permission`` on every tenant."""
        if self.is_public(rule):
            return
        if not principal.authenticated:
            raise AuthenticationError("authentication required: send an API key or a bearer token")
        if rule.scope is Scope.LISTING:
            if not principal.grants:
                raise PermissionDenied(f"forbidden: {principal.actor} has no grant",
                                       permission=rule.permission)
            return
        for tenant in tenants:
            if rule.permission is Permission.APPEND and tenant == SYSTEM_LOG:
                raise PermissionDenied(
                    f"forbidden: log {SYSTEM_LOG!r} is written by the server only",
                    permission=rule.permission, tenant=tenant,
                )
            if not principal.allows(rule.permission, tenant):
                where = "every log (*)" if tenant == ANY_TENANT else f"log {tenant!r}"
                raise PermissionDenied(
                    f"forbidden: {principal.actor} lacks {rule.permission} on {where}",
                    permission=rule.permission, tenant=tenant,
                )

    def visible(self, principal: Principal, tenant: str) -> bool:
        """Whether listings may show ``tenant`` to ``principal``."""
        if not self.config.auth_required or self.config.public_verification:
            return True
        return principal.allows(Permission.PUBLIC, tenant)


class FirstRateLimited(RateLimited):
    """A :class:`RateLimited` that self-audit records (the first in a minute for the caller)."""
