"""SDK integrations against one real ``trailseal serve``: receipts, API key and tenants, the
FastAPI example with the server down and back, SQLAlchemy outbox relay, the CI deploy script."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from examples import fastapi_app

from tests.integration.conftest import REPO, TRAILSEAL, ServerProcess, free_port
from tests.integration.sdk_kit import server_events
from trailseal.core.keys import parse_public_json
from trailseal.sdk import AuditClient, RetryPolicy, audit_context

FAST = RetryPolicy(initial=0.05, maximum=0.3)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("sdk") / "data").start()
    yield server
    server.stop()


def test_receipts_are_verified_and_the_log_monitored_across_restarts(live: ServerProcess, tmp_path: Path) -> None:
    keys = parse_public_json((live.data_dir / "keys" / "default.pub.json").read_bytes())  # obtained out of band
    sizes = []
    for _round in range(2):  # the second client reloads the last verified checkpoint from the spool
        with AuditClient(live.url, spool_path=tmp_path / "spool.db", verifier_keys=keys, batch_size=150,
                         linger=0.01, retry=FAST) as audit:
            for n in range(300):
                audit.emit(action="doc.read", actor="auditor", resource=f"doc:{n}")
            assert audit.flush(60) == 0
            stats = audit.stats
            assert (stats.verified, stats.verification_failures) == (300, 0)
            monitor = audit._engine.monitor
            assert monitor is not None
            latest = monitor.latest("default")
            assert latest is not None
            sizes.append(latest.tree_size)
    assert sizes[1] == sizes[0] + 300


def test_api_key_header_and_tenant_log(live: ServerProcess) -> None:
    with AuditClient(live.url, api_key="test-key", linger=0.01) as audit:
        with audit_context(actor="svc", tenant="acme"):
            audit.emit(action="tenant.event", resource="thing:1")
        assert audit.flush(30) == 0
    logs = {entry["log"] for entry in httpx.get(f"{live.url}/v1/logs").json()["logs"]}
    assert "acme" in logs
    assert [e["action"] for e in server_events(live.url, "acme")] == ["tenant.event"]


def test_fastapi_example_with_the_server_down_then_back(live: ServerProcess, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient
    spool = tmp_path / "app.spool"
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    audit = AuditClient(down, spool_path=spool, retry=FAST, linger=0.01, timeout=1)
    app = fastapi_app.create_app(database_url=f"sqlite:///{tmp_path / 'invoices.db'}", audit=audit)
    with TestClient(app) as http:
        for n in range(5):
            answer = http.post("/invoices", json={"customer": f"c{n}", "amount": n},
                               headers={"authorization": "Bearer alice", "x-request-id": f"down-{n}"})
            assert answer.status_code == 200, "the app works while the audit service is down"
        assert http.post("/invoices/void-overdue", headers={"authorization": "Bearer bob"}).json() == {"voided": 5}
    # The lifespan drained the outbox into the spool and closed the client: nothing was sent.
    assert audit.stats.sent == 0
    producer = audit.producer_id
    with AuditClient(live.url, spool_path=spool, linger=0.01) as back:  # the service is back
        assert back.flush(60) == 0
    events = [e for e in server_events(live.url) if e.get("producer", {}).get("id") == producer]
    actions = sorted(e["action"] for e in events)
    assert actions == sorted(["http.request"] * 6 + ["invoice.create"] * 5 + ["invoice.update"] * 5)
    assert [e["producer"]["seq"] for e in events] == list(range(16))
    creates = [e for e in events if e["action"] == "invoice.create"]
    assert sorted(e["request_id"] for e in creates) == [f"down-{n}" for n in range(5)]
    updates = [e for e in events if e["action"] == "invoice.update"]
    assert all(e["actor"]["id"] == "bob" and e["before"] == {"status": "draft"} and e["after"] == {"status": "void"}
               for e in updates)


def test_sqlalchemy_rollback_sends_nothing_commit_sends_everything(live: ServerProcess, tmp_path: Path) -> None:
    from sqlalchemy import create_engine, delete, update
    from sqlalchemy.orm import sessionmaker

    Invoice = fastapi_app.Invoice
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    fastapi_app.Base.metadata.create_all(engine)
    make_session = sessionmaker(engine)
    fastapi_app.hooks.install(make_session)
    with AuditClient(live.url, spool_path=tmp_path / "spool.db", linger=0.01) as audit:
        relay = fastapi_app.hooks.relay(engine, audit, interval=0.2).start()
        with audit_context(actor="dba"), make_session() as session:
            session.add_all([Invoice(id=n, customer="x", amount=n) for n in (1, 2, 3)])
            session.commit()
            session.execute(update(Invoice).where(Invoice.amount >= 2).values(amount=Invoice.amount * 10))
            session.execute(delete(Invoice).where(Invoice.id == 1))
            session.rollback()  # neither the bulk update nor the delete happened
            session.execute(delete(Invoice).where(Invoice.id == 3))
            session.commit()
        relay.stop()
        assert audit.flush(30) == 0
        producer = audit.producer_id
    events = [e for e in server_events(live.url) if e.get("producer", {}).get("id") == producer]
    assert [(e["action"], e["resource"]["id"]) for e in events] == [
        ("invoice.create", "1"), ("invoice.create", "2"), ("invoice.create", "3"), ("invoice.delete", "3")]
    assert events[3]["before"] == {"id": 3, "customer": "x", "amount": 3, "status": "draft", "iban": None}
    assert {e["actor"]["id"] for e in events} == {"dba"}


def test_ci_deploy_step_example(live: ServerProcess, tmp_path: Path) -> None:
    env = dict(os.environ, TRAILSEAL_URL=live.url, TRAILSEAL=" ".join(TRAILSEAL), SERVICE="checkout",
               ENVIRONMENT="prod", GIT_SHA="abc123", PIPELINE_ID="p-77", ARTIFACTS=str(tmp_path / "receipts"))
    script = str(REPO / "examples" / "ci_deploy_step.sh")
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    events = [e for e in server_events(live.url) if e["id"].startswith("deploy-p-77-")]
    assert [(e["action"], e["outcome"]) for e in events] == [("deploy.rollout.start", "unknown"),
                                                             ("deploy.rollout.finish", "success")]
    assert {"pipeline": "p-77", "git_sha": "abc123"}.items() <= events[0]["metadata"].items()
    assert (tmp_path / "receipts" / "deploy.rollout.finish.json").exists()
    failing = subprocess.run(["bash", script], env={**env, "PIPELINE_ID": "p-78", "DEPLOY_COMMAND": "exit 3"},
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert failing.returncode == 3
    assert [e["outcome"] for e in server_events(live.url) if e["id"] == "deploy-p-78-1-finish"] == ["failure"]
