"""The retention, hold and archive commands against a real ``trailseal serve`` (``--url``), and
the scheduled runs inside ``serve``."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import ServerProcess, run_cli
from tests.retention.conftest import Year, event_id, expected_pruned, shared_year


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Year:
    return shared_year(tmp_path_factory)


@pytest.fixture
def data(pristine: Year, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine.data, copy)
    return copy


def cli(server: ServerProcess, *args: str) -> dict:  # type: ignore[type-arg]
    done = run_cli(*args, "--url", server.url, "--format", "json")
    assert done.returncode == 0, (args, done.stderr)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_commands_against_a_server(data: Path) -> None:
    server = ServerProcess(data).start()
    api = httpx.Client(base_url=server.url, timeout=60)
    try:
        shown = api.get("/v1/retention", params={"log": "default"}).json()
        assert {p["name"] for p in shown["policies"]} == {"all.default", "auth", "mfa", "deploy", "iam"}
        policy = api.put("/v1/retention/policies", params={"log": "acme"},
                         json={"action": "auth.*", "keep": "30d"}).json()
        assert policy["name"] == "acme.auth" and policy["keep"] == "30d"
        assert api.delete("/v1/retention/policies/acme.auth", params={"log": "acme"}).status_code == 200
        hold = cli(server, "hold", "create", "--log", "default", "--case", "DEC-1", "--owner", "legal",
                   "--from", "2025-12-02T00:00:00Z", "--reason", "audit")
        assert hold["status"] == "active" and hold["selector"]["kind"] == "time_range"
        listed = api.get("/v1/holds", params={"log": "default", "released": "false"}).json()
        assert hold["hold_id"] in {h["hold_id"] for h in listed["holds"]}
        changed = cli(server, "hold", "change", hold["hold_id"], "--log", "default", "--owner", "legal-2",
                      "--expires", "2030-01-01T00:00:00Z")
        assert changed["owner"] == "legal-2" and changed["expires_at"].startswith("2030-01-01")
        assert api.get(f"/v1/holds/{hold['hold_id']}", params={"log": "default"}).json()["owner"] == "legal-2"
        # a hold is only visible under its own log (tenant isolation)
        assert api.get(f"/v1/holds/{hold['hold_id']}", params={"log": "acme"}).status_code == 404
        plan = cli(server, "retention", "plan", "--log", "default")
        assert plan["prune"]["count"] == len(expected_pruned("default"))
        runs = cli(server, "retention", "apply", "--log", "default")["runs"]
        assert runs[0]["pruned"] == len(expected_pruned("default"))
        answer = api.get(f"/v1/events/{event_id('default', 5, 'auth.login')}").json()
        assert answer["event"] is None and answer["pruned"]["policy"] == "auth"
        # a monitor still verifies the whole log: pruned bundles fall back to the hash tiles
        remote = run_cli("verify", "--url", server.url, "--log", "default", "--format", "json")
        assert remote.returncode == 0, remote.stdout + remote.stderr
        assert json.loads(remote.stdout)["leaves_from_hash_tiles"] > 0
        segments = cli(server, "archive", "list", "--log", "default")["segments"]
        assert segments and segments[0]["range"][0] == 0
        restored = cli(server, "archive", "restore", segments[0]["segment"], "--log", "default",
                       "--keep-days", "3")
        assert restored["restored"] > 0
        back = api.get(f"/v1/events/{event_id('default', 5, 'auth.login')}").json()
        assert back["event"]["action"] == "auth.login"
        released = cli(server, "hold", "release", hold["hold_id"], "--log", "default", "--reason", "done")
        assert released["status"] == "released"
        missing = api.post("/v1/archive/segments/nope/restore", params={"log": "default"})
        assert missing.status_code == 404
    finally:
        api.close()
        assert server.stop() == 0
    assert run_cli("verify", "--data", str(data)).returncode == 0


def test_scheduled_runs_inside_serve(data: Path) -> None:
    saved = os.environ.get("TRAILSEAL_RETENTION_INTERVAL_SECONDS")
    os.environ["TRAILSEAL_RETENTION_INTERVAL_SECONDS"] = "0.5"
    try:
        server = ServerProcess(data).start()
    finally:
        if saved is None:
            os.environ.pop("TRAILSEAL_RETENTION_INTERVAL_SECONDS")
        else:
            os.environ["TRAILSEAL_RETENTION_INTERVAL_SECONDS"] = saved
    try:
        deadline = time.monotonic() + 30
        status: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            status = httpx.get(f"{server.url}/v1/retention", params={"log": "acme"}).json()
            if status["pruned"] == len(expected_pruned("acme")) and status["runs"]:
                break
            time.sleep(0.2)
        assert status["pruned"] == len(expected_pruned("acme")), status
        assert status["runs"][0]["actor"] == "trailseal-scheduler"
    finally:
        assert server.stop() == 0
