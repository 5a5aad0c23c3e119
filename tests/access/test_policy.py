"""The policy table: classification rules and the documented matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailseal.access.policy import FALLBACK, OUTSIDE, RULES, Scope, classify, matrix_markdown
from trailseal.access.ratelimit import RateLimiter
from trailseal.access.roles import ROLE_PERMISSIONS, Permission, Role

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BEGIN, END = "<!-- role-matrix:begin -->", "<!-- role-matrix:end -->"


def test_docs_matrix_is_generated_from_the_table() -> None:
    text = DOC.read_text()
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert block == matrix_markdown(), (
        "docs/security.md role matrix is stale; regenerate with "
        "`python -m trailseal.access.policy`"
    )


@pytest.mark.parametrize(
    ("method", "template", "permission"),
    [
        ("POST", "/v1/events", Permission.APPEND),
        ("GET", "/v1/events", Permission.READ),
        ("HEAD", "/v1/events/{event_id}", Permission.READ),
        ("GET", "/v1/export", Permission.EXPORT),
        ("GET", "/v1/logs/{log}/tile/{path:path}", Permission.PUBLIC),
        ("GET", "/v1/logs/{log}/proofs/inclusion", Permission.PROOFS),
        ("GET", "/v1/schemas/{schema_id}", Permission.SCHEMAS),
        ("PUT", "/v1/schemas/{schema_id}", Permission.ADMIN),
        ("GET", "/v1/holds", Permission.POLICY),
        ("POST", "/v1/keys/{key_id}/rotate", Permission.KEYS),
        ("DELETE", "/v1/events/{event_id}", Permission.ADMIN),  # not named: fallback
        ("GET", "/v1/something-new", Permission.ADMIN),
        ("POST", "/v1", Permission.ADMIN),
    ],
)
def test_classify(method: str, template: str, permission: Permission) -> None:
    assert classify(method, template).permission is permission


def test_unknown_routes_are_admin_only_and_outside_v1_is_public() -> None:
    assert classify("GET", "/v1/brand-new/{log}") is FALLBACK
    assert classify("GET", "/healthz") is OUTSIDE and classify("GET", "/docs") is OUTSIDE
    assert classify("GET", "/v1x") is OUTSIDE
    allowed = [r for r in Role if FALLBACK.permission in ROLE_PERMISSIONS[r]]
    assert allowed == [Role.ADMIN]


def test_role_separation() -> None:
    producer, reader = ROLE_PERMISSIONS[Role.PRODUCER], ROLE_PERMISSIONS[Role.READER]
    auditor = ROLE_PERMISSIONS[Role.AUDITOR]
    assert Permission.READ not in producer and Permission.EXPORT not in producer
    assert Permission.APPEND not in reader and Permission.EXPORT not in reader
    assert Permission.APPEND not in auditor and Permission.ADMIN not in auditor
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    assert all(r.action == r.action.lower() and "." in r.action for r in RULES)
    assert {r.scope for r in RULES if r.path.startswith("/v1/keys")} == {Scope.GLOBAL}


def test_token_bucket() -> None:
    now = [0.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("k")
    assert wait == pytest.approx(0.5)
    assert limiter.take("other") == 0.0  # buckets are per caller
    now[0] += 0.5
    assert limiter.take("k") == 0.0
    assert limiter.take("k", rate=0) == 0.0  # unlimited override
    assert RateLimiter(0).take("k") == 0.0
    small = RateLimiter(1.0, 1, clock=lambda: now[0], max_buckets=2)
    for name in "abc":
        small.take(name)
    now[0] += 10  # a, b and c refill: idle full buckets are forgotten past max_buckets
    small.take("d")
    assert set(small._buckets) == {"d"}
