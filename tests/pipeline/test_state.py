"""Pipeline state stores (memory and SQLite), producer tracking, subject-key destruction."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from trailseal.pipeline.producers import ProducerStats, observe
from trailseal.pipeline.sampling import Count, SamplingPolicy, interval_start, summary_event
from trailseal.pipeline.state import PipelineState, QuarantineRecord, TenantPolicy
from trailseal.pipeline.state_sqlite import open_sqlite_state
from trailseal.pipeline.subjects import MemorySubjectKeys, SQLiteSubjectKeys
from trailseal.schema.registry import SchemaVersion
from trailseal.schema.validator import Violation
from trailseal.storage.sqlite import SQLiteStore

AT = "2026-11-28T10:00:00.000000Z"


@pytest.fixture(params=["memory", "sqlite"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PipelineState]:
    if request.param == "memory":
        yield PipelineState()
        return
    store = SQLiteStore(tmp_path / "trailseal.db")
    found, sqlite_state = open_sqlite_state(store)
    open_sqlite_state(store)  # migrations are idempotent
    yield found
    sqlite_state.close()
    store.close()


def record(qid: str, event_id: str = "e-1", content: bytes = b"c" * 32) -> QuarantineRecord:
    return QuarantineRecord(qid, "default", event_id, "auth.login", AT, (Violation("/outcome", "required", "missing"),),
                            {"action": "auth.login"}, b"sealed", content, "auth.*", 1)


def test_quarantine_is_idempotent_per_event_and_content(state: PipelineState) -> None:
    first = state.quarantine.put(record("q-1"))
    assert state.quarantine.put(record("q-2")) == first  # a retry: same entry
    other = state.quarantine.put(record("q-3", content=b"d" * 32))
    assert other.quarantine_id == "q-3"
    assert [r.quarantine_id for r in state.quarantine.list_quarantine("default")] == ["q-1", "q-3"]
    state.quarantine.update(replace(first, status="redriven", sealed=None, redriven_at=AT, leaf_index=7))
    got = state.quarantine.get("default", "q-1")
    assert got is not None and got.status == "redriven" and got.sealed is None and got.leaf_index == 7
    assert [r.quarantine_id for r in state.quarantine.list_quarantine("default")] == ["q-3"]
    assert len(state.quarantine.list_quarantine("default", status=None)) == 2
    assert state.quarantine.list_quarantine("other") == []
    assert got.to_json()["violations"][0]["pointer"] == "/outcome"


def test_policies_schemas_producers_counts(state: PipelineState) -> None:
    assert state.policies.get_policy("default") is None
    policy = TenantPolicy(unknown_action="quarantine").to_json()
    state.policies.set_policy("default", policy, AT)
    assert TenantPolicy.from_json(state.policies.get_policy("default") or {}).unknown_action == "quarantine"
    state.schemas.add_schema("default", SchemaVersion("x.*", 1, {"type": "object"}, "backward", AT))
    assert [s.key for s in state.schemas.list_schemas("default")] == ["x.*"]
    state.producers.observe_many("default", [("p", 1), ("p", 2), ("p", 5), ("p", 2), ("q", None)], AT)
    state.producers.observe_many("default", [("p", 4)], AT)
    stats = {s.producer_id: s for s in state.producers.list_producers("default")}
    assert (stats["p"].events, stats["p"].gaps, stats["p"].duplicates, stats["p"].late) == (5, 1, 1, 1)
    assert stats["q"].capture_rate is None and stats["p"].capture_rate == 0.8
    state.counts.add_counts("default", [Count(AT, "k8s.pods.get", "k8s.*", 0.1, 10, 1)])
    state.counts.add_counts("default", [Count(AT, "k8s.pods.get", "k8s.*", 0.1, 5, 2)])
    assert [c.seen for _, c in state.counts.pending_counts()] == [15]
    state.counts.clear_counts("default", AT)
    assert state.counts.pending_counts() == []


def test_observe_counts_gaps_duplicates_and_late_arrivals() -> None:
    stats = ProducerStats("p")
    for seq in (10, 11, 14, 12, 11, 9, 20):
        stats = observe(stats, seq, AT)
    assert (stats.first_seq, stats.max_seq) == (9, 20)
    assert stats.missing == (13, 15, 16, 17, 18, 19)
    assert (stats.gaps, stats.duplicates, stats.late) == (6, 1, 1)
    assert stats.capture_rate == pytest.approx(6 / 12)


def test_sampling_summary_is_deterministic() -> None:
    start = interval_start("2026-11-28T10:00:59.999999Z", 60)
    assert start == "2026-11-28T10:00:00.000000Z"
    counts = [Count(start, "k8s.pods.get", "k8s.*", 0.1, 100, 9), Count(start, "k8s.pods.list", "k8s.*", 0.1, 50, 6)]
    event = summary_event("default", start, 60, counts)
    assert event == summary_event("default", start, 60, list(reversed(counts)))
    assert (event["metadata"]["seen"], event["metadata"]["kept"]) == (150, 15)
    assert event["time"] == "2026-11-28T10:01:00.000000Z"
    assert SamplingPolicy.from_json(SamplingPolicy().to_json()) == SamplingPolicy()


def test_memory_subject_keys() -> None:
    keys = MemorySubjectKeys()
    key_id, key = keys.key_for("default", "tok_a", AT)
    assert keys.key_for("default", "tok_a", AT) == (key_id, key) and keys.get("default", key_id) == key
    assert keys.forget("default", "tok_a", AT) == 1 and keys.get("default", key_id) is None
    assert keys.key_for("default", "tok_a", AT)[0] != key_id  # later data: a new key


def test_forgotten_sqlite_keys_leave_no_byte_behind(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "subjects.db"
    keys = SQLiteSubjectKeys(path)
    assert path.stat().st_mode & 0o777 == 0o600
    doomed = [keys.key_for("default", f"tok_{n}", AT) for n in range(8)]
    kept_id, kept = keys.key_for("default", "tok_keep", AT)
    for n in range(8):
        assert keys.forget("default", f"tok_{n}", AT) == 1
    assert keys.get("default", doomed[0][0]) is None and keys.get("default", kept_id) == kept
    raw = b"".join(p.read_bytes() for p in path.parent.iterdir() if p.is_file())
    assert kept in raw  # the scan would see a key that is still there ...
    for _key_id, key in doomed:
        assert key not in raw, "a destroyed key is still on disk"  # ... and sees none of the others
    keys.close()
