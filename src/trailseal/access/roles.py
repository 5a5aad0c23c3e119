"""Roles and the permissions they grant, per tenant.

A grant is ``(tenant, role)``; tenant ``*`` stands for every tenant, ``_system`` included. Roles
are independent sets (a producer cannot read, a reader cannot append); ``admin`` holds them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

SYSTEM_LOG = "_system"
ANY_TENANT = "*"


class Permission(StrEnum):
    """What a route needs; see :data:`trailseal.access.policy.RULES`."""

    PUBLIC = "public.read"  # checkpoints, tiles, verifier keys (anonymous when configured)
    APPEND = "events.append"  # POST /v1/events
    PROOFS = "proofs.read"  # inclusion / consistency proofs: hashes only, no event content
    SCHEMAS = "schemas.read"  # what producers must send
    READ = "events.read"  # events by id, search, timeline, quarantine, subjects, producers
    EXPORT = "events.export"  # export, bundles, archive reads
    VERIFY = "trail.verify"  # verification requests run by the server
    POLICY = "policy.read"  # retention policies, legal holds
    ADMIN = "tenant.admin"  # schemas, redaction, policies, holds, quarantine actions; unknown routes
    KEYS = "keys.manage"  # /v1/keys (needs a grant on "*")


class Role(StrEnum):
    """The four roles of the issue, in increasing order of reach."""

    PRODUCER = "producer"
    READER = "reader"
    AUDITOR = "auditor"
    ADMIN = "admin"


_P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.PRODUCER: frozenset({_P.PUBLIC, _P.APPEND, _P.PROOFS, _P.SCHEMAS}),
    Role.READER: frozenset({_P.PUBLIC, _P.PROOFS, _P.SCHEMAS, _P.READ}),
    Role.AUDITOR: frozenset(
        {_P.PUBLIC, _P.PROOFS, _P.SCHEMAS, _P.READ, _P.EXPORT, _P.VERIFY, _P.POLICY}
    ),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True, order=True)
class Grant:
    """``role`` on ``tenant`` (a log name, or ``*`` for every log)."""

    tenant: str
    role: Role

    def __str__(self) -> str:
        return f"{self.tenant}:{self.role}"

    @classmethod
    def parse(cls, text: str) -> Grant:
        """``TENANT:ROLE``, e.g. ``acme:reader`` or ``*:auditor``."""
        tenant, sep, role = text.strip().rpartition(":")
        if not sep or not tenant:
            raise ValueError(f"grant: want TENANT:ROLE (e.g. acme:reader), got {text!r}")
        try:
            return cls(tenant, Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise ValueError(f"grant: unknown role {role!r} in {text!r}; roles: {roles}") from None


def allows(grants: frozenset[Grant] | tuple[Grant, ...], permission: Permission, tenant: str) -> bool:
    """Whether any grant gives ``permission`` on ``tenant``.

    ``tenant`` ``*`` asks for a global permission: only ``*`` grants give it.
    """
    for grant in grants:
        if grant.tenant in (tenant, ANY_TENANT) and permission in ROLE_PERMISSIONS[grant.role]:
            return True
    return False
