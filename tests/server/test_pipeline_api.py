"""The pipeline over HTTP, in process: schemas, quarantine and redrive, redaction, forgetting a
subject, enrichment headers, producer tracking and sampling summaries."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.testclient import TestClient

from tests.factories import make_event
from trailseal.core.canonical import canonicalize
from trailseal.core.hashing import leaf_hash
from trailseal.integrity.logcheck import check_log
from trailseal.server.runtime import Runtime

IAM_V2 = {"type": "object", "properties": {"after": {"type": "object", "properties": {
    "role": {"type": "string", "maxLength": 256}, "ticket": {"type": "string"}}}}}


def post(client: TestClient, body: object, headers: dict[str, str] | None = None, **params: str) -> Any:
    answer = client.post("/v1/events", content=orjson.dumps(body), params=params,
                         headers={"content-type": "application/json", **(headers or {})})
    assert answer.status_code == 200, answer.text
    return answer.json()["receipts"]


def stored(client: TestClient, event_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/events/{event_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_schema_registration_compatibility_and_listing(client: TestClient) -> None:
    listing = client.get("/v1/schemas").json()["schemas"]
    assert {"auth.*", "iam.*", "k8s.*"} <= {row["key"] for row in listing}
    added = client.post("/v1/schemas", json={"key": "iam.role.*", "schema": IAM_V2})
    assert added.status_code == 201 and added.json()["version"] == 1
    narrower = {**IAM_V2, "required": ["reason"]}
    refused = client.post("/v1/schemas", json={"key": "iam.role.*", "schema": narrower})
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"].endswith("incompatible-schema")
    assert problem["counter_example"]["violations"][0]["pointer"] == "/reason"
    assert client.post("/v1/schemas", json={"key": "iam.role.*", "schema": narrower, "compatibility": "none"}).json()["version"] == 2
    dry = client.post("/v1/schemas/check", json={"key": "iam.role.*", "schema": {"type": "object", "required": ["colour"]}}).json()
    assert dry["compatible"] is False and dry["counter_example"]["event"]["action"].startswith("iam.role.")
    shown = client.get("/v1/schemas/iam.role.*", params={"version": 1}).json()
    assert shown["document"] == IAM_V2
    assert len(client.get("/v1/schemas/iam.role.*/versions").json()["versions"]) == 2
    assert client.get("/v1/schemas/nope.*").status_code == 404
    assert client.post("/v1/schemas", json={"key": "Bad Key", "schema": {}}).status_code == 400
    assert client.post("/v1/schemas", json={"key": "x.*", "schema": {"type": 7}}).status_code == 400
    checked = client.post("/v1/schemas/check", json={"events": [make_event(reason="ok"), make_event(reason=None)]}).json()
    assert [r["valid"] for r in checked["results"]] == [True, False]
    receipt = post(client, make_event(reason="why"))[0]
    assert receipt["schema"] == {"id": "iam.role.*", "version": 2}
    assert stored(client, receipt["id"])["event"]["schema"] == {"id": "iam.role.*", "version": 2}


def test_quarantine_then_redrive_after_a_schema_fix(client: TestClient, runtime: Runtime) -> None:
    client.post("/v1/schemas", json={"key": "billing.invoice.*", "schema": {"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"amount": {"type": "integer"}}}}}})
    good = make_event(action="billing.invoice.issue", metadata={"amount": 12})
    bad = make_event(id="inv-bad", action="billing.invoice.issue", metadata={"amount": 12.5})
    receipts = post(client, [good, bad, make_event()])
    assert [r["status"] for r in receipts] == ["sequenced", "quarantined", "sequenced"]
    q = receipts[1]
    assert q["violations"] == [{"pointer": "/metadata/amount", "rule": "type", "detail": "12.5 is not of type 'integer'", "value": 12.5}]
    assert runtime.store.tree_size("default") == 2 and runtime.store.get_entry_by_id("default", "inv-bad") is None
    again = post(client, bad)[0]  # a retry of a quarantined event: the same entry
    assert again["quarantine_id"] == q["quarantine_id"]
    entries = client.get("/v1/quarantine").json()["entries"]
    assert [e["quarantine_id"] for e in entries] == [q["quarantine_id"]]
    entry = client.get(f"/v1/quarantine/{q['quarantine_id']}").json()
    assert entry["event"]["metadata"]["amount"] == 12.5 and entry["received_at"] == q["received_at"]
    still = client.post(f"/v1/quarantine/{q['quarantine_id']}/redrive").json()
    assert still["status"] == "quarantined"
    fixed = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"amount": {"type": "number"}}}}}
    assert client.post("/v1/schemas", json={"key": "billing.invoice.*", "schema": fixed}).status_code == 201
    done = client.post(f"/v1/quarantine/{q['quarantine_id']}/redrive").json()
    assert done["status"] == "sequenced" and done["schema"] == {"id": "billing.invoice.*", "version": 2}
    event = stored(client, "inv-bad")["event"]
    assert event["received_at"] == q["received_at"]  # the original receipt time
    assert event["metadata"]["_trailseal"]["redrive"]["quarantine_id"] == q["quarantine_id"]
    assert client.post(f"/v1/quarantine/{q['quarantine_id']}/redrive").status_code == 409
    assert client.get("/v1/quarantine").json()["entries"] == []
    assert client.get("/v1/quarantine", params={"status": "redriven"}).json()["entries"][0]["leaf_index"] == done["leaf_index"]
    assert post(client, bad)[0]["duplicate"] is True  # now in the trail: a retry gets the receipt


def test_unknown_action_policy_and_bulk_redrive(client: TestClient) -> None:
    assert post(client, make_event(action="widget.spin"))[0]["status"] == "sequenced"
    policy = client.put("/v1/pipeline/policy", json={"unknown_action": "quarantine"})
    assert policy.status_code == 200 and policy.json()["policy"]["unknown_action"] == "quarantine"
    assert client.put("/v1/pipeline/policy", json={"unknown_action": "drop"}).status_code == 400
    receipts = post(client, [make_event(action="widget.spin"), make_event(action="widget.spin")])
    assert {r["violations"][0]["rule"] for r in receipts} == {"unknown-action"}
    client.post("/v1/schemas", json={"key": "widget.*", "schema": {"type": "object"}})
    bulk = client.post("/v1/quarantine/redrive", params={"action": "widget.spin"}).json()
    assert bulk["sequenced"] == 2 and bulk["still_quarantined"] == 0


def test_redaction_happens_before_hashing_and_forget_erases(client: TestClient, runtime: Runtime) -> None:
    client.put("/v1/pipeline/policy", json={"redaction": {"rules": [
        {"path": "/after/email", "action": "encrypt", "subject": "/resource/id"},
        {"path": "/metadata/ssn", "action": "drop"}]}})
    event = make_event(id="cust-1", resource={"type": "customer", "id": "cust-77"}, after={"email": "zed@example.org"},
                       metadata={"ssn": "078-05-1120"}, reason="called +1 415 555 0142, card 4111111111111111")
    receipt = post(client, event)[0]
    answer = stored(client, "cust-1")
    body = answer["event"]
    assert leaf_hash(canonicalize(body)) == __import__("base64").b64decode(receipt["leaf_hash"])  # what is hashed is what is stored
    assert "ssn" not in body["metadata"] and "zed@example.org" not in orjson.dumps(body).decode()
    assert "4111111111111111" not in body["reason"] and "[phone:tok_" in body["reason"]
    assert body["after"]["email"].startswith("enc:A256GCM:")
    assert answer["view"]["fields"] == [{"pointer": "/after/email", "state": "encrypted"}]
    plain = client.get("/v1/events/cust-1", params={"decrypt": "true"}).json()["view"]["event"]
    assert plain["after"]["email"] == "zed@example.org"
    gone = client.post("/v1/subjects/cust-77/forget", json={"actor": "dpo@example.com", "reason": "erasure request"})
    assert gone.status_code == 200 and gone.json()["keys_destroyed"] == 1
    after = client.get("/v1/events/cust-1", params={"decrypt": "true"}).json()
    assert after["event"] == body  # the leaf never changes
    assert after["view"]["event"]["after"]["email"] == "erased"
    erasure = stored(client, gone.json()["receipt"]["id"])["event"]
    assert erasure["action"] == "trailseal.subject.forget" and erasure["resource"]["id"].startswith("tok_")
    assert erasure["actor"]["id"] == "dpo@example.com" and "cust-77" not in orjson.dumps(erasure).decode()
    report = check_log(runtime.store, "default", runtime.keyring("default").verifiers())
    assert report.ok, report.findings


def test_enrichment_from_headers_and_static_context(tmp_path: Any) -> None:
    from tests.server.conftest import make_settings
    from trailseal.server.app import create_app

    runtime = Runtime(make_settings(tmp_path, context_region="eu-north-1", ingest_node="node-7"))
    with TestClient(create_app(runtime)) as client:
        event = make_event(id="enr-1", source={"service": "identity"})
        for name in ("request_id", "trace_id"):
            event.pop(name)
        post(client, event, headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                     "x-request-id": "req-from-proxy"})
        body = stored(client, "enr-1")["event"]
    assert (body["trace_id"], body["span_id"], body["request_id"]) == (
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "req-from-proxy")
    assert body["source"] == {"service": "identity", "region": "eu-north-1"}
    assert body["metadata"]["_trailseal"]["node"] == "node-7"
    assert isinstance(body["metadata"]["_trailseal"]["skew_ms"], int)


def test_producer_gaps_and_duplicates_are_visible(client: TestClient) -> None:
    events = [make_event(id=f"p-{seq}", producer={"id": "billing-api", "seq": seq}) for seq in (1, 2, 3, 6, 7)]
    post(client, events)
    post(client, events[1])  # a retry: a duplicate for the producer
    post(client, make_event(producer={"id": "billing-api", "seq": 4}))  # fills a gap late
    row = client.get("/v1/producers/billing-api").json()
    assert (row["events"], row["first_seq"], row["max_seq"], row["gaps"], row["duplicates"], row["late"]) == (7, 1, 7, 1, 1, 1)
    assert row["capture_rate"] == 6 / 7
    assert client.get("/v1/producers").json()["totals"]["gaps"] == 1
    assert client.get("/v1/producers/nope").status_code == 404


def test_sampling_keeps_critical_events_and_records_exact_counts(tmp_path: Any) -> None:
    from tests.server.conftest import make_settings
    from trailseal.server.app import create_app

    runtime = Runtime(make_settings(tmp_path))
    with TestClient(create_app(runtime)) as client:
        client.put("/v1/pipeline/policy", json={"sampling": {"rules": [{"pattern": "k8s.*", "rate": 0.2}],
                                                             "critical": ["k8s.secrets.*"]}})
        noisy = post(client, [make_event(action="k8s.pods.get") for _ in range(200)])
        critical = post(client, [make_event(action="k8s.secrets.get") for _ in range(10)])
        kept = sum(r["status"] == "sequenced" for r in noisy)
        assert 15 < kept < 70 and {r["status"] for r in noisy} == {"sequenced", "sampled_out"}
        assert all(r["status"] == "sequenced" for r in critical)
        dropped = next(r for r in noisy if r["status"] == "sampled_out")
        assert dropped["sampling"] == {"pattern": "k8s.*", "rate": 0.2}
        size = runtime.store.tree_size("default")
    # Shutdown writes the open interval's summary into the trail itself.
    summaries = [orjson.loads(e.body) for e in runtime.store.iter_entries("default", size)
                 if b"trailseal.sampling.summary" in e.body]
    assert len(summaries) == 1
    counts = summaries[0]["metadata"]["counts"]
    assert counts == [{"action": "k8s.pods.get", "pattern": "k8s.*", "rate": 0.2, "seen": 200, "kept": kept}]


def test_pipeline_off_is_the_minimal_path(tmp_path: Any) -> None:
    from tests.server.conftest import make_settings
    from trailseal.server.app import create_app

    runtime = Runtime(make_settings(tmp_path, pipeline=False))
    with TestClient(create_app(runtime)) as client:
        receipts = post(client, [make_event(id="off-1", reason="AKIAIOSFODNN7EXAMPLE"), make_event(action="widget.x")])
        assert [r["status"] for r in receipts] == ["sequenced", "sequenced"]
        body = stored(client, "off-1")["event"]
    assert body["reason"] == "AKIAIOSFODNN7EXAMPLE" and "schema" not in body and "_trailseal" not in body["metadata"]
