"""A server with authentication on, two tenants with canary events, and a key per role."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests.factories import make_event
from tests.server.conftest import make_settings
from trailseal.access.apikeys import create_key
from trailseal.access.roles import Grant
from trailseal.server.app import create_app
from trailseal.server.runtime import Runtime

TENANT_A, TENANT_B = "tenant-a", "tenant-b"
#: principal name -> grants ("anonymous" has none and sends no key)
PRINCIPALS: dict[str, tuple[str, ...]] = {
    "anonymous": (),
    "producer@a": (f"{TENANT_A}:producer",),
    "reader@a": (f"{TENANT_A}:reader",),
    "auditor@a": (f"{TENANT_A}:auditor",),
    "admin@a": (f"{TENANT_A}:admin",),
    "auditor@*": ("*:auditor",),
    "admin@*": ("*:admin",),
    "producer@b": (f"{TENANT_B}:producer",),
    "reader@b": (f"{TENANT_B}:reader",),
    "auditor@b": (f"{TENANT_B}:auditor",),
    "admin@b": (f"{TENANT_B}:admin",),
}


@dataclass
class World:
    runtime: Runtime
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, str] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # tenant -> canary marker
    event_ids: dict[str, list[str]] = field(default_factory=dict)  # tenant -> ids

    def headers(self, principal: str) -> dict[str, str]:
        token = self.tokens.get(principal)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def new_key(self, *grants: str, **options: Any) -> tuple[str, str]:
        """(token, key_id) of a fresh key made directly in the store."""
        issued = create_key(self.runtime.access.keys, name="test",
                            grants=[Grant.parse(g) for g in grants],
                            now=dt.datetime.now(dt.UTC), created_by="test", **options)
        return issued.token, issued.record.key_id


def canary_event(marker: str) -> dict[str, Any]:
    return make_event(reason=f"canary {marker}", metadata={"canary": marker},
                      resource={"type": "secret", "id": f"res-{marker}"})


def open_world(tmp_path: Path, **overrides: Any) -> tuple[World, Any]:
    """The world and the TestClient context to close."""
    overrides.setdefault("auth_required", True)
    settings = make_settings(tmp_path, **overrides)
    runtime = Runtime(settings)
    context = TestClient(create_app(runtime))
    client = context.__enter__()
    world = World(runtime, client)
    for name, grants in PRINCIPALS.items():
        if grants:
            # with a server-wide rate limit, the fixture's own keys are exempt (rate 0)
            exempt = {"rate_per_second": 0.0} if overrides.get("rate_limit_per_second") else {}
            world.tokens[name], world.key_ids[name] = world.new_key(*grants, **exempt)
    for tenant in (TENANT_A, TENANT_B, settings.default_log):
        marker = f"CANARY-{tenant}-{uuid.uuid4().hex}"
        world.markers[tenant] = marker
        response = client.post("/v1/events", params={"log": tenant},
                               json=[canary_event(marker) for _ in range(3)],
                               headers=world.headers("admin@*"))
        assert response.status_code == 200, response.text
        world.event_ids[tenant] = [r["id"] for r in response.json()["receipts"]]
    return world, context
