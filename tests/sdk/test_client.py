"""AuditClient / AsyncAuditClient over the in-memory transport: batching, retries, policies."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from trailseal.core.errors import InvalidEvent
from trailseal.core.event import Event
from trailseal.sdk import (
    AsyncAuditClient,
    AuditClient,
    ClientClosed,
    MemoryTransport,
    RejectedBatch,
    RetryPolicy,
    SpoolFull,
    TransportError,
    audit_context,
)

FAST = RetryPolicy(initial=0.01, maximum=0.05)


def client(transport: MemoryTransport, **options: Any) -> AuditClient:
    options.setdefault("retry", FAST)
    options.setdefault("linger", 0.01)
    return AuditClient(transport=transport, **options)


def test_emit_builds_the_envelope_from_keywords_and_context() -> None:
    sink = MemoryTransport()
    with client(sink, source={"service": "billing"}, producer_id="billing-1") as audit:
        with audit_context(actor="alice", request_id="req-1", trace_id="t" * 32):
            first = audit.emit(action="invoice.approve", resource="invoice:inv-42", outcome="success",
                               after={"status": "approved"})
        second = audit.emit(action="invoice.view", actor={"id": "bob", "type": "user"}, resource=("invoice", "inv-42"))
        assert audit.flush(5) == 0
    one, two = sink.events
    assert one["id"] == first and two["id"] == second and first < second  # UUIDv7, increasing
    assert one["actor"] == {"id": "alice"} and one["request_id"] == "req-1" and one["trace_id"] == "t" * 32
    assert one["resource"] == {"type": "invoice", "id": "inv-42"} and one["after"] == {"status": "approved"}
    assert one["source"] == {"service": "billing"}
    assert one["producer"] == {"id": "billing-1", "seq": 0} and two["producer"] == {"id": "billing-1", "seq": 1}
    assert "request_id" not in two
    for event in sink.events:
        Event.from_dict(event)  # a valid envelope


def test_emit_takes_an_event_value_and_keywords_override() -> None:
    sink = MemoryTransport()
    event = Event.from_dict({"time": "2026-01-02T03:04:05Z", "actor": {"id": "ci"}, "action": "deploy.start",
                             "resource": {"type": "service", "id": "api"}, "producer": {"id": "other", "seq": 9}})
    with client(sink) as audit:
        audit.emit(event, outcome="failure")
        audit.emit({"actor": {"id": "ci"}, "action": "deploy.end", "resource": {"type": "service", "id": "api"}})
    first, second = sink.events
    assert first["id"] == event.id and first["time"] == "2026-01-02T03:04:05.000000Z" and first["outcome"] == "failure"
    assert first["producer"]["seq"] == 0 and first["producer"]["id"] != "other"  # the client's own producer
    assert second["action"] == "deploy.end" and second["producer"]["seq"] == 1


@pytest.mark.parametrize(("fields", "field"), [
    ({"resource": "doc:1", "actor": "a"}, "action"),
    ({"action": "Doc.Read", "resource": "doc:1", "actor": "a"}, "action"),
    ({"action": "doc.read", "resource": "doc:1"}, "actor.id"),
    ({"action": "doc.read", "actor": "a"}, "resource"),
    ({"action": "doc.read", "actor": "a", "resource": "no-colon"}, "resource"),
    ({"action": "doc.read", "actor": "a", "resource": "doc:1", "outcome": "ok"}, "outcome"),
])
def test_emit_refuses_what_cannot_be_valid(fields: dict[str, Any], field: str) -> None:
    with client(MemoryTransport()) as audit, pytest.raises(InvalidEvent) as info:
        audit.emit(**fields)
    assert info.value.field == field


def test_strict_mode_runs_full_validation() -> None:
    with client(MemoryTransport(), strict=True) as audit, pytest.raises(InvalidEvent, match=r"actor\.ip"):
        audit.emit(action="doc.read", actor={"id": "a", "ip": "not-an-ip"}, resource="doc:1")


def test_batches_by_size_and_linger() -> None:
    sink = MemoryTransport()
    with client(sink, batch_size=50, linger=0.2) as audit:
        for n in range(120):
            audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
        deadline = time.monotonic() + 5
        while len(sink.events) < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(size for _, size in sink.batches) >= 100
        assert max(size for _, size in sink.batches) == 50  # never more than batch_size
        assert audit.flush(5) == 0  # flush sends the partial batch without lingering
    assert [e["producer"]["seq"] for e in sink.events] == list(range(120))


def test_retries_honor_retry_after_and_deliver_exactly_once_in_order() -> None:
    failures = iter([TransportError("503", status=503, retry_after=0.2), TransportError("connect", status=0)])
    attempts: list[float] = []

    def fail(size: int) -> Exception | None:
        attempts.append(time.monotonic())
        return next(failures, None)

    sink = MemoryTransport(fail)
    with client(sink) as audit:
        ids = [audit.emit(action="doc.read", actor="a", resource=f"doc:{n}") for n in range(10)]
        assert audit.flush(10) == 0
        assert audit.stats.retries == 2 and audit.stats.sent == 10
    assert attempts[1] - attempts[0] >= 0.2, "Retry-After is a floor for the wait"
    assert [e["id"] for e in sink.events] == ids


def test_retry_of_an_acknowledged_batch_is_a_duplicate_not_a_second_event() -> None:
    sink = MemoryTransport()
    lost_answer = {"done": False}
    real_send = sink.send

    def send_then_lose_answer(log: str, ids: Any, bodies: Any, *, proofs: bool) -> Any:
        receipts = real_send(log, ids, bodies, proofs=proofs)
        if not lost_answer["done"]:
            lost_answer["done"] = True
            raise TransportError("read timeout")  # committed on the server, answer lost
        return receipts

    sink.send = send_then_lose_answer  # type: ignore[method-assign]
    with client(sink) as audit:
        for n in range(5):
            audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
        assert audit.flush(5) == 0
        assert audit.stats.duplicates == 5
    assert len(sink.events) == 5


def test_rejected_events_are_dead_lettered_and_the_rest_delivered_in_order() -> None:
    calls = {"n": 0}

    def fail(size: int) -> Exception | None:
        calls["n"] += 1
        if calls["n"] == 1:
            return RejectedBatch("422", status=422, rejected={2: "metadata: too deep"})
        return None

    sink = MemoryTransport(fail)
    with client(sink, batch_size=10) as audit:
        ids = [audit.emit(action="doc.read", actor="a", resource=f"doc:{n}") for n in range(6)]
        assert audit.flush(5) == 0
        assert audit.stats.failed == 1
        dead = audit.dead_letters()
    assert [d.event_id for d in dead] == [ids[2]] and dead[0].status == 422 and "too deep" in dead[0].reason
    assert [e["id"] for e in sink.events] == ids[:2] + ids[3:]


def test_unattributed_rejection_is_narrowed_down_by_halving() -> None:
    poison = {"id": None}

    def fail(size: int) -> Exception | None:
        return None

    sink = MemoryTransport(fail)
    real_send = sink.send

    def send(log: str, ids: Any, bodies: Any, *, proofs: bool) -> Any:
        if poison["id"] in ids:
            raise RejectedBatch("400", status=400)
        return real_send(log, ids, bodies, proofs=proofs)

    sink.send = send  # type: ignore[method-assign]
    with client(sink, batch_size=16, linger=0.5) as audit:
        ids = []
        for n in range(16):
            ids.append(audit.emit(action="doc.read", actor="a", resource=f"doc:{n}"))
            if n == 11:
                poison["id"] = ids[-1]
        assert audit.flush(5) == 0
        assert [d.event_id for d in audit.dead_letters()] == [ids[11]]
    assert [e["id"] for e in sink.events] == ids[:11] + ids[12:]


def test_full_policy_raise_and_block_never_drop(tmp_path: Path) -> None:
    down = MemoryTransport(lambda size: TransportError("down"))
    with client(down, spool_max_events=5, max_queue=3, on_full="raise") as audit:
        accepted = 0
        with pytest.raises(SpoolFull, match="spool: full"):
            for n in range(100):
                audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
                accepted += 1
                deadline = time.monotonic() + 2  # let the spooler move it, if the spool has room
                while audit.stats.queued and audit.stats.spooled < 5 and time.monotonic() < deadline:
                    time.sleep(0.001)
        assert accepted == 8  # 5 in the spool, 3 in memory
        stats = audit.stats
        assert (stats.spooled, stats.queued) == (5, 3)
        assert audit.close(0.1) == 8
    with client(down, spool_max_events=2, max_queue=1, on_full="block", block_timeout=0.3) as audit:
        for n in range(3):
            audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
            time.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(SpoolFull):
            audit.emit(action="doc.read", actor="a", resource="doc:x")
        assert time.monotonic() - started >= 0.3
        audit.close(0.1)


def test_block_policy_waits_for_room_then_succeeds() -> None:
    gate = threading.Event()
    sink = MemoryTransport(lambda size: None if gate.is_set() else TransportError("down"))
    with client(sink, spool_max_events=2, max_queue=1, block_timeout=5) as audit:
        for n in range(3):
            audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
            time.sleep(0.05)
        threading.Timer(0.2, gate.set).start()
        audit.emit(action="doc.read", actor="a", resource="doc:3")  # blocks until the server is back
        assert audit.flush(5) == 0
    assert len(sink.events) == 4


def test_closed_client_refuses_events_and_spool_keeps_undelivered(tmp_path: Path) -> None:
    down = MemoryTransport(lambda size: TransportError("down"))
    audit = client(down, spool_path=tmp_path / "spool.db")
    producer = audit.producer_id
    for n in range(3):
        audit.emit(action="doc.read", actor="a", resource=f"doc:{n}")
    assert audit.close(0.2) == 3
    with pytest.raises(ClientClosed):
        audit.emit(action="doc.read", actor="a", resource="doc:x")
    sink = MemoryTransport()
    with client(sink, spool_path=tmp_path / "spool.db") as again:
        assert again.producer_id == producer
        again.emit(action="doc.read", actor="a", resource="doc:3")
        assert again.flush(5) == 0
    assert [e["producer"]["seq"] for e in sink.events] == [0, 1, 2, 3]
    assert {e["producer"]["id"] for e in sink.events} == {producer}


def test_spool_hand_off_is_durable_and_deduplicated(tmp_path: Path) -> None:
    sink = MemoryTransport()
    events = [{"id": f"evt-{n}", "time": "2026-01-01T00:00:00Z", "actor": {"id": "a"}, "action": "doc.read",
               "resource": {"type": "doc", "id": str(n)}} for n in range(3)]
    with client(sink, spool_path=tmp_path / "spool.db") as audit:
        assert audit.spool(events) == 3
        assert audit.spool(events[1:]) == 0  # a relay that re-sends after a crash
        assert audit.flush(5) == 0
    assert [e["id"] for e in sink.events] == ["evt-0", "evt-1", "evt-2"]


def test_async_client_twin() -> None:
    sink = MemoryTransport()

    async def main() -> list[str]:
        async with AsyncAuditClient(transport=sink, linger=0.01, retry=FAST) as audit:
            with audit_context(actor="svc", tenant="acme"):
                ids = [await audit.emit(action="job.run", resource=f"job:{n}") for n in range(5)]
            assert await audit.spool([{"actor": {"id": "x"}, "action": "job.done", "resource": {"type": "job", "id": "9"}}]) == 1
            assert await audit.flush(5) == 0
            assert audit.stats.sent == 6
        return ids

    ids = asyncio.run(main())
    assert [e["id"] for e in sink.events][:5] == ids
    assert sink.batches[0][0] == "acme"  # the tenant selects the log


def test_client_needs_a_destination() -> None:
    with pytest.raises(ValueError, match="url"):
        AuditClient()
