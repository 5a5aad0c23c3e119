"""The query routes over HTTP: search pages, timelines, streamed exports, evidence bundles."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
from starlette.testclient import TestClient

from tests.factories import make_event
from tests.query.conftest import awkward_events
from tests.query.corpus import realistic_events
from trailseal.core.canonical import canonicalize
from trailseal.core.hashing import leaf_hash
from trailseal.query.export import csv_event
from trailseal.server.runtime import Runtime
from trailseal.verify.bundle import verify_bundle


def ingest(client: TestClient, events: list[dict[str, object]], log: str | None = None) -> None:
    for start in range(0, len(events), 400):
        answer = client.post("/v1/events", content=orjson.dumps(events[start : start + 400]),
                             params={"log": log} if log else {}, headers={"content-type": "application/json"})
        assert answer.status_code == 200, answer.text


@pytest.fixture
def filled(client: TestClient) -> list[dict[str, object]]:
    events = realistic_events(1500, seed=21, mean_gap_ms=3000) + awkward_events()
    ingest(client, events)
    return events


def test_search_pages_by_cursor_in_both_orders(client: TestClient, filled: list[dict[str, object]]) -> None:
    for order in ("newest", "oldest"):
        seen: list[int] = []
        params: dict[str, object] = {"q": "outcome:success action:auth.*", "limit": 40, "order": order}
        while True:
            page = client.get("/v1/events", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["log"] == "default" and body["count"] == len(body["events"]) <= 40
            seen += [item["leaf_index"] for item in body["events"]]
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
        times = [client.get(f"/v1/events/{filled[i]['id']}").json()["event"]["time"] for i in seen[:5]]
        assert times == sorted(times, reverse=order == "newest")
        assert len(seen) == len(set(seen)) > 100


def test_search_items_are_the_stored_bytes(client: TestClient, filled: list[dict[str, object]]) -> None:
    body = client.get("/v1/events", params={"q": 'actor.id:"x\' OR \'1\'=\'1"'}).json()
    assert [item["event"]["id"] for item in body["events"]] == ["awk-sql-1"]
    item = body["events"][0]
    stored = client.get("/v1/events/awk-sql-1").json()
    assert item["event"] == stored["event"] and item["leaf_index"] == stored["receipt"]["leaf_index"]
    assert leaf_hash(canonicalize(item["event"])) == leaf_hash(canonicalize(stored["event"]))


def test_search_errors(client: TestClient, filled: list[dict[str, object]]) -> None:
    bad = client.get("/v1/events", params={"q": "actor.id:(alice OR"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["position"] == 18 and "expected a value after OR" in bad.json()["detail"]
    first = client.get("/v1/events", params={"q": "outcome:success", "limit": 2}).json()
    other = client.get("/v1/events", params={"q": "outcome:denied", "cursor": first["next_cursor"]})
    assert other.status_code == 400 and "another query" in other.json()["detail"]
    assert client.get("/v1/events", params={"log": "nope"}).status_code == 404
    assert client.get("/v1/events", params={"limit": 5000}).status_code == 422
    assert client.get("/v1/events", params={"order": "sideways"}).status_code == 400


def test_logs_are_separate(client: TestClient, filled: list[dict[str, object]]) -> None:
    ingest(client, [make_event(actor={"id": "tenant-b-user"})], log="tenant-b")
    assert client.get("/v1/events", params={"q": "actor.id:tenant-b-user"}).json()["events"] == []
    other = client.get("/v1/events", params={"q": "actor.id:tenant-b-user", "log": "tenant-b"}).json()
    assert [item["event"]["log"] for item in other["events"]] == ["tenant-b"]


def test_timeline_formats(client: TestClient, filled: list[dict[str, object]]) -> None:
    story = next(e for e in filled if "parent_span_id" in e.get("metadata", {}))  # type: ignore[operator]
    params = {"request_id": story["request_id"]}
    data = client.get("/v1/timeline", params=params).json()
    assert story["id"] in [e["id"] for e in data["events"]] and data["services"]
    assert any(e["parent"] is not None for e in data["events"])
    markdown = client.get("/v1/timeline", params={**params, "format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and "### Correlation" in markdown.text
    text = client.get("/v1/timeline", params={**params, "format": "text"})
    assert text.text.startswith(f"Timeline of request_id {story['request_id']}")
    around = client.get("/v1/timeline", params={"around": story["time"], "window": "5m", "q": "outcome:denied"})
    assert around.status_code == 200 and all(e["outcome"] == "denied" for e in around.json()["events"])
    assert client.get("/v1/timeline").status_code == 400
    assert client.get("/v1/timeline", params={**params, "format": "pdf"}).status_code == 400


def test_exports_stream_every_format(client: TestClient, filled: list[dict[str, object]]) -> None:
    ndjson = client.get("/v1/export", params={"q": "outcome:denied"})
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert "attachment" in ndjson.headers["content-disposition"]
    lines = ndjson.content.splitlines()
    denied = [e for e in filled if e.get("outcome") == "denied"]
    assert len(lines) == len(denied) > 10
    assert all(orjson.loads(line)["outcome"] == "denied" for line in lines)
    table = client.get("/v1/export", params={"q": "outcome:denied", "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(table, newline="")))
    assert [canonicalize(csv_event(r)) for r in rows] == lines
    cef = client.get("/v1/export", params={"q": "outcome:denied", "format": "cef", "limit": 3}).text
    assert len(cef.splitlines()) == 3 and all(line.startswith("CEF:0|trailseal|") for line in cef.splitlines())
    ocsf = client.get("/v1/export", params={"q": "outcome:denied", "format": "ocsf", "order": "newest"})
    classes = {orjson.loads(line)["class_uid"] for line in ocsf.content.splitlines()}
    assert classes <= {3001, 3002, 6003} and classes
    everything = client.get("/v1/export").content.splitlines()
    assert len(everything) == len(filled)
    assert client.get("/v1/export", params={"format": "xml"}).status_code == 400
    assert client.get("/v1/export", params={"q": "time:>"}).status_code == 400


def test_bundles_verify_offline(client: TestClient, runtime: Runtime, filled: list[dict[str, object]]) -> None:
    story = filled[200]
    answer = client.get("/v1/bundles", params={"q": f"request_id:{story['request_id']}"})
    assert answer.status_code == 200 and "bundle.jsonl" in answer.headers["content-disposition"]
    report = verify_bundle(answer.content, runtime.keyring("default").verifiers())
    assert report.ok and report.keys == "given"
    assert story["id"] in [e.event_id for e in report.events]
    tampered = answer.content.replace(b'"outcome":"success"', b'"outcome":"failure"', 1)
    assert tampered != answer.content and not verify_bundle(tampered).ok
    assert client.get("/v1/bundles", params={"log": "nope"}).status_code == 404
