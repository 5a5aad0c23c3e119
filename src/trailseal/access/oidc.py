"""OIDC / JWT bearer tokens: signature (JWKS), issuer, audience, expiry; claims → grants.

Verification uses ``joserfc``; nothing here implements cryptography. The JWKS comes from a file
(re-read when its modification time changes, so removing a key takes effect at once) or an
``https://`` URL (cached for ``cache_seconds``; an unknown ``kid`` triggers a refresh at most
every 30 seconds). Only asymmetric algorithms are accepted, never ``none`` or ``HS*``, so a
public key can never be used as an HMAC secret.

Claim mapping (configurable):

* ``grants_claim`` (default ``trailseal_grants``): ``{"acme": "reader"}``,
  ``{"acme": ["reader", "producer"]}``, ``["acme:reader", "*:auditor"]`` or a space-separated
  string of ``tenant:role``;
* ``group_claim`` (default ``groups``) with ``group_grants``
  ``"sec-team=*:auditor;acme-dev=acme:reader,acme:producer"``: each group the token lists adds
  the grants configured for it.

A token with no grant is valid but can do nothing beyond the public material.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from trailseal.access.principal import Principal
from trailseal.access.roles import Grant, Role
from trailseal.core.errors import AuthenticationError

_ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                         "ES512", "EdDSA", "Ed25519"})
_REFRESH_UNKNOWN_KID = 30.0


def parse_group_grants(text: str) -> dict[str, tuple[Grant, ...]]:
    """``"group=tenant:role,tenant:role;group2=*:auditor"`` → ``{group: grants}``."""
    out: dict[str, tuple[Grant, ...]] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        group, sep, grants = part.partition("=")
        if not sep or not group.strip():
            raise ValueError(f"oidc group grants: want GROUP=TENANT:ROLE[,...], got {part!r}")
        out[group.strip()] = tuple(Grant.parse(g) for g in grants.split(",") if g.strip())
    return out


@dataclass(frozen=True)
class OIDCConfig:
    """Which tokens to accept and how their claims become grants."""

    issuer: str
    audience: str
    jwks: str  # file path or https:// URL
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
    subject_claim: str = "sub"
    grants_claim: str = "trailseal_grants"
    group_claim: str = "groups"
    group_grants: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)
    leeway_seconds: int = 30
    cache_seconds: int = 300

    def __post_init__(self) -> None:
        weak = [a for a in self.algorithms if a not in _ASYMMETRIC]
        if weak:
            raise ValueError(f"oidc: algorithms {weak} are not asymmetric signature algorithms")
        if not self.issuer or not self.audience or not self.jwks:
            raise ValueError("oidc: issuer, audience and jwks are all required")


def _grants_from_claim(value: Any) -> set[Grant]:
    grants: set[Grant] = set()
    if isinstance(value, Mapping):
        for tenant, roles in value.items():
            for role in roles if isinstance(roles, list) else [roles]:
                try:
                    grants.add(Grant(str(tenant), Role(str(role))))
                except ValueError:
                    continue  # unknown roles grant nothing
    elif isinstance(value, list | str):
        items = value.split() if isinstance(value, str) else value
        for item in items:
            try:
                grants.add(Grant.parse(str(item)))
            except ValueError:
                continue
    return grants


class JWKSSource:
    """The key set, from a file or a URL, reloaded as described in the module docstring."""

    def __init__(self, location: str, cache_seconds: int, *,
                 fetch: Callable[[str], bytes] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.location = location
        self.cache_seconds = cache_seconds
        self.fetch = fetch or self._http_get
        self.clock = clock
        self._keys: KeySet | None = None
        self._stamp: float | int = -1
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def is_url(self) -> bool:
        """Whether the JWKS comes over HTTP(S)."""
        return self.location.startswith(("https://", "http://"))

    @staticmethod
    def _http_get(url: str) -> bytes:
        response = httpx.get(url, timeout=10, follow_redirects=False)
        response.raise_for_status()
        return response.content

    def keys(self, *, force: bool = False) -> KeySet:
        """The current key set (reloaded when stale or when ``force`` allows a refresh)."""
        with self._lock:
            now = self.clock()
            if self.is_url:
                stale = now - self._loaded_at > self.cache_seconds
                forced = force and now - self._loaded_at > _REFRESH_UNKNOWN_KID
                if self._keys is None or stale or forced:
                    self._keys = KeySet.import_key_set(orjson.loads(self.fetch(self.location)))
                    self._loaded_at = now
            else:
                stamp = os.stat(self.location).st_mtime_ns
                if self._keys is None or stamp != self._stamp:
                    self._keys = KeySet.import_key_set(orjson.loads(Path(self.location).read_bytes()))
                    self._stamp = stamp
            return self._keys


def _header(token: str) -> dict[str, Any]:
    """The (unverified) JOSE header, used only to pick the key."""
    try:
        first = token.split(".", 1)[0]
        value = orjson.loads(base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise AuthenticationError("bearer token: malformed JWT") from None
    if not isinstance(value, dict):
        raise AuthenticationError("bearer token: malformed JWT header")
    return value


class TokenVerifier:
    """Verifies a bearer JWT and maps it to a :class:`Principal`."""

    def __init__(self, config: OIDCConfig, *, source: JWKSSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.source = source or JWKSSource(config.jwks, config.cache_seconds)
        self.clock = clock

    def _key_for(self, header: Mapping[str, Any], keys: KeySet) -> Any:
        kid = header.get("kid")
        if kid is None:
            if len(keys.keys) != 1:
                raise AuthenticationError("bearer token: no kid and the JWKS has several keys")
            return keys.keys[0]
        for key in keys.keys:
            if key.kid == kid:
                return key
        return None

    def verify(self, token: str) -> Principal:
        """The token's principal; :class:`AuthenticationError` for any failed check."""
        cfg = self.config
        header = _header(token)
        if header.get("alg") not in cfg.algorithms:
            raise AuthenticationError(f"bearer token: algorithm {header.get('alg')!r} not accepted")
        try:
            key = self._key_for(header, self.source.keys())
            if key is None:  # maybe the IdP rotated: refresh once (rate-limited)
                key = self._key_for(header, self.source.keys(force=True))
            if key is None:
                raise AuthenticationError(f"bearer token: unknown key id {header.get('kid')!r}")
            decoded = jwt.decode(token, key, algorithms=list(cfg.algorithms))
            jwt.JWTClaimsRegistry(
                now=int(self.clock()),
                leeway=cfg.leeway_seconds,
                iss={"essential": True, "value": cfg.issuer},
                aud={"essential": True, "value": cfg.audience},
                exp={"essential": True},
            ).validate(decoded.claims)
        except JoseError as exc:
            raise AuthenticationError(f"bearer token: {exc.error}") from None
        except (OSError, ValueError, httpx.HTTPError) as exc:
            raise AuthenticationError(f"bearer token: cannot load the JWKS: {exc}") from None
        claims = decoded.claims
        subject = claims.get(cfg.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(f"bearer token: claim {cfg.subject_claim!r} missing")
        grants = _grants_from_claim(claims.get(cfg.grants_claim))
        groups = claims.get(cfg.group_claim)
        if isinstance(groups, list):
            for group in groups:
                grants.update(cfg.group_grants.get(str(group), ()))
        return Principal(actor=subject[:256], kind="oidc", grants=frozenset(grants))
