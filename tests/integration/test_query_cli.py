"""``trailseal query / timeline / export / verify-bundle`` against a real server and on a data dir."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import orjson

from tests.integration.conftest import ServerProcess, run_cli
from tests.query.corpus import realistic_events


def test_query_timeline_export_and_bundles_from_the_command_line(server: ServerProcess, tmp_path: Path) -> None:
    events = realistic_events(600, seed=31, mean_gap_ms=3000)
    for start in range(0, len(events), 300):
        sent = httpx.post(f"{server.url}/v1/events", content=orjson.dumps(events[start : start + 300]),
                          headers={"content-type": "application/json"}, timeout=60)
        assert sent.status_code == 200, sent.text
    story = events[42]

    table = run_cli("query", f"request_id:{story['request_id']}", "--url", server.url)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("TIME (UTC)") and story["action"] in table.stdout

    page = run_cli("query", "outcome:success", "--limit", "7", "--format", "json", "--url", server.url)
    body = json.loads(page.stdout)
    assert len(body["events"]) == 7 and body["next_cursor"]
    more = run_cli("query", "outcome:success", "--limit", "7", "--cursor", body["next_cursor"],
                   "--format", "ndjson", "--url", server.url)
    assert len(more.stdout.splitlines()) == 7
    assert not {json.loads(line)["id"] for line in more.stdout.splitlines()} & {i["event"]["id"] for i in body["events"]}
    rows = list(csv.DictReader(io.StringIO(run_cli("query", "outcome:denied", "--format", "csv",
                                                   "--url", server.url).stdout, newline="")))
    assert rows and all(r["outcome"] == "denied" for r in rows)

    bad = run_cli("query", "actor.id:(alice OR", "--url", server.url)
    assert bad.returncode == 2 and "expected a value after OR at position 18" in bad.stderr
    assert bad.stderr.rstrip().endswith(" " * 18 + "^")

    timeline = run_cli("timeline", "--request-id", story["request_id"], "--format", "markdown", "--url", server.url)
    assert timeline.returncode == 0 and timeline.stdout.startswith(f"## Timeline: request_id {story['request_id']}")

    ocsf = tmp_path / "out.ocsf.ndjson"
    done = run_cli("export", "--q", "action:auth.*", "--format", "ocsf", "--out", str(ocsf), "--url", server.url)
    assert done.returncode == 0 and "wrote" in done.stderr
    assert {json.loads(line)["class_uid"] for line in ocsf.read_text().splitlines()} <= {3001, 3002}

    bundle = tmp_path / "incident.bundle.jsonl"
    made = run_cli("export", "--q", f"trace_id:{story['trace_id']}", "--bundle", str(bundle), "--url", server.url)
    assert made.returncode == 0, made.stderr
    pub = server.data_dir / "keys" / "default.pub.json"
    ok = run_cli("verify-bundle", str(bundle), "--key-file", str(pub))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: bundle of log default") and story["id"] in ok.stdout
    report = json.loads(run_cli("verify-bundle", str(bundle), "--format", "json").stdout)
    assert report["ok"] and report["keys"] == "bundle"

    data = bundle.read_bytes()
    target = data.index(story["id"].encode())
    forged = tmp_path / "forged.bundle.jsonl"
    forged.write_bytes(data[: target + 1] + (b"0" if data[target + 1 : target + 2] != b"0" else b"1") + data[target + 2 :])
    failed = run_cli("verify-bundle", str(forged), "--key-file", str(pub))
    assert failed.returncode == 1 and "FAIL" in failed.stderr

    # The same reads straight from the data directory, with the server still running.
    local = run_cli("query", f"trace_id:{story['trace_id']}", "--data", str(server.data_dir), "--format", "json")
    assert local.returncode == 0, local.stderr
    assert story["id"] in {i["event"]["id"] for i in json.loads(local.stdout)["events"]}
    local_bundle = tmp_path / "local.bundle.jsonl"
    assert run_cli("export", "--q", f"id:{story['id']}", "--bundle", str(local_bundle),
                   "--data", str(server.data_dir)).returncode == 0
    assert run_cli("verify-bundle", str(local_bundle), "--key-file", str(pub)).returncode == 0
    text = run_cli("timeline", "--around", story["time"], "--window", "1m", "--data", str(server.data_dir))
    assert text.returncode == 0 and "Timeline of" in text.stdout
