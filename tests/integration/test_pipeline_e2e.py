"""The pipeline against a real ``trailseal serve``: PII canaries never reach the disk in
plaintext, forgetting a subject really destroys its key, and the CLI drives it all."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.factories import make_event
from tests.integration.conftest import ServerProcess, run_cli
from trailseal.pipeline.detectors import luhn_ok

POLICY = {
    "unknown_action": "quarantine",
    "redaction": {"rules": [
        {"path": "/metadata/ssn", "action": "drop"},
        {"path": "/resource/id", "action": "tokenize"},
        {"path": "/after/email", "action": "encrypt", "subject": "/resource/id"},
        {"path": "/actor/ip", "action": "mask"},
    ]},
}


def card_number(prefix: str) -> str:
    for digit in "0123456789":
        if luhn_ok(prefix + digit):
            return prefix + digit
    raise AssertionError("unreachable")


CARD = card_number("491761733072113")
CANARIES = {
    "configured_drop": "CanarySSN-7f3a9c",
    "configured_encrypt": "canary.mail.7f3a9c@example.org",
    "configured_subject": "canary-subject-7f3a9c",
    "free_email": "canary.free.7f3a9c@example.net",
    "free_phone": "+1 415 555 0199",
    "free_aws": "AKIACANARY7F3A9C0000",
    "free_jwt": "eyJjYW5hcnkiOiI3ZjNhIn0.eyJzdWIiOiI3ZjNhOWMifQ.c2lnN2YzYTlj",
    "free_card": CARD,
}


def canary_event(**overrides: Any) -> dict[str, Any]:
    event = make_event(
        resource={"type": "customer", "id": CANARIES["configured_subject"]},
        after={"email": CANARIES["configured_encrypt"], "role": "admin"},
        reason=f"contact {CANARIES['free_email']} or {CANARIES['free_phone']}",
        actor={"id": "support-bot", "type": "service", "ip": "198.51.100.77",
               "user_agent": f"tool/1.0 key={CANARIES['free_aws']}"},
        metadata={"ssn": CANARIES["configured_drop"], "note": f"token {CANARIES['free_jwt']} card {CANARIES['free_card']}"},
    )
    event.update(overrides)
    return event


def every_byte(*roots: Path) -> bytes:
    chunks = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        chunks += [p.read_bytes() for p in paths]
    return b"".join(chunks)


@pytest.fixture
def pipeline_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()


def cli(server: ServerProcess, *args: str) -> Any:
    done = run_cli(*args, "--url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_pii_canaries_never_reach_the_data_directory(pipeline_server: ServerProcess, tmp_path: Path) -> None:
    server = pipeline_server
    policy_file = tmp_path / "policy.json"
    policy_file.write_bytes(orjson.dumps(POLICY))
    cli(server, "pipeline-policy", "set", str(policy_file))
    events = [canary_event() for _ in range(20)]
    events.append(canary_event(action="auth.mfa.verify", metadata={"mfa_method": "carrier-pigeon", "ssn": CANARIES["configured_drop"]}))
    events.append(canary_event(action="unknown.thing"))
    answer = httpx.post(f"{server.url}/v1/events", json=events, timeout=60)
    assert answer.status_code == 200, answer.text
    statuses = [r["status"] for r in answer.json()["receipts"]]
    assert statuses == ["sequenced"] * 20 + ["quarantined", "quarantined"]
    text = answer.text
    for name, canary in CANARIES.items():
        assert canary not in text, f"{name} echoed in the receipts"
    listed = json.loads(cli(server, "quarantine", "list", "--format", "json").stdout)
    assert len(listed["entries"]) == 2
    shown = cli(server, "quarantine", "show", listed["entries"][0]["quarantine_id"]).stdout
    assert "carrier-pigeon" in shown and CANARIES["free_email"] not in shown
    assert server.stop() == 0
    data = every_byte(server.data_dir, server.log)
    assert len(data) > 10_000
    for name, canary in CANARIES.items():
        assert canary.encode() not in data, f"{name} found in plaintext on disk"


def test_forgotten_subject_reads_erased_and_the_log_still_verifies(pipeline_server: ServerProcess, tmp_path: Path) -> None:
    server = pipeline_server
    assert httpx.put(f"{server.url}/v1/pipeline/policy", json=POLICY, timeout=30).status_code == 200
    kept = canary_event(id="keep-1", resource={"type": "customer", "id": "other-customer"}, after={"email": "keep@example.org"})
    doomed = canary_event(id="doomed-1")
    assert httpx.post(f"{server.url}/v1/events", json=[doomed, kept], timeout=60).status_code == 200
    db = server.data_dir / "keys" / "subjects.db"
    with sqlite3.connect(db) as conn:
        keys = {bytes(row[0]) for row in conn.execute("SELECT key FROM subject_keys")}
    assert len(keys) == 2
    before = httpx.get(f"{server.url}/v1/events/doomed-1", params={"decrypt": "true"}, timeout=30).json()
    assert before["view"]["event"]["after"]["email"] == CANARIES["configured_encrypt"]
    forgot = json.loads(cli(server, "subject", "forget", CANARIES["configured_subject"], "--actor", "dpo",
                            "--format", "json").stdout)
    assert forgot["keys_destroyed"] == 1
    after = httpx.get(f"{server.url}/v1/events/doomed-1", params={"decrypt": "true"}, timeout=30).json()
    assert after["event"] == before["event"]
    assert after["view"]["event"]["after"]["email"] == "erased"
    still = httpx.get(f"{server.url}/v1/events/keep-1", params={"decrypt": "true"}, timeout=30).json()
    assert still["view"]["event"]["after"]["email"] == "keep@example.org"
    with sqlite3.connect(db) as conn:
        left = {bytes(row[0]) for row in conn.execute("SELECT key FROM subject_keys")}
    (destroyed,) = keys - left
    assert server.stop() == 0
    verified = run_cli("verify", "--data", str(server.data_dir), "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
    assert destroyed not in every_byte(server.data_dir), "the destroyed key is still on disk"


def test_schema_and_producer_commands(pipeline_server: ServerProcess, tmp_path: Path) -> None:
    server = pipeline_server
    v1 = tmp_path / "v1.json"
    v1.write_bytes(orjson.dumps({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "size": {"type": "integer", "maximum": 100}}}}}))
    v2 = tmp_path / "v2.json"
    v2.write_bytes(orjson.dumps({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
        "size": {"type": "integer", "maximum": 50}}}}}))
    assert "version 1" in cli(server, "schema", "add", "cache.flush.*", str(v1)).stdout
    refused = run_cli("schema", "add", "cache.flush.*", str(v2), "--url", server.url)
    assert refused.returncode == 2 and "counter-example" in refused.stderr and '"size": 100' in refused.stderr
    check = run_cli("schema", "check", "cache.flush.*", str(v2), "--url", server.url)
    assert check.returncode == 1 and "incompatible" in check.stdout
    listing = json.loads(cli(server, "schema", "list", "--format", "json").stdout)
    assert any(r["key"] == "cache.flush.*" for r in listing["schemas"])
    assert '"maximum": 100' in cli(server, "schema", "show", "cache.flush.*").stdout
    events = [make_event(action="cache.flush.all", metadata={"size": size}, producer={"id": "cacher", "seq": seq})
              for seq, size in ((1, 10), (2, 500), (4, 20))]
    receipts = httpx.post(f"{server.url}/v1/events", json=events, timeout=60).json()["receipts"]
    assert [r["status"] for r in receipts] == ["sequenced", "quarantined", "sequenced"]
    producers = json.loads(cli(server, "producers", "--format", "json").stdout)["producers"]
    assert producers[0]["gaps"] == 1 and producers[0]["events"] == 3
    v3 = tmp_path / "v3.json"
    v3.write_bytes(orjson.dumps({"type": "object"}))
    cli(server, "schema", "add", "cache.flush.*", str(v3))
    redriven = cli(server, "quarantine", "redrive", "--all")
    assert "sequenced as leaf" in redriven.stdout
