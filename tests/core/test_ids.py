"""UUIDv7 generation (RFC 9562 §5.7, §6.2 method 1): layout, monotonic counter, rollover, fork."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from trailseal.core import ids
from trailseal.core.ids import new_event_id


@pytest.fixture(autouse=True)
def _restore_generator_state() -> Iterator[None]:
    """Tests that fake the clock must not leave a future timestamp behind for other tests."""
    saved = ids._last_ms, ids._counter, ids._prefix
    yield
    ids._last_ms, ids._counter, ids._prefix = saved


def fields(event_id: str) -> tuple[int, int, int, int]:
    """(unix_ts_ms, 26-bit counter, 48 random bits, version) of an id."""
    value = uuid.UUID(event_id).int
    counter = ((value >> 64) & 0xFFF) << 14 | (value >> 48) & 0x3FFF
    return value >> 80, counter, value & (1 << 48) - 1, (value >> 76) & 0xF


def test_layout_version_variant_and_random_tail() -> None:
    made = [new_event_id() for _ in range(2000)]
    for event_id in made:
        parsed = uuid.UUID(event_id)
        assert str(parsed) == event_id and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    tails = {fields(event_id)[2] for event_id in made}
    assert len(tails) == len(made)  # 48 fresh random bits per id


def test_counter_counts_within_a_millisecond_and_reseeds_at_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_800_000_000_000 * 1_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    first = [new_event_id() for _ in range(100)]
    assert {fields(i)[0] for i in first} == {1_800_000_000_000}
    counters = [fields(i)[1] for i in first]
    assert counters == list(range(counters[0], counters[0] + 100))
    assert counters[0] < 1 << 25  # seeded with the top bit clear: headroom for 2**25 more
    now[0] += 1_000_000
    later = new_event_id()
    assert fields(later)[0] == 1_800_000_000_001 and later > first[-1]


def test_clock_stepping_back_keeps_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_000_500 * 1_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    before = new_event_id()
    now[0] -= 300 * 1_000_000  # the wall clock steps back 300 ms
    after = [new_event_id() for _ in range(10)]
    assert [before, *after] == sorted([before, *after])
    assert {fields(i)[0] for i in after} == {1_800_000_000_500}


def test_counter_rollover_advances_the_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_800_000_001_000 * 1_000_000]
    monkeypatch.setattr(ids.time, "time_ns", lambda: now[0])
    new_event_id()
    monkeypatch.setattr(ids, "_counter", (1 << 26) - 2)
    last_of_ms, rolled = new_event_id(), new_event_id()
    assert fields(last_of_ms)[:2] == (1_800_000_001_000, (1 << 26) - 1)
    assert fields(rolled)[0] == 1_800_000_001_001 and rolled > last_of_ms
    assert uuid.UUID(rolled).version == 7


def test_pool_refills_across_many_ids() -> None:
    made = [new_event_id() for _ in range(3 * 4096 * 2 // 12 + 10)]  # several pools of random hex
    assert made == sorted(made) and len(set(made)) == len(made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_continue_the_parents_sequence() -> None:
    new_event_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_event_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_event_id()
    assert child != parent
    assert fields(child)[2] != fields(parent)[2]  # not the same random bytes
