"""The engine's delivery: several batches in flight, at-least-once, removal only after receipts,
the cheap emit path (same envelope as the general one, errors at emit) and the spooler's batching."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import orjson
import pytest

from trailseal.core.errors import InvalidEvent
from trailseal.sdk import (
    AuditClient,
    MemoryTransport,
    RejectedBatch,
    RetryPolicy,
    SQLiteSpool,
    TransportError,
    audit_context,
)
from trailseal.sdk import engine as engine_module
from trailseal.sdk.context import effective_context
from trailseal.sdk.engine import EngineConfig
from trailseal.sdk.envelope import build_event, complete, keyword_item
from trailseal.sdk.ids import format_time_ns

FAST = RetryPolicy(initial=0.01, maximum=0.05)


class GatedTransport(MemoryTransport):
    """A MemoryTransport whose sends wait on ``gate`` and that records how many overlap."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0
        self.most_active = 0
        self._count = threading.Lock()

    def send(
        self, log: str, event_ids: Sequence[str], bodies: Sequence[bytes], *, proofs: bool
    ) -> list[dict[str, Any]]:
        with self._count:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            self.gate.wait(10)
            time.sleep(0.005)
            return super().send(log, event_ids, bodies, proofs=proofs)
        finally:
            with self._count:
                self.active -= 1


def emit_many(audit: AuditClient, count: int, start: int = 0) -> list[str]:
    with audit_context(actor="svc"):
        return [
            audit.emit(action="doc.write", resource=f"doc:{n}", metadata={"n": n})
            for n in range(start, start + count)
        ]


def test_max_in_flight_sends_batches_concurrently_and_delivers_each_event() -> None:
    sink = GatedTransport()
    with AuditClient(
        transport=sink, batch_size=10, linger=0.001, max_in_flight=4, retry=FAST
    ) as audit:
        ids = emit_many(audit, 400)
        assert audit.flush(20) == 0
        assert audit.stats.sent == 400 and audit.stats.spooled == 0
    assert sink.most_active > 1, "more than one batch in flight"
    assert sorted(e["id"] for e in sink.events) == sorted(ids)  # each event, once
    assert sorted(e["producer"]["seq"] for e in sink.events) == list(range(400))  # seq gap-free
    for _log, size in sink.batches:
        assert size <= 10


def test_two_in_flight_is_the_default_and_one_keeps_the_order_without_the_server() -> None:
    # The server restores producer order across concurrent batches (tests/server/test_ordering.py);
    # a transport that does not (this one) sees it only with one batch in flight.
    assert EngineConfig().max_in_flight == 2
    sink = GatedTransport()
    with AuditClient(transport=sink, batch_size=7, linger=0.001, retry=FAST, max_in_flight=1) as audit:
        ids = emit_many(audit, 200)
        assert audit.flush(20) == 0
    assert sink.most_active == 1
    assert [e["id"] for e in sink.events] == ids
    assert [e["producer"]["seq"] for e in sink.events] == list(range(200))


def test_max_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        EngineConfig(max_in_flight=0)


def test_events_leave_the_spool_only_after_their_receipts(tmp_path: Path) -> None:
    sink = GatedTransport()
    sink.gate.clear()  # every send waits: nothing is acknowledged
    audit = AuditClient(
        transport=sink,
        spool_path=tmp_path / "s.db",
        batch_size=10,
        linger=0.001,
        max_in_flight=3,
        retry=FAST,
    )
    ids = emit_many(audit, 100)
    deadline = time.monotonic() + 10
    while audit.stats.spooled < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert sink.active == 3  # three batches in flight, none answered
    assert audit.stats.spooled == 100 and audit.stats.sent == 0  # all still durable in the spool
    sink.gate.set()
    assert audit.flush(20) == 0
    assert audit.stats.spooled == 0
    audit.close()
    assert sorted(e["id"] for e in sink.events) == sorted(ids)


def test_close_with_batches_in_flight_keeps_them_for_the_next_client(tmp_path: Path) -> None:
    down = MemoryTransport(fail=lambda size: TransportError("down"))
    audit = AuditClient(
        transport=down,
        spool_path=tmp_path / "s.db",
        batch_size=10,
        linger=0.001,
        max_in_flight=4,
        retry=FAST,
    )
    ids = emit_many(audit, 95)
    assert audit.close(0.3) == 95  # several batches were in flight, retrying; none is lost
    assert down.events == []
    sink = MemoryTransport()
    with AuditClient(
        transport=sink, spool_path=tmp_path / "s.db", batch_size=10, max_in_flight=4, retry=FAST
    ) as again:
        assert again.flush(20) == 0
    assert sorted(e["id"] for e in sink.events) == sorted(ids)
    assert sorted(e["producer"]["seq"] for e in sink.events) == list(range(95))


def test_a_failed_batch_is_retried_while_others_succeed_at_least_once() -> None:
    failed: set[int] = set()
    lock = threading.Lock()

    def flaky(size: int) -> Exception | None:
        with lock:
            failed.add(len(failed))
            return TransportError("blip") if len(failed) % 3 == 1 else None

    sink = MemoryTransport(fail=flaky)
    with AuditClient(
        transport=sink, batch_size=5, linger=0.001, max_in_flight=3, retry=FAST
    ) as audit:
        ids = emit_many(audit, 120)
        assert audit.flush(20) == 0
        assert audit.stats.retries > 0 and audit.stats.failed == 0
    assert sorted(e["id"] for e in sink.events) == sorted(ids)


def test_a_refused_event_is_narrowed_down_with_batches_in_flight() -> None:
    def send_poison(size: int) -> Exception | None:
        return None

    class Picky(GatedTransport):
        def send(
            self, log: str, event_ids: Sequence[str], bodies: Sequence[bytes], *, proofs: bool
        ) -> list[dict[str, Any]]:
            if any(b'"poison"' in body for body in bodies):
                raise RejectedBatch("server answered 400: bad", status=400, rejected={})
            return super().send(log, event_ids, bodies, proofs=proofs)

    sink = Picky(fail=send_poison)
    with AuditClient(
        transport=sink, batch_size=16, linger=0.001, max_in_flight=3, retry=FAST
    ) as audit:
        ids = emit_many(audit, 40)
        with audit_context(actor="svc"):
            poison = audit.emit(action="doc.write", resource="doc:x", metadata={"poison": True})
        ids += emit_many(audit, 40, start=40)
        assert audit.flush(20) == 0
        assert audit.stats.failed == 1
        assert [d.event_id for d in audit.dead_letters()] == [poison]
    assert sorted(e["id"] for e in sink.events) == sorted(ids)


def test_the_spooler_writes_a_burst_in_few_transactions(tmp_path: Path) -> None:
    sink = MemoryTransport()
    audit = AuditClient(transport=sink, spool_path=tmp_path / "s.db", batch_size=1000, linger=0.02)
    appends: list[int] = []
    spool = audit._engine.spool
    original = spool.append

    def counting(items: Any, *, dedupe: bool = False) -> int:
        appends.append(len(items))
        return original(items, dedupe=dedupe)

    spool.append = counting  # type: ignore[method-assign]
    emit_many(audit, 2000)
    assert audit.flush(20) == 0
    audit.close()
    assert sum(appends) == 2000
    assert len(appends) < 100, "the spooler writes many events per transaction"


def test_emit_does_not_wake_the_spooler_for_every_event(monkeypatch: pytest.MonkeyPatch) -> None:
    puts = 0

    class CountingQueue(SimpleQueue[Any]):
        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            nonlocal puts
            puts += 1
            super().put(item, block, timeout)

    monkeypatch.setattr(engine_module, "SimpleQueue", CountingQueue)
    audit = AuditClient(transport=MemoryTransport(), linger=0.02)
    emit_many(audit, 1000)
    assert puts < 50, "a burst of emits wakes the spooler a few times, not once per event"
    assert audit.flush(10) == 0
    audit.close()


# -- the direct emit path builds what the general one builds ------------------------------------

CASES: list[dict[str, Any]] = [
    {"action": "doc.read", "resource": "doc:1"},
    {
        "action": "doc.read",
        "resource": ("doc", "1"),
        "actor": {"id": "bob", "type": "user", "ip": None},
        "outcome": "denied",
        "reason": "no",
        "before": {"a": 1},
        "after": {"a": 2},
        "metadata": {"k": [1, 2]},
    },
    {
        "action": "doc.read",
        "resource": {"type": "doc", "id": "1", "name": None},
        "actor": "carol",
        "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "id": "my-id",
        "request_id": "r",
        "trace_id": "t",
        "span_id": "s",
        "source": {"service": "x"},
        "log": "acme",
    },
    {"action": "doc.read", "resource": "doc:1", "time": "2026-01-02T03:04:05Z", "source": {}},
]
NAMES = (
    "action",
    "actor",
    "resource",
    "outcome",
    "reason",
    "before",
    "after",
    "metadata",
    "time",
    "id",
    "request_id",
    "trace_id",
    "span_id",
    "source",
    "log",
)


@pytest.mark.parametrize("fields", CASES)
@pytest.mark.parametrize("client_source", [None, {"service": "billing"}])
def test_keyword_item_matches_build_event(
    fields: dict[str, Any], client_source: dict[str, str] | None
) -> None:
    with audit_context(actor="alice", tenant="t1", request_id="ctx-req", trace_id="ctx-trace"):
        [(log, event_id, body)] = complete(
            [keyword_item("dflt", client_source, *(fields.get(name) for name in NAMES))]
        )
        wire, general_log = build_event(
            None, fields, effective_context(), source=client_source, strict=False
        )
    fast = orjson.loads(body)
    wire["id"], wire["time"] = fast["id"], wire.get("time") if "time" in fields else fast["time"]
    assert fast == wire
    assert event_id == fast["id"] and log == (general_log or "dflt")


def test_emit_raises_at_once_for_what_cannot_be_sent() -> None:
    with AuditClient(transport=MemoryTransport()) as audit:
        with pytest.raises(InvalidEvent, match="action"):
            audit.emit(action="Bad Action", actor="a", resource="doc:1")
        with pytest.raises(InvalidEvent, match="actor"):
            audit.emit(action="doc.read", actor={"type": "user"}, resource="doc:1")
        with pytest.raises(InvalidEvent, match=r"resource\.id"):
            audit.emit(action="doc.read", actor="a", resource={"type": "doc"})
        with pytest.raises(TypeError):  # not JSON: raised on the caller's thread, not lost later
            audit.emit(action="doc.read", actor="a", resource="doc:1", metadata={"x": object()})
        assert audit.stats.queued + audit.stats.spooled + audit.stats.sent == 0


def test_emit_snapshots_mutable_fields() -> None:
    sink = MemoryTransport()
    row = {"status": "draft"}
    with AuditClient(transport=sink) as audit:
        audit.emit(action="doc.write", actor="a", resource="doc:1", before=row)
        row["status"] = "changed after emit"
    assert sink.events[0]["before"] == {"status": "draft"}


@pytest.mark.parametrize("fields", CASES)
def test_the_time_written_on_the_spooler_gives_the_bytes_of_the_whole_event(
    fields: dict[str, Any],
) -> None:
    with audit_context(actor="alice", request_id="ctx-req"):
        item = keyword_item("", {"service": "s"}, *(fields.get(name) for name in NAMES))
    [(_, event_id, body)] = complete([item])
    if "time" in fields or "id" in fields:  # serialized whole on the caller's thread
        assert len(item) == 3 and item[2] == body
        return
    assert len(item) == 4
    event = orjson.loads(body)
    assert list(event)[:3] == ["id", "time", "action"] and event["id"] == event_id
    assert event["time"] == format_time_ns(item[3])
    assert body == orjson.dumps(event)  # byte for byte what orjson makes of the whole event


def test_emit_takes_the_time_when_called_not_when_spooled() -> None:
    sink = MemoryTransport()
    audit = AuditClient(transport=sink, linger=0.001)
    spool = audit._engine.spool
    original = spool.append

    def late(items: Any, *, dedupe: bool = False) -> int:
        time.sleep(0.2)
        return original(items, dedupe=dedupe)

    spool.append = late  # type: ignore[method-assign]
    before = datetime.now(UTC)
    audit.emit(action="doc.read", actor="a", resource="doc:1")
    after = datetime.now(UTC)
    assert audit.flush(10) == 0
    audit.close()
    stamp = datetime.fromisoformat(sink.events[0]["time"].replace("Z", "+00:00"))
    assert before - timedelta(microseconds=1) <= stamp <= after


def test_emit_refuses_text_json_cannot_carry_at_once() -> None:
    with AuditClient(transport=MemoryTransport()) as audit:
        with pytest.raises(TypeError):  # a lone surrogate (e.g. an undecodable file name)
            audit.emit(action="doc.read", actor="a", resource="file:\udcff.txt")
        assert audit.stats.queued + audit.stats.spooled == 0


def test_spool_positions_never_repeat_so_dead_letters_are_kept(tmp_path: Path) -> None:
    def item(n: int) -> tuple[str, str, bytes]:
        return "", f"id-{n}", orjson.dumps({"id": f"id-{n}"})

    spool = SQLiteSpool(tmp_path / "s.db", producer_id="p")
    spool.append([item(0), item(1)])
    first = spool.head(10)
    spool.dead_letter(first[:1], 422, "bad")
    spool.remove_through(first[-1].position)
    spool.close()
    spool = SQLiteSpool(tmp_path / "s.db")  # the spool is empty now
    spool.append([item(2)])
    spool.dead_letter(spool.head(1), 422, "bad too")
    assert [d.event_id for d in spool.dead_letters()] == ["id-0", "id-2"]
    spool.close()


def test_events_being_spooled_still_count_as_queued() -> None:
    """flush() and stats never see an event in neither place while the spooler writes it."""
    sink = GatedTransport()
    sink.gate.clear()
    audit = AuditClient(transport=sink, batch_size=1000, linger=0.001)
    spool = audit._engine.spool
    original = spool.append
    writing = threading.Event()
    release = threading.Event()

    def slow(items: Any, *, dedupe: bool = False) -> int:
        writing.set()
        release.wait(10)
        return original(items, dedupe=dedupe)

    spool.append = slow  # type: ignore[method-assign]
    emit_many(audit, 50)
    assert writing.wait(10)
    stats = audit.stats
    assert stats.queued + stats.spooled == 50
    assert audit.flush(0.05) == 50
    release.set()
    sink.gate.set()
    assert audit.flush(10) == 0
    audit.close()
