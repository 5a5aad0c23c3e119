"""The SDK's event ids and time stamps, checked against naive references (the ``uuid`` module,
``datetime``): layout, order, uniqueness across threads and forks, and the time text."""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from trailseal.sdk import ids
from trailseal.sdk.ids import format_time_ns, new_event_id

NOW = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z


@pytest.fixture(autouse=True)
def fresh_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The generator keeps the last timestamp it gave (ids never go back): start each test from
    none, so that fixed instants here are not held at the times of ids made by earlier tests."""
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_head", (-1, ""))


def check(text: str, now_ns: int) -> uuid.UUID:
    """``text`` is a lowercase UUIDv7 (RFC 9562 §5.7) whose timestamp is not before ``now_ns``."""
    value = uuid.UUID(text)
    assert str(value) == text and len(text) == 36
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert value.int >> 80 >= now_ns // 1_000_000
    return value


def test_ids_are_uuidv7_dated_by_the_given_instant() -> None:
    for step in range(2000):
        now = NOW + step * 333_333  # three ids per millisecond
        value = check(new_event_id(now), now)
        assert value.int >> 80 <= now // 1_000_000 + 1  # +1 only after a counter wrap


def test_ids_increase_and_never_repeat_within_a_thread() -> None:
    made = [new_event_id(NOW + step * 10_000) for step in range(3 * ids._BATCH)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert len({text[-17:] for text in made}) == len(made)  # fresh random bits for every id


def test_a_clock_that_steps_back_does_not_move_ids_back() -> None:
    first = new_event_id(NOW + 10_000_000_000)
    later = new_event_id(NOW)  # the clock stepped back 10 s
    assert later > first and uuid.UUID(later).int >> 80 == uuid.UUID(first).int >> 80


def test_more_than_4096_ids_in_one_millisecond_advance_the_timestamp() -> None:
    now = NOW + 20_000_000_000
    made = [new_event_id(now) for _ in range(10_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    stamps = [uuid.UUID(text).int >> 80 for text in made]
    assert stamps[0] == now // 1_000_000
    assert all(stamps.count(stamp) <= 4096 for stamp in set(stamps))  # §6.2 counter rollover


def test_threads_get_unique_ids_each_in_order() -> None:
    results: list[list[str]] = []

    def work() -> None:
        results.append([new_event_id(time.time_ns()) for _ in range(5000)])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(made == sorted(made) for made in results)
    every = [text for made in results for text in made]
    assert len(set(every)) == len(every) == 40_000


def test_restock_prepares_the_next_batch() -> None:
    ids.restock()
    spare = ids._spare
    assert spare is not None
    for _ in range(2 * ids._BATCH):
        check(new_event_id(NOW), NOW)
    assert ids._spare is None or ids._spare is not spare  # the spare was taken, never reused


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+ warns of fork with threads
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    now = time.time_ns()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child makes ids, writes them and exits: nothing that could deadlock
        try:
            os.write(writer, ",".join(new_event_id(now) for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    parent = {new_event_id(now) for _ in range(50)}
    with os.fdopen(reader, "rb") as pipe:
        child = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    assert len(child) == 50 and not parent & child
    assert not {text[-17:] for text in parent} & {text[-17:] for text in child}


@pytest.mark.parametrize(
    "now_ns",
    [
        0,
        1,
        999,
        1_000,
        NOW,
        NOW + 876_543_210_000,
        951_782_400_000_000_000,
        4_102_444_799_999_999_999,
    ],
)
def test_format_time_ns_matches_datetime(now_ns: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=now_ns // 1000)
    want = moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    assert format_time_ns(now_ns) == want
    assert format_time_ns(now_ns) == want  # also from the per-second cache
