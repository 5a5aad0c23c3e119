"""Per-producer sequence tracking (``producer.id`` / ``producer.seq``): the capture-rate input.

For each producer of a tenant the pipeline keeps the first and highest ``seq`` seen, how many
numbers in between are still missing (``gaps``), how many arrived again (``duplicates``: a retry or
a replay) and how many filled a gap late (``late``). ``capture_rate`` is the share of the range
``[first_seq, max_seq]`` that arrived. Missing numbers are remembered individually up to
``MAX_MISSING`` per producer; past that the oldest are forgotten (they stay counted as gaps, and if
one arrives after all it is counted as a duplicate).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

__all__ = ["MAX_MISSING", "MemoryProducerStore", "ProducerStats", "ProducerStore", "group_observations", "observe"]
__all__ += ["observe_all"]

MAX_MISSING = 10_000


@dataclass(frozen=True)
class ProducerStats:
    """Counters of one producer in one log."""

    producer_id: str
    events: int = 0
    first_seq: int | None = None
    max_seq: int | None = None
    gaps: int = 0
    duplicates: int = 0
    late: int = 0
    last_seen: str = ""
    missing: tuple[int, ...] = field(default=(), repr=False)

    @property
    def capture_rate(self) -> float | None:
        """Arrived share of ``[first_seq, max_seq]`` (None without sequence numbers)."""
        if self.first_seq is None or self.max_seq is None:
            return None
        expected = self.max_seq - self.first_seq + 1
        return (expected - self.gaps) / expected

    def to_json(self) -> dict[str, Any]:
        """JSON form (without the missing list)."""
        return {
            "producer": self.producer_id,
            "events": self.events,
            "first_seq": self.first_seq,
            "max_seq": self.max_seq,
            "gaps": self.gaps,
            "duplicates": self.duplicates,
            "late": self.late,
            "capture_rate": self.capture_rate,
            "last_seen": self.last_seen,
        }


def observe(stats: ProducerStats, seq: int | None, at: str) -> ProducerStats:
    """``stats`` after one more event with ``seq`` (pure)."""
    events = stats.events + 1
    if seq is None:
        return replace(stats, events=events, last_seen=at)
    if stats.max_seq is None or stats.first_seq is None:
        return replace(stats, events=events, first_seq=seq, max_seq=seq, last_seen=at)
    if seq > stats.max_seq:
        skipped = range(stats.max_seq + 1, seq)
        missing = (*stats.missing, *skipped[-MAX_MISSING:])[-MAX_MISSING:]
        return replace(stats, events=events, max_seq=seq, gaps=stats.gaps + len(skipped), missing=missing, last_seen=at)
    if seq in stats.missing:
        missing = tuple(m for m in stats.missing if m != seq)
        return replace(stats, events=events, gaps=stats.gaps - 1, late=stats.late + 1, missing=missing, last_seen=at)
    if seq < stats.first_seq:
        # Earlier than anything seen: the range grows backwards and what lies between is missing.
        skipped = range(seq + 1, stats.first_seq)
        missing = (*skipped[-MAX_MISSING:], *stats.missing)[:MAX_MISSING]
        return replace(stats, events=events, first_seq=seq, gaps=stats.gaps + len(skipped), missing=missing, last_seen=at)
    return replace(stats, events=events, duplicates=stats.duplicates + 1, last_seen=at)


def observe_all(stats: ProducerStats, seqs: Iterable[int | None], at: str) -> ProducerStats:
    """:func:`observe` folded over ``seqs`` (one producer's events, in order), building one
    ``ProducerStats`` at the end instead of one per event."""
    events, first, top = stats.events, stats.first_seq, stats.max_seq
    gaps, duplicates, late, missing = stats.gaps, stats.duplicates, stats.late, stats.missing
    for seq in seqs:
        events += 1
        if seq is None:
            continue
        if top is None or first is None:
            first = top = seq
        elif seq > top:
            skipped = range(top + 1, seq)
            missing = (*missing, *skipped[-MAX_MISSING:])[-MAX_MISSING:] if skipped else missing[-MAX_MISSING:]
            top, gaps = seq, gaps + len(skipped)
        elif seq in missing:
            missing = tuple(m for m in missing if m != seq)
            gaps, late = gaps - 1, late + 1
        elif seq < first:
            skipped = range(seq + 1, first)
            missing = (*skipped[-MAX_MISSING:], *missing)[:MAX_MISSING]
            first, gaps = seq, gaps + len(skipped)
        else:
            duplicates += 1
    if events == stats.events:
        return stats
    return ProducerStats(stats.producer_id, events, first, top, gaps, duplicates, late, at, missing)


def group_observations(observations: Sequence[tuple[str, int | None]]) -> dict[str, list[int | None]]:
    """``(producer id, seq)`` observations as each producer's seqs, in order."""
    grouped: dict[str, list[int | None]] = {}
    for producer_id, seq in observations:
        found = grouped.get(producer_id)
        if found is None:
            grouped[producer_id] = [seq]
        else:
            found.append(seq)
    return grouped


class ProducerStore(Protocol):
    """Where producer counters are kept."""

    def observe_many(self, log: str, observations: Sequence[tuple[str, int | None]], at: str) -> None:
        """Fold ``(producer id, seq)`` observations into the counters, in order."""

    def list_producers(self, log: str) -> list[ProducerStats]:
        """Every producer of ``log``, by id."""


class MemoryProducerStore:
    """In-memory :class:`ProducerStore`."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], ProducerStats] = {}
        self._lock = threading.Lock()

    def observe_many(self, log: str, observations: Sequence[tuple[str, int | None]], at: str) -> None:
        """Update the counters."""
        with self._lock:
            for producer_id, seqs in group_observations(observations).items():
                current = self._stats.get((log, producer_id)) or ProducerStats(producer_id)
                self._stats[(log, producer_id)] = observe_all(current, seqs, at)

    def list_producers(self, log: str) -> list[ProducerStats]:
        """Every producer of ``log``."""
        return [s for (lg, _), s in sorted(self._stats.items()) if lg == log]
