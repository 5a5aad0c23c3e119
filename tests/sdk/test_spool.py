"""Spool conformance: every Spool implementation keeps order, stamps gap-free sequences, dedupes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from trailseal.sdk import MemorySpool, SpoolLocked, SQLiteSpool
from trailseal.sdk.spool import PendingEvent, Spool


def item(n: int, log: str = "") -> PendingEvent:
    return PendingEvent(log, f"id-{n}", orjson.dumps({"id": f"id-{n}", "n": n}))


@pytest.fixture(params=["memory", "sqlite"])
def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Spool]]:
    opened: list[Spool] = []

    def make() -> Spool:
        spool: Spool = (
            MemorySpool("p-1")
            if request.param == "memory"
            else SQLiteSpool(tmp_path / "s.db", producer_id="p-1")
        )
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        try:
            spool.close()
        except Exception:
            pass


def bodies(spool: Spool, limit: int = 1000) -> list[dict[str, object]]:
    return [orjson.loads(r.body) for r in spool.head(limit)]


def test_append_stamps_gap_free_seq_per_log_and_keeps_order(
    make_spool: Callable[[], Spool],
) -> None:
    spool = make_spool()
    assert spool.append([item(0), item(1), item(2, "acme"), item(3)]) == 4
    assert spool.append([item(4, "acme")]) == 1
    first = bodies(spool)
    assert [(e["n"], e["producer"]) for e in first] == [
        (0, {"id": "p-1", "seq": 0}),
        (1, {"id": "p-1", "seq": 1}),
    ]
    head = spool.head(10)
    spool.remove_through(head[-1].position)
    run = bodies(spool)  # the head run is for log "acme" now
    assert [(e["n"], e["producer"]["seq"]) for e in run] == [(2, 0)]  # type: ignore[index]
    assert spool.head(10)[0].log == "acme"
    spool.remove_through(spool.head(10)[-1].position)
    assert [e["n"] for e in bodies(spool)] == [3]
    assert bodies(spool)[0]["producer"] == {"id": "p-1", "seq": 2}
    assert spool.pending()[0] == 2


def test_dedupe_skips_ids_already_spooled(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    assert spool.append([item(0), item(1)], dedupe=True) == 2
    assert spool.append([item(1), item(2), item(2)], dedupe=True) == 1
    assert [e["n"] for e in bodies(spool)] == [0, 1, 2]
    assert [e["producer"]["seq"] for e in bodies(spool)] == [0, 1, 2]  # type: ignore[index]


def test_dead_letters_leave_the_spool(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    spool.append([item(n) for n in range(4)])
    head = spool.head(10)
    spool.dead_letter([head[1], head[3]], 422, "actor.id: required")
    assert [e["n"] for e in bodies(spool)] == [0, 2]
    dead = spool.dead_letters()
    assert [(d.event()["n"], d.status, d.reason) for d in dead] == [
        (1, 422, "actor.id: required"),
        (3, 422, "actor.id: required"),
    ]
    count, size = spool.pending()
    assert count == 2 and size == sum(len(r.body) for r in spool.head(10))


def test_checkpoint_memory(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    assert spool.load_checkpoint("default") is None
    spool.save_checkpoint("default", b"note")
    assert spool.load_checkpoint("default") == b"note"


def test_sqlite_spool_survives_reopen_with_producer_and_counters(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = SQLiteSpool(path)
    producer = spool.producer_id
    spool.append([item(0), item(1)])
    spool.remove_through(spool.head(1)[0].position)
    spool.save_checkpoint("default", b"cp")
    spool.close()
    again = SQLiteSpool(path)
    try:
        assert again.producer_id == producer
        assert again.pending()[0] == 1
        again.append([item(2)])
        assert [e["producer"]["seq"] for e in bodies(again)] == [1, 2]  # type: ignore[index]
        assert again.load_checkpoint("default") == b"cp"
    finally:
        again.close()


def test_sqlite_spool_is_locked_to_one_client(tmp_path: Path) -> None:
    spool = SQLiteSpool(tmp_path / "spool.db")
    try:
        with pytest.raises(SpoolLocked, match="in use by another client"):
            SQLiteSpool(tmp_path / "spool.db")
    finally:
        spool.close()
    SQLiteSpool(tmp_path / "spool.db").close()  # released on close


def test_sqlite_spool_rejects_unknown_sync_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sync"):
        SQLiteSpool(tmp_path / "s.db", sync="sometimes")


def test_batches_read_past_those_in_flight_and_are_removed_in_any_order(
    make_spool: Callable[[], Spool],
) -> None:
    spool = make_spool()
    spool.append([item(n) for n in range(10)])
    first = spool.batch(4)
    assert first is not None and len(first) == 4
    second = spool.batch(4, after=first.last)  # while the first is in flight
    assert second is not None and [orjson.loads(b)["n"] for b in second.bodies] == [4, 5, 6, 7]
    assert second.event_ids == [f"id-{n}" for n in range(4, 8)] and second.first > first.last
    spool.remove(second.first, second.last)  # acknowledged first
    assert spool.pending()[0] == 6
    assert [e["n"] for e in bodies(spool)] == [0, 1, 2, 3, 8, 9]
    spool.remove(first.first, first.last)
    assert [e["n"] for e in bodies(spool)] == [8, 9]
    count, size = spool.pending()
    assert count == 2 and size == sum(len(r.body) for r in spool.head(10))
    assert spool.batch(10, after=10**9) is None


def test_a_batch_is_one_run_of_one_log(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    spool.append([item(0), item(1, "acme"), item(2, "acme"), item(3)])
    runs = []
    after = 0
    while (batch := spool.batch(10, after)) is not None:
        runs.append((batch.log, [orjson.loads(b)["n"] for b in batch.bodies]))
        after = batch.last
    assert runs == [("", [0]), ("acme", [1, 2]), ("", [3])]


def test_plain_tuples_are_items(make_spool: Callable[[], Spool]) -> None:
    spool = make_spool()
    assert spool.append([("", "id-0", orjson.dumps({"id": "id-0", "n": 0})), item(1)]) == 2
    assert [e["producer"]["seq"] for e in bodies(spool)] == [0, 1]  # type: ignore[index]
