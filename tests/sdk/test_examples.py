"""The examples run: the FastAPI app (middleware + SQLAlchemy hooks) and the background worker."""

from __future__ import annotations

import warnings
from pathlib import Path

from examples import background_worker, fastapi_app

from trailseal.sdk import AuditRecorder


def test_fastapi_example_records_access_and_data_changes(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette prefers httpx2 for its TestClient
        from starlette.testclient import TestClient
    recorder = AuditRecorder()
    app = fastapi_app.create_app(database_url=f"sqlite:///{tmp_path / 'invoices.db'}", audit=recorder)
    with TestClient(app) as http:
        created = http.post("/invoices", json={"customer": "acme", "amount": 120, "iban": "DE89"},
                            headers={"authorization": "Bearer alice", "x-request-id": "req-1"})
        assert created.status_code == 200 and created.headers["x-request-id"] == "req-1"
        http.post("/invoices", json={"customer": "globex", "amount": 80}, headers={"authorization": "Bearer alice"})
        assert http.post("/invoices/1/approve", headers={"authorization": "Bearer bob"}).json()["status"] == "approved"
        assert http.post("/invoices/void-overdue", headers={"authorization": "Bearer carol"}).json() == {"voided": 1}
        assert http.post("/invoices/export", headers={"authorization": "Bearer alice"}).status_code == 200
        assert http.post("/invoices/export").status_code == 401
    # The lifespan stopped the relay after draining the outbox.
    recorder.assert_emitted("invoice.create", count=2, actor="alice")
    create = recorder.find("invoice.create", resource="invoice:1")[0]
    assert create.request_id == "req-1" and create.after is not None and str(create.after["iban"]).startswith("sha256:")
    approve = recorder.assert_emitted("invoice.update", actor="bob", resource="invoice:1")[0]
    assert (approve.before, approve.after) == ({"status": "draft"}, {"status": "approved"})
    void = recorder.assert_emitted("invoice.update", actor="carol", resource="invoice:2")[0]
    assert (void.before, void.after) == ({"status": "draft"}, {"status": "void"})
    recorder.assert_emitted("invoice.export", actor="alice", reason="monthly report")
    access = recorder.find("http.request")
    assert len(access) == 6 and [e.outcome for e in access][-1] == "denied"
    assert access[0].actor.id == "alice" and access[0].actor.type == "user"


def test_background_worker_example_carries_the_requesters_context() -> None:
    recorder = AuditRecorder()
    background_worker.run(recorder, reports=3)
    events = recorder.find("report.generate")
    assert [(e.actor.id, e.actor.type, e.request_id) for e in events] == [
        ("alice", "user", "req-0"), ("bob", "user", "req-1"), ("alice", "user", "req-2")]
    assert [item.log for item in recorder.recorded] == ["default"] * 3
