"""The authorization table: ``(method, route template)`` → permission, tenant scope, audit action.

Rules are matched against the route *template* the request resolved to (``/v1/events/{event_id}``,
not the concrete path), so routes added later by other features are covered without editing their
modules: a rule whose path ends in ``*`` matches every template with that prefix, and the longest
matching rule wins (an exact path beats a prefix of the same length). A ``/v1`` route that no rule
names falls back to :data:`FALLBACK`: admin only. Paths outside ``/v1`` (health, API docs) are
public and not audited.

Each rule also says whether an *allowed* request is recorded in the ``_system`` log
(``audited``); a denied one always is. Ingest is not recorded (the events are the trail) and
neither is the public verification material (witnesses and monitors poll it).

docs/security.md carries :func:`matrix_markdown`'s output; a test keeps the two identical.
Regenerate with ``python -m trailseal.access.policy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trailseal.access.roles import ROLE_PERMISSIONS, Permission, Role

_READ = frozenset({"GET", "HEAD"})
_WRITE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANY = frozenset({"*"})


class Scope(StrEnum):
    """Which tenant a rule's permission is checked on."""

    TENANT = "tenant"  # the {log} path parameter, else every `log` query value, else the default log
    GLOBAL = "global"  # needs a grant on "*" (key management)
    LISTING = "listing"  # any grant will do; the route shows only the caller's tenants


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table."""

    methods: frozenset[str]
    path: str  # a route template; a trailing "*" makes it a prefix
    permission: Permission
    action: str  # self-audit action, dotted lowercase
    audited: bool = True
    scope: Scope = Scope.TENANT

    def matches(self, method: str, template: str) -> bool:
        """Whether this rule covers ``method`` on ``template``."""
        if "*" not in self.methods and method not in self.methods:
            return False
        if self.path.endswith("*"):
            return template.startswith(self.path[:-1])
        return template == self.path

    @property
    def specificity(self) -> tuple[int, bool]:
        """Longer paths first; an exact path beats a prefix of the same length."""
        return (len(self.path.rstrip("*")), not self.path.endswith("*"))


def _area(prefix: str, name: str, read: Permission, read_action: str) -> tuple[Rule, ...]:
    """Reads need ``read``; every other method on the area is a tenant admin action."""
    return (
        Rule(_READ, prefix + "*", read, read_action),
        Rule(_WRITE, prefix + "*", Permission.ADMIN, f"admin.{name}.change"),
    )


P = Permission
RULES: tuple[Rule, ...] = (
    # ingest: the events are the record; only denied attempts are audited
    Rule(frozenset({"POST"}), "/v1/events", P.APPEND, "trail.append", audited=False),
    # reads of the trail
    Rule(_READ, "/v1/events", P.READ, "trail.read.search"),
    Rule(_READ, "/v1/events/*", P.READ, "trail.read.event"),
    Rule(_READ, "/v1/timeline*", P.READ, "trail.read.timeline"),
    Rule(_ANY, "/v1/export*", P.EXPORT, "trail.export"),
    Rule(_ANY, "/v1/bundles*", P.EXPORT, "trail.bundle"),
    Rule(_ANY, "/v1/logs/{log}/bundle*", P.EXPORT, "trail.bundle"),
    # public verification material (anonymous when public_verification is on)
    Rule(_READ, "/v1/logs", P.PUBLIC, "trail.logs.list", audited=False, scope=Scope.LISTING),
    Rule(_READ, "/v1/logs/{log}/checkpoint*", P.PUBLIC, "trail.checkpoint", audited=False),
    Rule(_READ, "/v1/logs/{log}/tile/*", P.PUBLIC, "trail.tile", audited=False),
    Rule(_READ, "/v1/logs/{log}/keys*", P.PUBLIC, "trail.keys", audited=False),
    # verification requests
    Rule(_READ, "/v1/logs/{log}/proofs/*", P.PROOFS, "trail.verify.proof"),
    Rule(_ANY, "/v1/verify*", P.VERIFY, "trail.verify"),
    Rule(_ANY, "/v1/logs/{log}/verify*", P.VERIFY, "trail.verify"),
    # pipeline, retention: reads by role, changes by the tenant's admin
    *_area("/v1/schemas", "schemas", P.SCHEMAS, "schema.read"),
    Rule(frozenset({"POST"}), "/v1/schemas/check", P.SCHEMAS, "schema.check"),  # a dry run
    *_area("/v1/pipeline", "pipeline", P.POLICY, "policy.read.pipeline"),
    *_area("/v1/quarantine", "quarantine", P.READ, "trail.read.quarantine"),
    *_area("/v1/subjects", "subjects", P.READ, "trail.read.subjects"),
    *_area("/v1/producers", "producers", P.READ, "trail.read.producers"),
    *_area("/v1/redaction", "redaction", P.POLICY, "policy.read.redaction"),
    *_area("/v1/retention", "retention", P.POLICY, "policy.read.retention"),
    *_area("/v1/holds", "holds", P.POLICY, "policy.read.holds"),
    *_area("/v1/archive", "archive", P.EXPORT, "trail.read.archive"),
    # key management: global admins only
    Rule(_READ, "/v1/keys*", P.KEYS, "access.keys.list", scope=Scope.GLOBAL),
    Rule(frozenset({"POST"}), "/v1/keys", P.KEYS, "access.keys.create", scope=Scope.GLOBAL),
    Rule(frozenset({"DELETE"}), "/v1/keys/*", P.KEYS, "access.keys.revoke", scope=Scope.GLOBAL),
    Rule(frozenset({"POST"}), "/v1/keys/{key_id}/rotate", P.KEYS, "access.keys.rotate",
         scope=Scope.GLOBAL),
)

#: What a ``/v1`` route that no rule names requires: the tenant's admin.
FALLBACK = Rule(_ANY, "/v1/*", P.ADMIN, "admin.request")
#: Paths outside ``/v1``: health, readiness, API docs.
OUTSIDE = Rule(_ANY, "*", P.PUBLIC, "public", audited=False)


def classify(method: str, template: str) -> Rule:
    """The rule for a request (``HEAD`` is treated as ``GET``)."""
    if not (template == "/v1" or template.startswith("/v1/")):
        return OUTSIDE
    method = "GET" if method == "HEAD" else method
    best: Rule | None = None
    for rule in RULES:
        if rule.matches(method, template) and (best is None or rule.specificity > best.specificity):
            best = rule
    return best or FALLBACK


def roles_for(rule: Rule, *, public_verification: bool = True) -> list[str]:
    """Who may call routes under ``rule``: role names, plus ``anonymous`` when public."""
    who = [role.value for role in Role if rule.permission in ROLE_PERMISSIONS[role]]
    if rule.permission is Permission.PUBLIC and public_verification:
        who.insert(0, "anonymous")
    return who


def matrix_markdown() -> str:
    """The role-by-endpoint matrix of docs/security.md, generated from :data:`RULES`."""
    roles = ["anonymous", *(role.value for role in Role)]
    lines = [
        "| method | route | permission | scope | audited | " + " | ".join(roles) + " |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in roles) + " |",
    ]
    for rule in (*RULES, FALLBACK):
        who = set(roles_for(rule))
        methods = ",".join(sorted(rule.methods)).replace("*", "any")
        marks = " | ".join("yes" if role in who else "—" for role in roles)
        audited = "yes" if rule.audited else "denials"
        path = rule.path.replace("*", "…")
        lines.append(
            f"| {methods} | `{path}` | `{rule.permission}` | {rule.scope} | {audited} | {marks} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(matrix_markdown(), end="")
