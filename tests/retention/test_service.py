"""The run journal on the memory backend: adoption of a segment a killed run did not record,
resumed runs, and the audit event recorded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_event
from tests.retention.conftest import START, Clock
from trailseal.core.errors import ConflictError, FormatError, NotFoundError
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.retention.archive import SealOptions, seal_segment
from trailseal.retention.service import Retention, RetentionConfig
from trailseal.retention.targets import LocalTarget
from trailseal.sequencer.runner import Sequencer
from trailseal.storage.memory import MemoryStore
from trailseal.storage.retention import RunRecord


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = MemoryStore()
    keys: dict[str, Keyring] = {}

    def keyring(log: str) -> Keyring:
        return keys.setdefault(log, Keyring.generate(f"test.example/{log}", "2025-01-01T00:00:00Z"))

    clock = Clock(START)
    sequencer = Sequencer(store, keyring, lambda log: f"test.example/{log}", clock)
    for day in range(100):
        clock.day(day)
        sequencer.submit_sync("default", [prepare(make_event(action="auth.login", time=clock()),
                                                  log="default", received_at=clock())
                                          for _ in range(3)])
    target = LocalTarget(tmp_path / "archive")
    retention = Retention(store, keyring_for=keyring, target=target, clock=clock,
                          sequencer=sequencer, config=RetentionConfig(segment_leaves=64), matcher=None)
    retention.set_policy("default", "*", 30, actor="dpo")
    yield retention, store, keyring, target, clock
    sequencer.close()


def test_a_sealed_but_unrecorded_segment_is_adopted(setup) -> None:  # type: ignore[no-untyped-def]
    retention, store, keyring, target, clock = setup
    # A killed run sealed [0, 100) (another segment size) and died before recording it.
    latest = store.latest_checkpoint("default")
    seal_segment(store, "default", "test.example/default", 0, 100, latest, keyring("default"),
                 target, clock(), SealOptions())
    retention.ext.put_run(RunRecord("killed", "default", clock(), retention.horizon("default"), "t"))
    run = retention.apply("default", actor="t")
    assert run.run_id == "killed" and run.resumed == 1
    segments = retention.segments("default")
    assert [(s.start, s.end) for s in segments] == [(0, 100), (100, 164), (164, 210)]
    assert run.pruned == (99 - 30 + 1) * 3
    runs = [e for e in store.iter_entries("_system") if b'"retention.run"' in e.body]
    assert [e.event_id for e in runs] == ["retention-run-killed"]
    # the same run recorded again (a crash after recording, before marking) is a duplicate
    retention._record(run)
    assert len([e for e in store.iter_entries("_system") if b'"retention.run"' in e.body]) == 1


def test_a_conflicting_object_in_the_target_stops_the_run(setup) -> None:  # type: ignore[no-untyped-def]
    retention, _store, _keyring, target, _clock = setup
    target.put("default/000000000000-000000000064.manifest", b"garbage\n")
    with pytest.raises(Exception, match="already exists"):
        retention.apply("default", actor="t")
    assert retention.ext.count_pruned("default") == (0, 0)


def test_hold_lifecycle_errors(setup) -> None:  # type: ignore[no-untyped-def]
    retention, *_ = setup
    with pytest.raises(FormatError, match="query engine"):
        retention.create_hold("default", case="C", owner="o", actor="t",
                              selector={"kind": "query", "q": "actor.id:alice"})
    with pytest.raises(FormatError, match="not in the future"):
        retention.create_hold("default", case="C", owner="o", actor="t", selector={"kind": "tenant"},
                              expires_at="2020-01-01T00:00:00Z")
    hold = retention.create_hold("default", case="C", owner="o", actor="t", selector={"kind": "tenant"})
    assert retention.hold_status(hold) == "active"
    retention.release_hold(hold.hold_id, actor="t")
    with pytest.raises(ConflictError):
        retention.release_hold(hold.hold_id, actor="t")
    with pytest.raises(ConflictError):
        retention.change_hold(hold.hold_id, actor="t", owner="x")
    with pytest.raises(NotFoundError):
        retention.get_hold("hold-nope")
    with pytest.raises(NotFoundError):
        retention.delete_policy("nope", actor="t")
    assert retention.apply("default", actor="t").pruned == (99 - 30 + 1) * 3  # released: no effect


def test_query_holds_through_the_query_engine_interface(setup) -> None:  # type: ignore[no-untyped-def]
    retention, store, keyring, target, clock = setup
    asked: list[tuple[str, str, int, int]] = []

    def match_leaves(store_, log: str, query: str, start: int, end: int) -> list[int]:
        asked.append((log, query, start, end))
        return [i for i in range(start, end) if i % 2 == 0]

    with_engine = Retention(store, keyring_for=keyring, target=target, clock=clock,
                            sequencer=retention.sequencer, config=retention.config,
                            matcher=match_leaves)
    with_engine.create_hold("default", case="Q-1", owner="legal", actor="t",
                            selector={"kind": "query", "q": "actor.id:alice"})
    run = with_engine.apply("default", actor="t")
    pruned = {e.leaf_index for e in store.iter_entries("default") if e.pruned is not None}
    assert pruned and all(i % 2 == 1 for i in pruned)
    assert run.pruned == run.held == len(pruned) == 105  # expired: leaves 0..209, half even
    assert ("default", "actor.id:alice", 0, 300) in asked
    # Without the engine the same hold keeps everything (fail safe) and the plan says so.
    plan = retention.plan("default")
    assert len(plan.prune) == 0 and plan.warnings
