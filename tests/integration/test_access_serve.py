"""A real `trailseal serve` with authentication on: the first-start admin key, keys provisioned
with the CLI on the data directory while the server runs, and immediate revocation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.factories import make_event
from tests.integration.conftest import ServerProcess, run_cli

KEY_RE = re.compile(r"ts_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def test_serve_with_auth_end_to_end(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", auth=True).start()
    try:
        printed = KEY_RE.findall(server.log.read_text())
        assert len(printed) == 1, server.log.read_text()
        admin = {"Authorization": f"Bearer {printed[0]}"}
        url = server.url

        assert httpx.get(f"{url}/v1/keys").status_code == 401
        assert httpx.get(f"{url}/v1/keys", headers=admin).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200

        # provision a producer key directly on the data directory of the running server
        made = run_cli("keys", "create", "--data", str(server.data_dir), "--name", "ci",
                       "--grant", "acme:producer", "--expires", "30d", "--format", "json")
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        producer = {"X-API-Key": created["key"]}
        assert created["grants"] == ["acme:producer"] and created["status"] == "active"

        sent = httpx.post(f"{url}/v1/events", params={"log": "acme"}, json=make_event(),
                          headers=producer)
        assert sent.status_code == 200, sent.text
        event_id = sent.json()["receipts"][0]["id"]
        assert httpx.post(f"{url}/v1/events", json=make_event(), headers=producer).status_code == 403
        read = httpx.get(f"{url}/v1/events/{event_id}", params={"log": "acme"}, headers=producer)
        assert read.status_code == 403 and "acme" in read.json()["detail"]
        assert httpx.get(f"{url}/v1/events/{event_id}", params={"log": "acme"},
                         headers=admin).status_code == 200

        # the client commands send the key (flag or TRAILSEAL_API_KEY)
        emitted = run_cli("emit", "--url", url, "--api-key", created["key"], "--log", "acme",
                          "--actor", "ci-bot", "--action", "deploy.rollout.start",
                          "--resource", "service:checkout", "--format", "json")
        assert emitted.returncode == 0, emitted.stderr

        listed = run_cli("keys", "list", "--url", url, "--api-key", printed[0], "--format", "json")
        assert listed.returncode == 0, listed.stderr
        assert created["key_id"] in listed.stdout and created["key"] not in listed.stdout

        # revoke on the data directory: the running server refuses the very next request
        revoked = run_cli("keys", "revoke", created["key_id"], "--data", str(server.data_dir))
        assert revoked.returncode == 0, revoked.stderr
        again = httpx.post(f"{url}/v1/events", params={"log": "acme"}, json=make_event(),
                           headers=producer)
        assert again.status_code == 401

        # the refusals and admin reads were self-audited in _system
        logs = httpx.get(f"{url}/v1/logs").json()["logs"]
        assert "_system" in {entry["log"] for entry in logs}
    finally:
        assert server.stop() == 0

    # a restart does not print another admin key: keys exist
    server.start()
    try:
        assert len(KEY_RE.findall(server.log.read_text())) == 1
        assert httpx.get(f"{server.url}/v1/keys", headers=admin).status_code == 200
    finally:
        server.stop()
