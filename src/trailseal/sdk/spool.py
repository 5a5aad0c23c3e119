"""The spool: a bounded, crash-safe FIFO of events between ``emit()`` and the server.

Every event passes through it (write-ahead): the client's spooler thread moves events from
memory into the spool, stamping ``producer.seq`` in the *same transaction* that stores them, and
the sender sends from its head in order and removes what the server acknowledged. So

- ``producer.seq`` is gap-free per (producer, log) across restarts: a number is spent only
  together with a durably stored event, and the counter lives next to the events;
- a ``kill -9`` of the host loses nothing that reached the spool, and a restart sends it in order;
- retries resend byte-identical bodies, so the server's idempotency (same id, same content →
  ``"duplicate": true``) makes a resent event harmless.

:class:`SQLiteSpool` is the durable implementation (WAL; ``synchronous=FULL`` by default, which
also survives power loss; ``"normal"`` survives a process crash only). :class:`MemorySpool` keeps
the same contract in memory, for tests and for producers that accept losing the queue on exit.

Bodies are stored as complete JSON objects. The spool splices the producer member in front of the
event's own members: ``{"producer":{"id":"<id>","seq":<n>},<event members>}``.

Positions are assigned by the spool and only grow (across restarts too: they continue after the
largest position in the spool and in the dead-letter table), so the sender can read past batches
still in flight (:meth:`Spool.batch` with ``after``) and remove exactly the range a receipt
acknowledged (:meth:`Spool.remove`), in any order.

The spool's work is done in few, large SQLite statements (``executemany``; one aggregate query
per removal) and with little Python per event, because it runs on background threads that share
the GIL with the application's ``emit()`` calls.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import orjson

from trailseal.core.ids import new_event_id
from trailseal.sdk.errors import SpoolLocked

__all__ = [
    "DeadLetter",
    "MemorySpool",
    "PendingEvent",
    "SQLiteSpool",
    "Spool",
    "SpoolBatch",
    "SpoolRecord",
]

_ACCEPTED_TTL = 7 * 24 * 3600.0  # how long spool(..., dedupe=True) remembers an event id


class PendingEvent(NamedTuple):
    """An event on its way into the spool: target log ("" = the server's default log), its id,
    and its JSON object *without* the ``producer`` member. ``emit`` queues plain
    ``(log, event_id, body)`` tuples (cheaper, and untracked by the garbage collector); the spool
    takes either."""

    log: str
    event_id: str
    body: bytes


Item = tuple[str, str, bytes]  # a PendingEvent or a plain (log, event_id, body) tuple


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled event: ``position`` orders the spool; ``body`` is the complete JSON object."""

    position: int
    log: str
    event_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """A run of consecutive spooled events of one log, as columns (what the sender sends)."""

    log: str
    positions: list[int]
    event_ids: list[str]
    bodies: list[bytes]

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def first(self) -> int:
        """The position of the first event."""
        return self.positions[0]

    @property
    def last(self) -> int:
        """The position of the last event."""
        return self.positions[-1]

    def part(self, start: int, stop: int) -> SpoolBatch:
        """Events ``start`` to ``stop - 1`` of this batch."""
        return SpoolBatch(
            self.log,
            self.positions[start:stop],
            self.event_ids[start:stop],
            self.bodies[start:stop],
        )

    def without(self, indexes: set[int]) -> SpoolBatch:
        """This batch without the events at ``indexes``."""
        keep = [i for i in range(len(self.positions)) if i not in indexes]
        return SpoolBatch(
            self.log,
            [self.positions[i] for i in keep],
            [self.event_ids[i] for i in keep],
            [self.bodies[i] for i in keep],
        )

    def records(self) -> list[SpoolRecord]:
        """The events as records."""
        return [
            SpoolRecord(p, self.log, e, b)
            for p, e, b in zip(self.positions, self.event_ids, self.bodies, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the server refused for good (HTTP ``status``, with the server's ``reason``)."""

    log: str
    event_id: str
    body: bytes
    status: int
    reason: str
    at: float

    def event(self) -> dict[str, Any]:
        """The refused event as a dict."""
        value: dict[str, Any] = orjson.loads(self.body)
        return value


class Spool(Protocol):
    """What the client needs from a spool. Thread-safe; ``append`` is atomic and durable."""

    @property
    def producer_id(self) -> str:
        """The producer id stamped on every event (kept across restarts by durable spools)."""

    def append(self, items: Sequence[Item], *, dedupe: bool = False) -> int:
        """Store ``items`` (``(log, event_id, body)``) in order, each with the next
        ``producer.seq`` of its log, in one atomic step. With ``dedupe``, items whose id was
        appended with ``dedupe`` before are skipped. Returns how many were stored."""

    def batch(self, limit: int, after: int = 0) -> SpoolBatch | None:
        """Up to ``limit`` events from the first one after position ``after``, all for that
        event's log (a run); ``None`` when there is none."""

    def remove(self, first: int, last: int) -> None:
        """Remove the events at positions ``first`` to ``last`` (acknowledged by the server)."""

    def head(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` records from the head, all for the head record's log (a run)."""

    def remove_through(self, position: int) -> None:
        """Remove every record at or before ``position``."""

    def dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        """Move ``records`` from the spool to the dead-letter table."""

    def dead_letters(self) -> list[DeadLetter]:
        """Every dead-lettered event, oldest first."""

    def pending(self) -> tuple[int, int]:
        """(events, bytes) in the spool."""

    def load_checkpoint(self, log: str) -> bytes | None:
        """The last checkpoint (signed note) the receipt monitor verified for ``log``."""

    def save_checkpoint(self, log: str, note: bytes) -> None:
        """Remember ``note`` as the last verified checkpoint of ``log``."""

    def close(self) -> None:
        """Release the spool (its file lock, for a durable spool)."""


def _stamp(
    producer: bytes, items: Sequence[Item], first_position: int, next_seq: dict[str, int]
) -> list[tuple[int, str, str, bytes]]:
    """``(position, log, event_id, complete body)`` rows for ``items``; advances ``next_seq``.

    Each body is a JSON object with at least one member (id, time, ...): the producer member is
    spliced in front of it.
    """
    prefix = b'{"producer":{"id":' + producer + b',"seq":'
    log = items[0][0]
    if all(item[0] == log for item in items):  # the usual case: one log, a simple count
        seq = next_seq[log]
        next_seq[log] = seq + len(items)
        return [
            (position, log, event_id, b"%b%d},%b" % (prefix, number, body[1:]))
            for position, number, (_, event_id, body) in zip(
                count(first_position), count(seq), items
            )
        ]
    rows = []
    for position, (log, event_id, body) in zip(count(first_position), items):
        number = next_seq[log]
        next_seq[log] = number + 1
        rows.append((position, log, event_id, b"%b%d},%b" % (prefix, number, body[1:])))
    return rows


def _run(rows: Sequence[tuple[int, str, str, bytes]], limit: int) -> SpoolBatch | None:
    """The leading run of one log in ``rows`` (position, log, event_id, body), as a batch."""
    if not rows:
        return None
    positions, logs, event_ids, bodies = (
        list(column) for column in zip(*rows[:limit], strict=True)
    )
    log = logs[0]
    size = len(positions)
    if logs.count(log) != size:
        size = next(i for i, other in enumerate(logs) if other != log)
        del positions[size:], event_ids[size:], bodies[size:]
    return SpoolBatch(log, positions, event_ids, bodies)


class MemorySpool:
    """A :class:`Spool` in memory: same ordering and sequencing, lost when the process exits."""

    def __init__(self, producer_id: str | None = None) -> None:
        self._producer_id = producer_id or new_event_id()
        self._producer = orjson.dumps(self._producer_id)
        self._lock = threading.Lock()
        self._records: deque[tuple[int, str, str, bytes]] = deque()
        self._next_seq: dict[str, int] = {}
        self._accepted: set[str] = set()
        self._dead: list[DeadLetter] = []
        self._checkpoints: dict[str, bytes] = {}
        self._position = 0
        self._bytes = 0

    @property
    def producer_id(self) -> str:
        """The producer id (new for every ``MemorySpool`` unless given)."""
        return self._producer_id

    def append(self, items: Sequence[Item], *, dedupe: bool = False) -> int:
        """See :meth:`Spool.append`."""
        with self._lock:
            if dedupe:
                fresh = []
                for item in items:
                    if item[1] not in self._accepted:
                        self._accepted.add(item[1])
                        fresh.append(item)
                items = fresh
            if not items:
                return 0
            for item in items:
                self._next_seq.setdefault(item[0], 0)
            rows = _stamp(self._producer, items, self._position + 1, self._next_seq)
            self._position += len(rows)
            self._records.extend(rows)
            self._bytes += sum(len(row[3]) for row in rows)
            return len(rows)

    def batch(self, limit: int, after: int = 0) -> SpoolBatch | None:
        """See :meth:`Spool.batch`."""
        with self._lock:
            rows: list[tuple[int, str, str, bytes]] = []
            for row in self._records:
                if row[0] > after:
                    if len(rows) >= limit or (rows and row[1] != rows[0][1]):
                        break
                    rows.append(row)
            return _run(rows, limit)

    def remove(self, first: int, last: int) -> None:
        """See :meth:`Spool.remove`."""
        with self._lock:
            records = self._records
            while records and first <= records[0][0] <= last:  # the usual case: the head
                self._bytes -= len(records.popleft()[3])
            if any(first <= row[0] <= last for row in records):
                kept: deque[tuple[int, str, str, bytes]] = deque()
                for row in records:
                    if first <= row[0] <= last:
                        self._bytes -= len(row[3])
                    else:
                        kept.append(row)
                self._records = kept

    def head(self, limit: int) -> list[SpoolRecord]:
        """See :meth:`Spool.head`."""
        batch = self.batch(limit)
        return batch.records() if batch else []

    def remove_through(self, position: int) -> None:
        """See :meth:`Spool.remove_through`."""
        self.remove(0, position)

    def dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        """See :meth:`Spool.dead_letter`."""
        doomed = {record.position for record in records}
        with self._lock:
            kept: deque[tuple[int, str, str, bytes]] = deque()
            for row in self._records:
                if row[0] in doomed:
                    self._bytes -= len(row[3])
                    self._dead.append(
                        DeadLetter(row[1], row[2], row[3], status, reason, time.time())
                    )
                else:
                    kept.append(row)
            self._records = kept

    def dead_letters(self) -> list[DeadLetter]:
        """See :meth:`Spool.dead_letters`."""
        with self._lock:
            return list(self._dead)

    def pending(self) -> tuple[int, int]:
        """See :meth:`Spool.pending`."""
        with self._lock:
            return len(self._records), self._bytes

    def load_checkpoint(self, log: str) -> bytes | None:
        """See :meth:`Spool.load_checkpoint`."""
        return self._checkpoints.get(log)

    def save_checkpoint(self, log: str, note: bytes) -> None:
        """See :meth:`Spool.save_checkpoint`."""
        self._checkpoints[log] = note

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sequence (
    producer_id TEXT NOT NULL, log TEXT NOT NULL, next_seq INTEGER NOT NULL,
    PRIMARY KEY (producer_id, log));
CREATE TABLE IF NOT EXISTS spool (
    position INTEGER PRIMARY KEY, log TEXT NOT NULL, event_id TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accepted (event_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    position INTEGER PRIMARY KEY, log TEXT NOT NULL, event_id TEXT NOT NULL, body BLOB NOT NULL,
    status INTEGER NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (log TEXT PRIMARY KEY, note BLOB NOT NULL);
"""


class SQLiteSpool:
    """A durable :class:`Spool` in one SQLite file (WAL), locked to one client at a time.

    ``sync="full"`` fsyncs every append (survives power loss); ``"normal"`` fsyncs only at WAL
    checkpoints (survives a crash or kill -9 of the process, not of the machine). Removals are
    never fsynced on their own (the next append or checkpoint carries them to disk): losing one
    to a power cut only means those acknowledged events are sent again, and the server answers a
    repeated id with its original receipt.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, producer_id: str | None = None, sync: str = "full"
    ) -> None:
        if sync not in ("full", "normal"):
            raise ValueError(f"spool: sync must be 'full' or 'normal', got {sync!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={sync.upper()}")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'producer_id'").fetchone()
            if row is None:
                stored = producer_id or new_event_id()
                self._db.execute("INSERT INTO meta VALUES ('producer_id', ?)", (stored,))
            else:
                stored = row[0]
            self._producer_id = producer_id or stored
            count_, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM spool"
            ).fetchone()
            (top,) = self._db.execute(
                "SELECT max(coalesce((SELECT max(position) FROM spool), 0),"
                " coalesce((SELECT max(position) FROM dead_letter), 0))"
            ).fetchone()
        except BaseException:
            self._lock_file.close()
            raise
        self._producer = orjson.dumps(self._producer_id)
        self._sync = sync.upper()
        self._lock = threading.Lock()
        self._count, self._bytes = int(count_), int(size)
        self._next_position = int(top) + 1
        self._next_seq: dict[str, int] = {}  # log → next seq, as committed (read once per log)
        self._last_prune = 0.0

    @property
    def producer_id(self) -> str:
        """The producer id: given, or generated once and kept in the spool file."""
        return self._producer_id

    def append(self, items: Sequence[Item], *, dedupe: bool = False) -> int:
        """See :meth:`Spool.append`: one transaction for the events and the sequence counters."""
        if not items:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if dedupe:
                    items = self._fresh(items)
                    if not items:
                        db.execute("COMMIT")
                        return 0
                next_seq = {}
                for log in {item[0] for item in items}:
                    seq = self._next_seq.get(log)
                    if seq is None:
                        found = db.execute(
                            "SELECT next_seq FROM sequence WHERE producer_id = ? AND log = ?",
                            (self._producer_id, log),
                        ).fetchone()
                        seq = found[0] if found else 0
                    next_seq[log] = seq
                rows = _stamp(self._producer, items, self._next_position, next_seq)
                db.executemany(
                    "INSERT INTO spool (position, log, event_id, body) VALUES (?, ?, ?, ?)", rows
                )
                db.executemany(
                    "INSERT INTO sequence VALUES (?, ?, ?) ON CONFLICT (producer_id, log) "
                    "DO UPDATE SET next_seq = excluded.next_seq",
                    [(self._producer_id, log, seq) for log, seq in next_seq.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._next_seq.update(next_seq)  # only once committed
            self._next_position += len(rows)
            self._count += len(rows)
            self._bytes += sum(len(row[3]) for row in rows)
            return len(rows)

    def _fresh(self, items: Sequence[Item]) -> list[Item]:
        """Drop items seen before; remember the rest (inside the caller's transaction)."""
        now = time.time()
        if now - self._last_prune > 3600:
            self._db.execute("DELETE FROM accepted WHERE at < ?", (now - _ACCEPTED_TTL,))
            self._last_prune = now
        fresh = []
        seen: set[str] = set()
        for item in items:
            if item[1] in seen:
                continue
            seen.add(item[1])
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO accepted VALUES (?, ?)", (item[1], now)
            ).rowcount
            if inserted:
                fresh.append(item)
        return fresh

    def batch(self, limit: int, after: int = 0) -> SpoolBatch | None:
        """See :meth:`Spool.batch`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT position, log, event_id, body FROM spool WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            ).fetchall()
        return _run(rows, limit)

    def remove(self, first: int, last: int) -> None:
        """See :meth:`Spool.remove`."""
        with self._lock:
            gone, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM spool WHERE position BETWEEN ? AND ?",
                (first, last),
            ).fetchone()
            if gone:
                if self._sync == "FULL":
                    self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._db.execute(
                        "DELETE FROM spool WHERE position BETWEEN ? AND ?", (first, last)
                    )
                finally:
                    if self._sync == "FULL":
                        self._db.execute("PRAGMA synchronous=FULL")
                self._count -= gone
                self._bytes -= size

    def head(self, limit: int) -> list[SpoolRecord]:
        """See :meth:`Spool.head`."""
        batch = self.batch(limit)
        return batch.records() if batch else []

    def remove_through(self, position: int) -> None:
        """See :meth:`Spool.remove_through`."""
        self.remove(0, position)

    def dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        """See :meth:`Spool.dead_letter`."""
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.position, r.log, r.event_id, r.body, status, reason, now) for r in records],
                )
                db.executemany(
                    "DELETE FROM spool WHERE position = ?", [(r.position,) for r in records]
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            count_, size = db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM spool"
            ).fetchone()
            self._count, self._bytes = int(count_), int(size)

    def dead_letters(self) -> list[DeadLetter]:
        """See :meth:`Spool.dead_letters`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT log, event_id, body, status, reason, at FROM dead_letter ORDER BY position"
            ).fetchall()
        return [
            DeadLetter(log, eid, bytes(body), status, reason, at)
            for log, eid, body, status, reason, at in rows
        ]

    def pending(self) -> tuple[int, int]:
        """See :meth:`Spool.pending`."""
        return self._count, self._bytes

    def load_checkpoint(self, log: str) -> bytes | None:
        """See :meth:`Spool.load_checkpoint`."""
        with self._lock:
            row = self._db.execute("SELECT note FROM checkpoint WHERE log = ?", (log,)).fetchone()
        return bytes(row[0]) if row else None

    def save_checkpoint(self, log: str, note: bytes) -> None:
        """See :meth:`Spool.save_checkpoint`."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO checkpoint VALUES (?, ?)", (log, note))

    def close(self) -> None:
        """Close the database and release the file lock."""
        with self._lock:
            self._db.close()
        self._lock_file.close()


def _lock(path: Path) -> IO[str]:
    """Hold an exclusive lock on ``<path>.lock`` for this spool's lifetime."""
    handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held open for the spool's lifetime
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SpoolLocked(f"spool: {path} is in use by another client (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
