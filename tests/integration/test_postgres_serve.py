"""End to end over real HTTP against ``trailseal serve --store postgresql://...`` subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import orjson

from tests.factories import make_event
from tests.integration.conftest import run_cli
from tests.integration.scaleout import node, pg_url  # noqa: F401 - fixture
from trailseal.storage.postgres import PostgresStore


def test_serve_on_postgres_emit_verify_and_receipts(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    migrated = run_cli("migrate", "--store", pg_url, "--format", "json")
    assert migrated.returncode == 0, migrated.stderr
    assert json.loads(migrated.stdout)["versions"]["core"] >= 1

    server = node(tmp_path / "data", pg_url).start()
    try:
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["leads"] == ["default"] and ready["role"] == "all"
        sent = run_cli("emit", "--url", server.url, "--actor", "ci-bot", "--action",
                       "deploy.rollout.start", "--resource", "service:checkout", "--format", "json")
        assert sent.returncode == 0, sent.stderr
        receipt = json.loads(sent.stdout)[0]
        assert receipt["leaf_index"] == 0 and receipt["status"] == "sequenced"

        batch = b"\n".join(orjson.dumps(make_event()) for _ in range(300)) + b"\n"
        piped = httpx.post(f"{server.url}/v1/events", content=batch,
                           headers={"content-type": "application/x-ndjson"}, timeout=30)
        assert [r["leaf_index"] for r in piped.json()["receipts"]] == list(range(1, 301))

        answer = tmp_path / "answer.json"
        answer.write_bytes(httpx.get(f"{server.url}/v1/events/{receipt['id']}").content)
        pub = server.data_dir / "keys" / "default.pub.json"
        ok = run_cli("verify-receipt", str(answer), "--key-file", str(pub))
        assert ok.returncode == 0 and "event content checked" in ok.stdout, ok.stderr

        saved = tmp_path / "trusted.txt"
        saved.write_bytes(httpx.get(f"{server.url}/v1/logs/default/checkpoint").content)
        assert saved.read_bytes().startswith(b"test.example/default\n301\n")
    finally:
        assert server.stop() == 0, "graceful shutdown exits 0"

    offline = run_cli("verify", "--store", pg_url, "--data", str(server.data_dir),
                      "--trusted-checkpoint", str(saved), "--format", "json")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    report = json.loads(offline.stdout)
    assert report["ok"] and report["leaves_checked"] == 301
    # Invariant 4 on PostgreSQL: one byte of one stored payload changed is found, at its leaf.
    with PostgresStore(pg_url, migrate=False) as store, store.connection() as conn:
        body = bytes(conn.execute("SELECT body FROM events WHERE leaf_index = 123").fetchone()[0])
        at = body.index(b"alice")
        conn.execute("UPDATE events SET body = %s WHERE leaf_index = 123", (body[:at] + b"A" + body[at + 1 :],))
    tampered = run_cli("verify", "--store", pg_url, "--data", str(server.data_dir), "--format", "json")
    assert tampered.returncode == 1
    assert json.loads(tampered.stdout)["first_bad_leaf"] == 123
