"""The spool: a bounded, crash-safe FIFO of events between ``emit()`` and the server.

Every event passes through it (write-ahead): the client's spooler thread moves events from
memory into the spool, stamping ``producer.seq`` in the *same transaction* that stores them, and
the sender thread sends from its head in order and removes what the server acknowledged. So

- ``producer.seq`` is gap-free per (producer, log) across restarts: a number is spent only
  together with a durably stored event, and the counter lives next to the events;
- a ``kill -9`` of the host loses nothing that reached the spool, and a restart sends it in order;
- retries resend byte-identical bodies, so the server's idempotency (same id, same content →
  ``"duplicate": true``) makes delivery exactly-once.

:class:`SQLiteSpool` is the durable implementation (WAL; ``synchronous=FULL`` by default, which
also survives power loss; ``"normal"`` survives a process crash only). :class:`MemorySpool` keeps
the same contract in memory, for tests and for producers that accept losing the queue on exit.

Bodies are stored as complete JSON objects. The spool splices the producer member in front of the
event's own members: ``{"producer":{"id":"<id>","seq":<n>},<event members>}``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from trailseal.core.ids import new_event_id
from trailseal.sdk.errors import SpoolLocked

__all__ = ["DeadLetter", "MemorySpool", "PendingEvent", "SQLiteSpool", "Spool", "SpoolRecord"]

_ACCEPTED_TTL = 7 * 24 * 3600.0  # how long spool(..., dedupe=True) remembers an event id


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An event on its way into the spool: target log ("" = the server's default log), its id,
    and its JSON object *without* the ``producer`` member."""

    log: str
    event_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled event: ``position`` orders the spool; ``body`` is the complete JSON object."""

    position: int
    log: str
    event_id: str
    body: bytes


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

    def append(self, items: Sequence[PendingEvent], *, dedupe: bool = False) -> int:
        """Store ``items`` in order, each with the next ``producer.seq`` of its log, in one atomic
        step. With ``dedupe``, items whose id was appended with ``dedupe`` before are skipped.
        Returns how many were stored."""

    def head(self, limit: int) -> list[SpoolRecord]:
        """Up to ``limit`` records from the head, all for the head record's log (a run)."""

    def remove_through(self, position: int) -> None:
        """Remove every record at or before ``position`` (acknowledged by the server)."""

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


def _with_producer(producer: bytes, seq: int, body: bytes) -> bytes:
    # body is a JSON object with at least one member (id, time, ...): splice ours in front.
    return b'{"producer":{"id":' + producer + b',"seq":' + str(seq).encode() + b"}," + body[1:]


class MemorySpool:
    """A :class:`Spool` in memory: same ordering and sequencing, lost when the process exits."""

    def __init__(self, producer_id: str | None = None) -> None:
        self._producer_id = producer_id or new_event_id()
        self._producer = orjson.dumps(self._producer_id)
        self._lock = threading.Lock()
        self._records: deque[SpoolRecord] = deque()
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

    def append(self, items: Sequence[PendingEvent], *, dedupe: bool = False) -> int:
        """See :meth:`Spool.append`."""
        stored = 0
        with self._lock:
            for item in items:
                if dedupe:
                    if item.event_id in self._accepted:
                        continue
                    self._accepted.add(item.event_id)
                seq = self._next_seq.get(item.log, 0)
                self._next_seq[item.log] = seq + 1
                self._position += 1
                body = _with_producer(self._producer, seq, item.body)
                self._records.append(SpoolRecord(self._position, item.log, item.event_id, body))
                self._bytes += len(body)
                stored += 1
        return stored

    def head(self, limit: int) -> list[SpoolRecord]:
        """See :meth:`Spool.head`."""
        with self._lock:
            out: list[SpoolRecord] = []
            for record in self._records:
                if len(out) >= limit or (out and record.log != out[0].log):
                    break
                out.append(record)
            return out

    def remove_through(self, position: int) -> None:
        """See :meth:`Spool.remove_through`."""
        with self._lock:
            while self._records and self._records[0].position <= position:
                self._bytes -= len(self._records.popleft().body)

    def dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        """See :meth:`Spool.dead_letter`."""
        doomed = {record.position for record in records}
        with self._lock:
            kept: deque[SpoolRecord] = deque()
            for record in self._records:
                if record.position in doomed:
                    self._bytes -= len(record.body)
                    self._dead.append(DeadLetter(record.log, record.event_id, record.body, status, reason, time.time()))
                else:
                    kept.append(record)
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

    ``sync="full"`` fsyncs every append and removal (survives power loss); ``"normal"`` fsyncs
    only at WAL checkpoints (survives a crash or kill -9 of the process, not of the machine).
    """

    def __init__(self, path: str | os.PathLike[str], *, producer_id: str | None = None, sync: str = "full") -> None:
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
            count, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM spool").fetchone()
        except BaseException:
            self._lock_file.close()
            raise
        self._producer = orjson.dumps(self._producer_id)
        self._lock = threading.Lock()
        self._count, self._bytes = int(count), int(size)
        self._last_prune = 0.0

    @property
    def producer_id(self) -> str:
        """The producer id: given, or generated once and kept in the spool file."""
        return self._producer_id

    def append(self, items: Sequence[PendingEvent], *, dedupe: bool = False) -> int:
        """See :meth:`Spool.append`: one transaction for the events and the sequence counters."""
        if not items:
            return 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if dedupe:
                    items = self._fresh(items)
                next_seq: dict[str, int] = {}
                rows = []
                size = 0
                for item in items:
                    seq = next_seq.get(item.log)
                    if seq is None:
                        found = db.execute(
                            "SELECT next_seq FROM sequence WHERE producer_id = ? AND log = ?",
                            (self._producer_id, item.log),
                        ).fetchone()
                        seq = found[0] if found else 0
                    next_seq[item.log] = seq + 1
                    body = _with_producer(self._producer, seq, item.body)
                    size += len(body)
                    rows.append((item.log, item.event_id, body))
                db.executemany("INSERT INTO spool (log, event_id, body) VALUES (?, ?, ?)", rows)
                db.executemany(
                    "INSERT INTO sequence VALUES (?, ?, ?) ON CONFLICT (producer_id, log) "
                    "DO UPDATE SET next_seq = excluded.next_seq",
                    [(self._producer_id, log, seq) for log, seq in next_seq.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count += len(rows)
            self._bytes += size
            return len(rows)

    def _fresh(self, items: Sequence[PendingEvent]) -> list[PendingEvent]:
        """Drop items seen before; remember the rest (inside the caller's transaction)."""
        now = time.time()
        if now - self._last_prune > 3600:
            self._db.execute("DELETE FROM accepted WHERE at < ?", (now - _ACCEPTED_TTL,))
            self._last_prune = now
        fresh = []
        seen: set[str] = set()
        for item in items:
            if item.event_id in seen:
                continue
            seen.add(item.event_id)
            inserted = self._db.execute(
                "INSERT OR IGNORE INTO accepted VALUES (?, ?)", (item.event_id, now)
            ).rowcount
            if inserted:
                fresh.append(item)
        return fresh

    def head(self, limit: int) -> list[SpoolRecord]:
        """See :meth:`Spool.head`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT position, log, event_id, body FROM spool ORDER BY position LIMIT ?", (limit,)
            ).fetchall()
        out: list[SpoolRecord] = []
        for position, log, event_id, body in rows:
            if out and log != out[0].log:
                break
            out.append(SpoolRecord(position, log, event_id, bytes(body)))
        return out

    def remove_through(self, position: int) -> None:
        """See :meth:`Spool.remove_through`."""
        with self._lock:
            gone, size = self._db.execute(
                "SELECT count(*), coalesce(sum(length(body)), 0) FROM spool WHERE position <= ?", (position,)
            ).fetchone()
            self._db.execute("DELETE FROM spool WHERE position <= ?", (position,))
            self._count -= gone
            self._bytes -= size

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
                db.executemany("DELETE FROM spool WHERE position = ?", [(r.position,) for r in records])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._count -= len(records)
            self._bytes -= sum(len(r.body) for r in records)

    def dead_letters(self) -> list[DeadLetter]:
        """See :meth:`Spool.dead_letters`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT log, event_id, body, status, reason, at FROM dead_letter ORDER BY position"
            ).fetchall()
        return [DeadLetter(log, eid, bytes(body), status, reason, at) for log, eid, body, status, reason, at in rows]

    def pending(self) -> tuple[int, int]:
        """See :meth:`Spool.pending`."""
        with self._lock:
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
