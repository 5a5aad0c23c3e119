"""Retention over a synthetic year: exactly the expected events pruned, held ones untouched,
``trailseal verify --data`` passes, old receipts verify, and a clock jump prunes nothing more."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from starlette.testclient import TestClient

from tests.integration.conftest import run_cli
from tests.retention.conftest import (
    DAYS,
    LAST_DAY,
    Clock,
    Year,
    close,
    event_id,
    expected_pruned,
    settings,
)
from trailseal.core.canonical import canonicalize
from trailseal.core.hashing import leaf_hash
from trailseal.core.receipt import Receipt
from trailseal.server.app import create_app
from trailseal.server.retention import retention_for
from trailseal.server.runtime import Runtime
from trailseal.storage.retention import retention_store
from trailseal.verify.receipt import verify_receipt


def pruned_ids(runtime: Runtime, log: str) -> set[str]:
    return {e.event_id for e in runtime.store.iter_entries(log) if e.pruned is not None}


def verify_cli(year: Year, log: str = "default") -> tuple[int, dict]:  # type: ignore[type-arg]
    done = run_cli("verify", "--data", str(year.data), "--log", log, "--format", "json")
    return done.returncode, json.loads(done.stdout)


def system_actions(runtime: Runtime) -> list[str]:
    return [json.loads(e.body)["action"] for e in runtime.store.iter_entries("_system")]


def test_plan_is_a_dry_run_that_says_why(runtime: Runtime, year: Year) -> None:
    plan = retention_for(runtime).plan("default")
    assert plan.horizon == Clock(dt.datetime.now(dt.UTC)).day(LAST_DAY)()
    assert len(plan.prune) == len(expected_pruned("default"))
    assert pruned_ids(runtime, "default") == set()
    summary = plan.to_json()
    assert summary["prune"]["by_policy"].keys() == {"auth", "mfa", "deploy"}
    sample = summary["prune"]["sample"][0]
    assert {"leaf_index", "action", "received_at", "policy", "keep_days"} <= sample.keys()
    assert summary["held"]["count"] == len(plan.held) > 0
    assert summary["kept"]["iam: not expired"] == DAYS
    assert summary["kept"]["all.default: not expired"] == DAYS  # billing: the '*' default
    assert summary["archive"][-1]["range"][1] == plan.prune[-1] + 1


def test_a_year_with_overlapping_holds(runtime: Runtime, year: Year) -> None:
    retention = retention_for(runtime)
    runs = retention.apply_all(actor="scheduler")
    assert [r.log for r in runs] == ["acme", "default"]  # _system has no policy of its own
    for log in ("default", "acme"):
        assert pruned_ids(runtime, log) == expected_pruned(log), log
    # Held events are untouched: bodies still hash to their leaves.
    for ident in ("default-150-deploy.rollout.start", "acme-010-auth.login",
                  event_id("default", 70, "auth.login"), event_id("default", 70, "deploy.rollout.start")):
        entry = runtime.store.get_entry_by_id(ident.split("-")[0], ident)
        assert entry is not None and entry.pruned is None and leaf_hash(entry.body) == entry.leaf_hash
    # The lapsed acme hold (expired 2025-06-01) and the released one hold nothing.
    assert event_id("acme", 100, "auth.login") in pruned_ids(runtime, "acme")
    assert event_id("default", 10, "auth.login") in pruned_ids(runtime, "default")
    # Every pruned leaf lies in a sealed segment; a run is an audit event in _system.
    ext = retention_store(runtime.store)
    for log in ("default", "acme"):
        end = ext.archived_end(log)
        assert all(r.leaf_index < end for r in ext.prune_records(log))
    actions = system_actions(runtime)
    assert actions.count("retention.run") == 2
    assert {"retention.policy.set", "retention.hold.create", "retention.hold.change",
            "retention.hold.release"} <= set(actions)
    # Idempotent: a second run prunes nothing more.
    again = retention.apply("default", actor="scheduler")
    assert again.pruned == 0 and again.segments == 0
    close(runtime)
    for log in ("default", "acme", "_system"):
        code, report = verify_cli(year, log)
        assert code == 0, report
    assert report["ok"]
    code, report = verify_cli(year, "default")
    assert report["leaves_pruned"] == len(expected_pruned("default"))
    done = run_cli("archive", "verify", "--data", str(year.data), "--log", "default")
    assert done.returncode == 0, done.stderr


def test_old_receipts_and_the_api_after_pruning(runtime: Runtime, year: Year) -> None:
    retention_for(runtime).apply("default", actor="t")
    verifiers = runtime.keyring("default").verifiers()
    for ident in sorted(expected_pruned("default"))[:50]:
        verify_receipt(year.receipts[ident], verifiers)  # issued before pruning, still valid
    with TestClient(create_app(runtime)) as client:
        ident = event_id("default", 3, "auth.login")
        answer = client.get(f"/v1/events/{ident}").json()
        assert answer["event"] is None
        assert answer["pruned"]["policy"] == "auth"
        assert answer["pruned"]["pruned_at"].startswith("2025-12-31")
        receipt = Receipt.from_json(answer["receipt"])
        assert receipt.leaf_hash == year.receipts[ident].leaf_hash
        verify_receipt(receipt, verifiers)
        kept = client.get(f"/v1/events/{event_id('default', 3, 'iam.role.update')}").json()
        verify_receipt(Receipt.from_json(kept["receipt"]), verifiers, event=kept["event"])
        assert leaf_hash(canonicalize(kept["event"])) == Receipt.from_json(kept["receipt"]).leaf_hash
        bundle = client.get("/v1/logs/default/tile/entries/000")
        assert bundle.status_code == 404 and "pruned by retention" in bundle.json()["detail"]
        assert client.get("/v1/logs/default/tile/0/000").status_code == 200  # hashes stay
        proof = client.get("/v1/logs/default/proofs/inclusion", params={"event_id": ident})
        assert proof.status_code == 200
        status = client.get("/v1/retention", params={"log": "default"}).json()
        assert status["pruned"] == len(expected_pruned("default"))
        assert {h["case"] for h in status["holds"]} == {"LIT-2025-014", "INC-88"}
    runtime._test_closed = True  # type: ignore[attr-defined]  # the app's lifespan closed it


def test_a_clock_jump_prunes_nothing_more(year: Year) -> None:
    clock = Clock(dt.datetime.now(dt.UTC)).day(LAST_DAY)
    runtime = Runtime(settings(year.data), clock=clock)
    retention = retention_for(runtime)
    first = retention.apply("default", actor="t")
    assert first.pruned == len(expected_pruned("default"))
    clock.moment += dt.timedelta(days=3650)  # the system clock jumps ten years ahead
    assert retention.horizon("default") == first.horizon  # the log's own time did not move
    assert len(retention.plan("default").prune) == 0
    assert retention.apply("default", actor="t").pruned == 0
    # The lapsed acme hold does not "expire" early either: judged at the horizon, not the clock.
    runtime.close()


def test_hold_written_during_a_run_is_honoured(runtime: Runtime) -> None:
    retention = retention_for(runtime)
    ext = retention.ext
    original = ext.prune
    placed: list[str] = []

    def prune_after_a_hold(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not placed:  # a hold lands between the plan and the first prune batch
            hold = retention.create_hold("default", case="LATE-1", owner="legal", actor="counsel",
                                         selector={"kind": "tenant"})
            placed.append(hold.hold_id)
        return original(*args, **kwargs)

    ext.prune = prune_after_a_hold  # type: ignore[method-assign]
    run = retention.apply("default", actor="t")
    assert placed and run.pruned == 0
    assert pruned_ids(runtime, "default") == set()


def test_restore_then_prune_again(year: Year) -> None:
    clock = Clock(dt.datetime.now(dt.UTC)).day(LAST_DAY)
    runtime = Runtime(settings(year.data), clock=clock)
    retention = retention_for(runtime)
    retention.apply("default", actor="t")
    segment = retention.segments("default")[0]
    result = retention.restore("default", segment.segment_id, actor="investigator", keep_days=5)
    restored = [e for e in runtime.store.iter_entries("default", segment.start, segment.end)]
    assert result["restored"] == len(expected_pruned("default") & {e.event_id for e in restored})
    assert all(e.pruned is None and leaf_hash(e.body) == e.leaf_hash for e in restored)
    entry = runtime.store.get_entry_by_id("default", event_id("default", 3, "auth.login"))
    assert entry is not None and entry.action == "auth.login" and entry.actor_id
    record = retention.ext.get_prune_record("default", entry.leaf_index)
    assert record is not None and record.state == "restored"
    assert "archive.segment.restore" in system_actions(runtime)
    assert retention.apply("default", actor="t").pruned == 0  # kept for the investigation
    # Six days later (the log receives an event then), the restored events are pruned again.
    from tests.factories import make_event
    from trailseal.pipeline.prepare import prepare

    clock.moment += dt.timedelta(days=6)
    runtime.sequencer.submit_sync("default", [prepare(make_event(action="iam.role.update"),
                                                      log="default", received_at=clock())])
    again = retention.apply("default", actor="t")
    assert again.pruned >= result["restored"]
    assert event_id("default", 3, "auth.login") in pruned_ids(runtime, "default")
    runtime.close()
    code, report = verify_cli(year)
    assert code == 0, report


def test_pruned_is_distinguishable_from_tampered(runtime: Runtime, year: Year) -> None:
    retention_for(runtime).apply("default", actor="t")
    close(runtime)
    conn = sqlite3.connect(year.data / "trailseal.db", isolation_level=None)
    index = {ident: i for i, ident in conn.execute("SELECT leaf_index, event_id FROM entries WHERE log = 'default'")}
    pruned = index[event_id("default", 3, "auth.login")]
    kept = index[event_id("default", 3, "iam.role.update")]
    other = index[event_id("default", 4, "auth.login")]
    billing = index[event_id("default", 3, "billing.invoice.create")]
    tombstone = conn.execute("SELECT body FROM entries WHERE log='default' AND leaf_index=?",
                             (pruned,)).fetchone()[0]
    # 1. a body deleted without any prune record: tampered
    conn.execute("UPDATE entries SET body = x'' WHERE log='default' AND leaf_index = ?", (kept,))
    # 2. a forged tombstone on a kept event: tampered
    conn.execute("UPDATE entries SET body = ? WHERE log='default' AND leaf_index = ?",
                 (tombstone, billing))
    # 3. a pruned leaf whose prune record was deleted: tampered
    conn.execute("DELETE FROM retention_pruned WHERE log='default' AND leaf_index = ?", (other,))
    code, report = verify_cli(year)
    assert code == 1
    found = {(f["kind"], f.get("leaf_index")) for f in report["findings"]}
    assert ("leaf-mismatch", kept) in found
    assert ("pruned-without-record", billing) in found
    assert ("pruned-without-record", other) in found
    assert report["first_bad_leaf"] == min(kept, other)
    assert report["leaves_pruned"] == len(expected_pruned("default")) - 1
