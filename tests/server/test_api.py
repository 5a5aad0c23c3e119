"""The HTTP API in process: receipts, reads, proofs, tiles, and every kind of bad input."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from starlette.testclient import TestClient

from tests.factories import make_event
from trailseal.core.canonical import canonicalize
from trailseal.core.checkpoint import open_checkpoint
from trailseal.core.hashing import leaf_hash
from trailseal.core.merkle import verify_consistency, verify_inclusion
from trailseal.core.receipt import Receipt
from trailseal.server.runtime import Runtime
from trailseal.verify.monitor import split_bundle
from trailseal.verify.receipt import verify_receipt


def verifiers(runtime: Runtime):  # type: ignore[no-untyped-def]
    return runtime.keyring("default").verifiers()


def post(client: TestClient, body: object, **params: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/events", content=orjson.dumps(body), params=params,
                       headers={"content-type": "application/json"})


def test_single_array_and_ndjson(client: TestClient, runtime: Runtime) -> None:
    one = post(client, make_event())
    assert one.status_code == 200, one.text
    assert [r["leaf_index"] for r in one.json()["receipts"]] == [0]
    many = post(client, [make_event() for _ in range(5)])
    assert [r["leaf_index"] for r in many.json()["receipts"]] == [1, 2, 3, 4, 5]
    nd = b"\n".join(orjson.dumps(make_event()) for _ in range(3)) + b"\n"
    lines = client.post("/v1/events", content=nd, headers={"content-type": "application/x-ndjson"})
    assert [r["leaf_index"] for r in lines.json()["receipts"]] == [6, 7, 8]
    for receipt in lines.json()["receipts"]:
        cp, _ = open_checkpoint(receipt["checkpoint"].encode(), verifiers(runtime))
        assert cp.tree_size == receipt["tree_size"] >= 9


def test_get_event_returns_the_exact_leaf_input(client: TestClient, runtime: Runtime) -> None:
    sent = make_event(id="evt-abc")
    post(client, sent)
    got = client.get("/v1/events/evt-abc")
    assert got.status_code == 200
    answer = got.json()
    event, receipt = answer["event"], Receipt.from_json(answer["receipt"])
    assert leaf_hash(canonicalize(event)) == receipt.leaf_hash
    assert event["received_at"] and event["log"] == "default"
    assert event["actor"] == sent["actor"]
    verify_receipt(receipt, verifiers(runtime), event=event)
    assert client.get("/v1/events/nope").status_code == 404


def test_idempotency_and_conflict(client: TestClient) -> None:
    event = make_event(id="evt-idem")
    first = post(client, event).json()["receipts"][0]
    again = post(client, event).json()["receipts"][0]
    assert again["leaf_index"] == first["leaf_index"] and again["duplicate"] is True
    changed = dict(event, reason="something else")
    clash = post(client, changed)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == "application/problem+json"
    assert clash.json()["event_id"] == "evt-idem"


def test_proofs_and_tiles(client: TestClient, runtime: Runtime) -> None:
    post(client, [make_event() for _ in range(300)])
    small = post(client, [make_event() for _ in range(10)]).json()["receipts"]
    note = client.get("/v1/logs/default/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    cp, _ = open_checkpoint(note.content, verifiers(runtime))
    assert cp.tree_size == 310 and cp.origin == "test.example/default"
    proof = client.get("/v1/logs/default/proofs/inclusion",
                       params={"event_id": small[0]["id"], "tree_size": 310}).json()
    verify_inclusion(proof["leaf_index"], 310, base64.b64decode(small[0]["leaf_hash"]),
                     [base64.b64decode(h) for h in proof["hashes"]], cp.root_hash)
    first_cp = open_checkpoint(
        runtime.store.get_checkpoint("default", 300).note, verifiers(runtime))[0]  # type: ignore[union-attr]
    cons = client.get("/v1/logs/default/proofs/consistency", params={"first": 300, "second": 310}).json()
    verify_consistency(300, 310, [base64.b64decode(h) for h in cons["hashes"]],
                       first_cp.root_hash, cp.root_hash)
    full = client.get("/v1/logs/default/tile/0/000")
    assert full.status_code == 200 and len(full.content) == 256 * 32
    assert full.headers["cache-control"].endswith("immutable")
    partial = client.get("/v1/logs/default/tile/0/001.p/54")
    assert len(partial.content) == 54 * 32
    assert client.get("/v1/logs/default/tile/0/001.p/55").status_code == 404
    bundle = client.get("/v1/logs/default/tile/entries/000").content
    entries = split_bundle(bundle)
    assert len(entries) == 256
    assert leaf_hash(entries[0]) == full.content[:32]
    assert client.get("/v1/logs/default/tile/0/x01").status_code == 400
    assert client.get("/v1/logs/nope/checkpoint").status_code == 404
    assert client.get("/v1/logs/default/proofs/inclusion", params={"leaf_index": 5, "tree_size": 999}).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "json"),
        (b"\xff\xfe\x00", "application/json", 400, ""),
        (b"", "application/json", 400, "empty"),
        (b"42", "application/json", 400, "expected an event object"),
        (b'"str"', "application/json", 400, "expected an event object"),
        (b"[1, 2]", "application/json", 422, "event 0"),
        (orjson.dumps({**make_event(), "actor": {"type": "user"}}), "application/json", 422, "actor.id"),
        (orjson.dumps({**make_event(), "time": "yesterday"}), "application/json", 422, "time"),
        (orjson.dumps({**make_event(), "colour": "blue"}), "application/json", 422, "colour"),
        (orjson.dumps({**make_event(), "outcome": "maybe"}), "application/json", 422, "outcome"),
        (orjson.dumps({**make_event(), "actor": "alice"}), "application/json", 422, "actor"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "application/json", 422, "depth"),
        (orjson.dumps({**make_event(), "metadata": {"blob": "x" * 9000}}), "application/json", 413, "max_event_bytes"),
        (b'{"time": 1}\n{oops', "application/x-ndjson", 400, "line 2"),
        (orjson.dumps({**make_event(), "metadata": {"n": 9007199254740993}}), "application/json", 422, "metadata"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    client: TestClient, runtime: Runtime, body: bytes, content_type: str, status: int, needle: str
) -> None:
    before = runtime.store.tree_size("default")
    answer = client.post("/v1/events", content=body, headers={"content-type": content_type})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status and problem["type"].startswith("https://")
    assert needle.lower() in json.dumps(problem).lower()
    assert runtime.store.tree_size("default") == before


def test_one_bad_event_fails_the_whole_request(client: TestClient, runtime: Runtime) -> None:
    batch = [make_event(), make_event(), {**make_event(), "action": ""}, make_event()]
    answer = post(client, batch)
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert errors[0]["index"] == 2 and errors[0]["field"] == "action"
    assert runtime.store.tree_size("default") == 0


def test_request_limits(client: TestClient) -> None:
    too_many = post(client, [make_event() for _ in range(501)])
    assert too_many.status_code == 413 and too_many.json()["limit"] == "max_events_per_request"
    huge = client.post("/v1/events", content=b"[" + b" " * 1_100_000 + b"]",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and huge.json()["limit"] == "max_body_bytes"


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"
    spec = client.get("/openapi.json").json()
    assert "/v1/events" in spec["paths"] and "/v1/logs/{log}/proofs/inclusion" in spec["paths"]
    assert client.get("/docs").status_code == 200
    logs = client.get("/v1/logs").json()["logs"]
    assert logs[0]["log"] == "default" and logs[0]["verifier_keys"][0].startswith("test.example/default+")
