"""``Principal``: who is calling, with which grants, as the access layer resolved it."""

from __future__ import annotations

from dataclasses import dataclass

from trailseal.access.roles import Grant, Permission, allows


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (or the anonymous one).

    ``actor`` is what self-audit records: an API key's public id (``ts_3f9a1c2b7d4e``), an OIDC
    token's subject, or ``anonymous``. ``rate_per_second`` / ``burst`` override the server's
    default token bucket for this caller when set.
    """

    actor: str
    kind: str  # "api_key" | "oidc" | "anonymous"
    grants: frozenset[Grant]
    rate_per_second: float | None = None
    burst: int | None = None

    @property
    def authenticated(self) -> bool:
        """False only for the anonymous caller."""
        return self.kind != "anonymous"

    def allows(self, permission: Permission, tenant: str) -> bool:
        """Whether a grant gives ``permission`` on ``tenant`` (``*``: a global permission)."""
        return allows(self.grants, permission, tenant)


ANONYMOUS = Principal("anonymous", "anonymous", frozenset())
