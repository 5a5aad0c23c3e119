"""Access control over HTTP: the generated role-by-endpoint-by-tenant matrix, tenant canaries,
key lifecycle, rate limits, OIDC tokens, and self-audit counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.server.access_world import PRINCIPALS, TENANT_A, TENANT_B, World, open_world
from trailseal.access.policy import Rule, Scope, classify
from trailseal.access.roles import Grant, Permission, allows
from trailseal.server.access import route_table

PROBLEM_KEYS = {"type", "title", "status", "detail", "permission"}
# Tenant B's principals mirror tenant A's; the matrix runs A's roles against both tenants.
MATRIX_PRINCIPALS = [p for p in PRINCIPALS if not p.endswith("@b")]
SYSTEM = "_system"

# Hand-written expectations for the routes this feature knows (the generated matrix below must
# agree with them, so a wrong policy table cannot pass by being self-consistent).
ALL = {"anonymous", "producer", "reader", "auditor", "admin"}
KNOWN: dict[tuple[str, str], set[str]] = {
    ("POST", "/v1/events"): {"producer", "admin"},
    ("GET", "/v1/events/{event_id}"): {"reader", "auditor", "admin"},
    ("GET", "/v1/logs"): ALL,
    ("GET", "/v1/logs/{log}/checkpoint"): ALL,
    ("GET", "/v1/logs/{log}/tile/{path:path}"): ALL,
    ("GET", "/v1/logs/{log}/proofs/inclusion"): {"producer", "reader", "auditor", "admin"},
    ("GET", "/v1/logs/{log}/proofs/consistency"): {"producer", "reader", "auditor", "admin"},
    ("GET", "/v1/keys"): {"admin@*"},
    ("POST", "/v1/keys"): {"admin@*"},
    ("GET", "/v1/keys/{key_id}"): {"admin@*"},
    ("DELETE", "/v1/keys/{key_id}"): {"admin@*"},
    ("POST", "/v1/keys/{key_id}/rotate"): {"admin@*"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world, context = open_world(tmp_path_factory.mktemp("access"))
    yield world
    context.__exit__(None, None, None)


def grants_of(principal: str) -> frozenset[Grant]:
    return frozenset(Grant.parse(g) for g in PRINCIPALS[principal])


def expected(principal: str, rule: Rule, tenant: str) -> bool:
    """The policy, restated: who may call a route of ``rule`` on ``tenant``."""
    grants = grants_of(principal)
    if rule.permission is Permission.PUBLIC:
        return True  # public_verification is on by default
    if not grants:
        return False
    if rule.scope is Scope.GLOBAL:
        return allows(grants, rule.permission, "*")
    if rule.scope is Scope.LISTING:
        return True
    return allows(grants, rule.permission, tenant)


def hand_expected(known: set[str], principal: str, tenant: str) -> bool:
    """What KNOWN says: global-admin-only routes, public ones, or roles on the own tenant."""
    if "admin@*" in known:
        return principal == "admin@*"
    if "anonymous" in known:
        return True
    role, _, where = principal.partition("@")
    on_tenant = where == "*" or (where == "a") == (tenant == TENANT_A)
    return role in known and on_tenant


def v1_routes(world: World) -> list[tuple[str, str]]:
    """Every (method, template) under /v1 in the app as it is now (later routes included)."""
    access_mw = world.client.app.app  # type: ignore[attr-defined]
    out = []
    for entry in route_table(access_mw.routes):
        if not entry.template.startswith("/v1"):
            continue
        for method in sorted(entry.methods or {"GET"}):
            if method != "HEAD":
                out.append((method, entry.template))
    return out


def _openapi(world: World) -> dict[str, Any]:
    if not hasattr(world, "_spec"):
        world._spec = world.client.get("/openapi.json").json()  # type: ignore[attr-defined]
    return world._spec  # type: ignore[attr-defined, no-any-return]


def build_request(world: World, method: str, template: str, tenant: str,
                  event_id: str | None = None) -> dict[str, Any]:
    """A plausible request for any route: path and required query parameters filled in."""
    params: dict[str, Any] = {}
    path = template
    values = {"log": tenant, "event_id": event_id or world.event_ids[tenant][0],
              "path": "0/000.p/1"}
    if "{key_id}" in template:
        values["key_id"] = world.new_key(f"{tenant}:reader")[1]
    while "{" in path:
        start = path.index("{")
        end = path.index("}", start)
        name = path[start + 1 : end].split(":")[0]
        path = path[:start] + str(values.get(name, "x")) + path[end + 1 :]
    if "{log}" not in template:
        params["log"] = tenant
    operation = _openapi(world).get("paths", {}).get(template, {}).get(method.lower(), {})
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "query" and parameter.get("required") and parameter["name"] != "log":
            kind = parameter.get("schema", {}).get("type")
            params[parameter["name"]] = {"integer": 1, "boolean": "false", "number": 1}.get(kind, "x")
    if template.endswith("/proofs/inclusion"):
        params["leaf_index"] = 0
    if template.endswith("/proofs/consistency"):
        params.update(first=1, second=2)
    body: Any = None
    if (method, template) == ("POST", "/v1/events"):
        from tests.factories import make_event
        body = make_event()
    elif (method, template) == ("POST", "/v1/keys"):
        body = {"name": "matrix", "grants": [f"{tenant}:reader"]}
    elif method in ("POST", "PUT", "PATCH"):
        body = {}
    return {"method": method, "url": path, "params": params, "json": body}


def assert_denied_body(response: Any, world: World) -> None:
    body = response.json()
    assert set(body) <= PROBLEM_KEYS, body
    for marker in world.markers.values():
        assert marker not in response.text


def test_matrix_role_by_endpoint_by_tenant(world: World) -> None:
    routes = v1_routes(world)
    assert ("POST", "/v1/events") in routes and ("GET", "/v1/keys") in routes
    cells = 0
    for method, template in routes:
        rule = classify(method, template)
        for principal in MATRIX_PRINCIPALS:
            for tenant in (TENANT_A, TENANT_B):
                allowed = expected(principal, rule, tenant)
                known = KNOWN.get((method, template))
                if known is not None:
                    assert hand_expected(known, principal, tenant) == allowed, (
                        method, template, principal, tenant)
                response = world.client.request(
                    headers=world.headers(principal),
                    **build_request(world, method, template, tenant),
                )
                cell = (method, template, principal, tenant, response.status_code, response.text[:200])
                if allowed:
                    assert response.status_code not in (401, 403), cell
                    if known is not None:
                        assert 200 <= response.status_code < 300, cell
                else:
                    assert response.status_code == (401 if principal == "anonymous" else 403), cell
                    assert_denied_body(response, world)
                cells += 1
    assert cells == len(routes) * len(MATRIX_PRINCIPALS) * 2


def test_nobody_appends_to_system_log(world: World) -> None:
    from tests.factories import make_event

    for principal in ("admin@*", "producer@a"):
        response = world.client.post("/v1/events", params={"log": SYSTEM}, json=make_event(),
                                     headers=world.headers(principal))
        assert response.status_code == 403
        assert "written by the server only" in response.json()["detail"]


def test_multiple_log_parameters_need_every_tenant(world: World) -> None:
    event_id = world.event_ids[TENANT_A][0]
    both = world.client.get(f"/v1/events/{event_id}", params=[("log", TENANT_B), ("log", TENANT_A)],
                            headers=world.headers("reader@b"))
    assert both.status_code == 403
    listed = world.client.get(f"/v1/events/{event_id}", params={"log": f"{TENANT_B},{TENANT_A}"},
                              headers=world.headers("reader@b"))
    assert listed.status_code == 403


def test_tenant_canaries_never_cross(world: World) -> None:
    """Every GET route, asked by tenant B's principals about B, about A, and with A's event ids:
    tenant A's marker never appears in a body or a header (errors included)."""
    marker_a = world.markers[TENANT_A]
    seen = 0
    for principal in ("producer@b", "reader@b", "auditor@b", "admin@b"):
        for method, template in v1_routes(world):
            if method != "GET":
                continue
            for tenant in (TENANT_B, TENANT_A):
                for event_id in (None, world.event_ids[TENANT_A][1]):
                    request = build_request(world, method, template, tenant, event_id=event_id) \
                        if tenant == TENANT_A else _b_with_a_ids(world, method, template, event_id)
                    request["params"].setdefault("q", "canary")
                    response = world.client.request(headers=world.headers(principal), **request)
                    text = response.text + " ".join(f"{k}: {v}" for k, v in response.headers.items())
                    assert marker_a not in text, (principal, template, tenant, response.text[:300])
                    seen += 1
    # and B can read its own data, so the check is not vacuous
    own = world.client.get(f"/v1/events/{world.event_ids[TENANT_B][0]}", params={"log": TENANT_B},
                           headers=world.headers("reader@b"))
    assert own.status_code == 200 and world.markers[TENANT_B] in own.text
    assert seen > 50


def _b_with_a_ids(world: World, method: str, template: str, event_id: str | None) -> dict[str, Any]:
    request = build_request(world, method, template, TENANT_B)
    if event_id is not None:
        if "{event_id}" in template:
            request = build_request(world, method, template, TENANT_B, event_id=event_id)
        request["params"]["event_id"] = event_id
    return request


def test_error_bodies_for_another_tenants_ids(world: World) -> None:
    a_id = world.event_ids[TENANT_A][0]
    response = world.client.get(f"/v1/events/{a_id}", params={"log": TENANT_B},
                                headers=world.headers("admin@b"))
    assert response.status_code == 404
    proof = world.client.get(f"/v1/logs/{TENANT_B}/proofs/inclusion", params={"event_id": a_id},
                             headers=world.headers("auditor@b"))
    assert proof.status_code == 404
    assert world.markers[TENANT_A] not in response.text + proof.text


# -- key lifecycle over HTTP ------------------------------------------------------------------------
def test_keys_api_create_use_rotate_revoke(world: World) -> None:
    admin = world.headers("admin@*")
    created = world.client.post("/v1/keys", json={"name": "svc", "grants": [f"{TENANT_A}:reader"],
                                                  "expires": "1d"}, headers=admin)
    assert created.status_code == 201, created.text
    token, key_id = created.json()["key"], created.json()["key_id"]
    listing = world.client.get("/v1/keys", headers=admin)
    assert token not in listing.text and key_id in listing.text
    assert world.client.get(f"/v1/keys/{key_id}", headers=admin).json()["status"] == "active"
    read = world.client.get(f"/v1/events/{world.event_ids[TENANT_A][0]}", params={"log": TENANT_A},
                            headers={"X-API-Key": token})
    assert read.status_code == 200
    rotated = world.client.post(f"/v1/keys/{key_id}/rotate", json={"grace": "0"}, headers=admin)
    assert rotated.status_code == 201
    new_token = rotated.json()["key"]
    assert world.client.get(f"/v1/logs/{TENANT_A}/proofs/consistency", params={"first": 1, "second": 2},
                            headers={"X-API-Key": token}).status_code == 401
    url = f"/v1/events/{world.event_ids[TENANT_A][0]}"
    assert world.client.get(url, params={"log": TENANT_A},
                            headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    revoked = world.client.delete(f"/v1/keys/{rotated.json()['key_id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = world.client.get(url, params={"log": TENANT_A},
                             headers={"Authorization": f"Bearer {new_token}"})
    assert after.status_code == 401 and after.headers["www-authenticate"].startswith("Bearer")
    bad = world.client.post("/v1/keys", json={"name": "x", "grants": ["nope"]}, headers=admin)
    assert bad.status_code == 400
    assert world.client.delete("/v1/keys/ts_000000000000", headers=admin).status_code == 404


def test_revocation_in_the_store_applies_to_the_next_request(world: World) -> None:
    """What `trailseal keys revoke --data` does: no cache stands in the way."""
    from trailseal.access.apikeys import revoke_key

    token, key_id = world.new_key(f"{TENANT_A}:reader")
    url = f"/v1/events/{world.event_ids[TENANT_A][0]}"
    headers = {"Authorization": f"Bearer {token}"}
    assert world.client.get(url, params={"log": TENANT_A}, headers=headers).status_code == 200
    revoke_key(world.runtime.access.keys, key_id, dt.datetime.now(dt.UTC))
    assert world.client.get(url, params={"log": TENANT_A}, headers=headers).status_code == 401


def test_expired_and_malformed_keys_are_rejected(world: World) -> None:
    from dataclasses import replace

    keys = world.runtime.access.keys
    token, key_id = world.new_key(f"{TENANT_A}:reader", expires_at="2099-01-01T00:00:00Z")
    record = keys.get(key_id)
    assert record is not None
    keys.update(replace(record, expires_at="2020-01-01T00:00:00.000000Z"))
    url = f"/v1/events/{world.event_ids[TENANT_A][0]}"
    for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer ts_123"}, {"X-API-Key": token + "x"},
                    {"Authorization": "Bearer"}):
        response = world.client.get(url, params={"log": TENANT_A}, headers=headers)
        assert response.status_code == 401, headers
        assert_denied_body(response, world)
    # a bad credential is refused even on public routes, so mistakes are visible
    assert world.client.get(f"/v1/logs/{TENANT_A}/checkpoint",
                            headers={"X-API-Key": "ts_bad"}).status_code == 401


def test_listing_of_logs(world: World) -> None:
    names = {log["log"] for log in world.client.get("/v1/logs").json()["logs"]}
    assert {TENANT_A, TENANT_B} <= names  # public by default


# -- self-audit ------------------------------------------------------------------------------------
@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[World]:
    world, context = open_world(tmp_path)
    yield world
    context.__exit__(None, None, None)


def system_events(world: World) -> list[dict[str, Any]]:
    world.runtime.access.flush()
    return [orjson.loads(e.body) for e in world.runtime.store.iter_entries(SYSTEM)]


def test_n_reads_make_exactly_n_system_events(fresh: World) -> None:
    before = len(system_events(fresh))
    a_id = fresh.event_ids[TENANT_A][0]
    audited = [
        ("reader@a", "GET", f"/v1/events/{a_id}", {"log": TENANT_A}, 200),
        ("reader@a", "GET", f"/v1/events/{a_id}", {"log": TENANT_B}, 403),
        ("anonymous", "GET", f"/v1/events/{a_id}", {"log": TENANT_A}, 401),
        ("producer@a", "GET", f"/v1/events/{a_id}", {"log": TENANT_A}, 403),
        ("auditor@a", "GET", f"/v1/logs/{TENANT_A}/proofs/inclusion", {"leaf_index": 0}, 200),
        ("auditor@a", "GET", f"/v1/logs/{TENANT_A}/proofs/consistency", {"first": 1, "second": 3}, 200),
        ("auditor@a", "GET", f"/v1/events/{a_id}", {"log": "missing"}, 403),
        ("admin@*", "GET", "/v1/events/nope", {"log": TENANT_A}, 404),
        ("admin@*", "GET", "/v1/keys", {}, 200),
        ("reader@a", "GET", "/v1/keys", {}, 403),
        ("anonymous", "POST", "/v1/events", {"log": TENANT_A}, 401),  # denied ingest is recorded
        ("admin@a", "GET", "/v1/no-such-route", {"log": TENANT_A}, 404),
    ]
    not_audited = [
        ("producer@a", "POST", "/v1/events", {"log": TENANT_A}, 200),  # ingest is the trail
        ("anonymous", "GET", f"/v1/logs/{TENANT_A}/checkpoint", {}, 200),  # public material
        ("anonymous", "GET", "/v1/logs", {}, 200),
        ("anonymous", "GET", "/healthz", {}, 200),
    ]
    from tests.factories import make_event

    for principal, method, url, params, status in audited + not_audited:
        body = make_event() if method == "POST" else None
        response = fresh.client.request(method, url, params=params, json=body,
                                        headers={**fresh.headers(principal), "User-Agent": "probe/1",
                                                 "X-Request-ID": f"rq-{len(url)}"})
        assert response.status_code == status, (principal, url, response.text)
    events = system_events(fresh)[before:]
    assert len(events) == len(audited)
    outcomes = [e["outcome"] for e in events]
    assert outcomes.count("denied") == 6 and outcomes.count("failure") == 2
    read = events[0]
    assert read["action"] == "trail.read.event" and read["actor"]["type"] == "api_key"
    assert read["actor"]["id"] == fresh.key_ids["reader@a"]
    assert read["resource"] == {"type": "log", "id": TENANT_A}
    assert read["metadata"]["query"] == f"log={TENANT_A}" and read["metadata"]["status"] == 200
    assert read["metadata"]["route"] == "/v1/events/{event_id}"
    assert read["actor"]["user_agent"] == "probe/1" and read["request_id"].startswith("rq-")
    assert events[2]["actor"] == {"id": "anonymous", "type": "anonymous", "user_agent": "probe/1"}
    assert events[8]["action"] == "access.keys.list" and events[8]["resource"]["id"] == "*"
    assert events[10]["action"] == "trail.append" and events[10]["outcome"] == "denied"
    assert events[11]["action"] == "admin.request"


def test_system_log_is_verifiable_and_readable_by_auditors(fresh: World) -> None:
    from trailseal.core.note import VerifierSet
    from trailseal.integrity.logcheck import check_log

    for _ in range(3):
        fresh.client.get(f"/v1/events/{fresh.event_ids[TENANT_A][0]}", params={"log": TENANT_A},
                         headers=fresh.headers("reader@a"))
    events = system_events(fresh)
    assert len(events) >= 3
    keyring = fresh.runtime.keyring(SYSTEM)
    report = check_log(fresh.runtime.store, SYSTEM, VerifierSet(keyring.verifiers()))
    assert report.ok, report.findings
    system_id = fresh.runtime.store.get_entry(SYSTEM, 0)
    assert system_id is not None
    url = f"/v1/events/{system_id.event_id}"
    assert fresh.client.get(url, params={"log": SYSTEM}, headers=fresh.headers("auditor@*")).status_code == 200
    assert fresh.client.get(url, params={"log": SYSTEM}, headers=fresh.headers("auditor@a")).status_code == 403
    # anyone may fetch its public checkpoint and verify it offline
    assert fresh.client.get(f"/v1/logs/{SYSTEM}/checkpoint").status_code == 200


def test_audit_write_failure_refuses_the_read(fresh: World) -> None:
    from trailseal.core.errors import OverloadedError

    recorder = fresh.runtime.access.recorder
    assert recorder is not None
    original = recorder.submit

    def overloaded(event: dict[str, Any]) -> Any:
        raise OverloadedError("sequencer: queue full", retry_after=2)

    recorder.submit = overloaded  # type: ignore[method-assign]
    try:
        response = fresh.client.get(f"/v1/events/{fresh.event_ids[TENANT_A][0]}",
                                    params={"log": TENANT_A}, headers=fresh.headers("reader@a"))
    finally:
        recorder.submit = original  # type: ignore[method-assign]
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert fresh.markers[TENANT_A] not in response.text


# -- rate limits -----------------------------------------------------------------------------------
def test_rate_limit_per_key_answers_429_with_retry_after(fresh: World) -> None:
    token, _ = fresh.new_key(f"{TENANT_A}:reader", rate_per_second=0.5, burst=2)
    other, _ = fresh.new_key(f"{TENANT_A}:reader", rate_per_second=0.5, burst=2)
    url = f"/v1/events/{fresh.event_ids[TENANT_A][0]}"
    before = len(system_events(fresh))
    statuses = [fresh.client.get(url, params={"log": TENANT_A},
                                 headers={"X-API-Key": token}).status_code for _ in range(5)]
    assert statuses == [200, 200, 429, 429, 429]
    limited = fresh.client.get(url, params={"log": TENANT_A}, headers={"X-API-Key": token})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["type"].endswith("/rate-limited")
    assert fresh.client.get(url, params={"log": TENANT_A}, headers={"X-API-Key": other}).status_code == 200
    events = system_events(fresh)[before:]
    assert [e["action"] for e in events].count("access.rate_limited") == 1  # once a minute
    assert len(events) == 2 + 1 + 1  # two reads, one rate-limit note, the other key's read


def test_server_wide_rate_limit_setting(tmp_path: Path) -> None:
    world, context = open_world(tmp_path, rate_limit_per_second=1.0, rate_limit_burst=1)
    try:
        token, _ = world.new_key(f"{TENANT_A}:reader")
        url = f"/v1/logs/{TENANT_A}/proofs/consistency"
        codes = [world.client.get(url, params={"first": 1, "second": 2},
                                  headers={"X-API-Key": token}).status_code for _ in range(2)]
        assert codes == [200, 429]
    finally:
        context.__exit__(None, None, None)


# -- configuration ---------------------------------------------------------------------------------
def test_private_verification_material(tmp_path: Path) -> None:
    world, context = open_world(tmp_path, public_verification=False)
    try:
        assert world.client.get(f"/v1/logs/{TENANT_A}/checkpoint").status_code == 401
        assert world.client.get("/v1/logs").status_code == 401
        ok = world.client.get(f"/v1/logs/{TENANT_A}/checkpoint", headers=world.headers("producer@a"))
        assert ok.status_code == 200
        assert world.client.get(f"/v1/logs/{TENANT_B}/checkpoint",
                                headers=world.headers("producer@a")).status_code == 403
        names = {x["log"] for x in world.client.get("/v1/logs", headers=world.headers("reader@a")).json()["logs"]}
        assert names == {TENANT_A}
        assert world.client.get("/healthz").status_code == 200
    finally:
        context.__exit__(None, None, None)


def test_oidc_tokens_over_http(tmp_path: Path) -> None:
    from tests.access.tokens import AUDIENCE, ISSUER, LocalIdP

    idp = LocalIdP(tmp_path)
    world, context = open_world(tmp_path, oidc_issuer=ISSUER, oidc_audience=AUDIENCE,
                                oidc_jwks=str(idp.jwks_path), oidc_group_grants="soc=*:auditor")
    try:
        url = f"/v1/events/{world.event_ids[TENANT_A][0]}"

        def get(token: str, tenant: str = TENANT_A) -> Any:
            return world.client.get(url, params={"log": tenant},
                                    headers={"Authorization": f"Bearer {token}"})

        good = idp.token(trailseal_grants={TENANT_A: "reader"})
        assert get(good).status_code == 200
        assert get(good, TENANT_B).status_code == 403
        assert get(idp.token(groups=["soc"]), TENANT_B).status_code in (200, 404)
        assert get(idp.token(lifetime=-3600, trailseal_grants={TENANT_A: "reader"})).status_code == 401
        assert get(idp.token(aud="other", trailseal_grants={TENANT_A: "reader"})).status_code == 401
        tampered = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
        response = get(tampered)
        assert response.status_code == 401
        assert_denied_body(response, world)
        events = system_events(world)
        assert events[0]["actor"] == {"id": "alice@example.com", "type": "oidc", "user_agent": "testclient"}
        assert events[-1]["actor"]["id"] == "unverified-token" and events[-1]["outcome"] == "denied"
    finally:
        context.__exit__(None, None, None)


def test_auth_off_is_open_and_unaudited(tmp_path: Path) -> None:
    world, context = open_world(tmp_path, auth_required=False)
    try:
        url = f"/v1/events/{world.event_ids[TENANT_A][0]}"
        assert world.client.get(url, params={"log": TENANT_A}).status_code == 200
        world.runtime.access.flush()
        assert world.runtime.store.get_log(SYSTEM) is None
    finally:
        context.__exit__(None, None, None)


def test_oversized_request_details_are_truncated_in_system(fresh: World) -> None:
    long_id = "x" * 20_000
    response = fresh.client.get(f"/v1/events/{long_id}", params={"log": TENANT_A, "q": "y" * 20_000},
                                headers={**fresh.headers("reader@a"), "User-Agent": "z" * 5000})
    assert response.status_code == 404
    event = system_events(fresh)[-1]
    assert len(orjson.dumps(event)) < 8_000
    assert event["metadata"]["status"] == 404 and event["outcome"] == "failure"
