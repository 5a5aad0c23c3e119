"""Several ``trailseal serve`` processes on one PostgreSQL: election, fencing, the outbox.

**Election.** A node sequences a log while it holds a session-level advisory lock on the log's
name (``pg_try_advisory_lock``) on one dedicated connection. PostgreSQL guarantees at most one
session holds it, and releases it when that session ends — at once when the process dies (its
socket closes), after TCP keepalives when the host vanishes.

**Fencing.** Holding the lock is not enough: a process can lose its session (network cut,
``pg_terminate_backend``) and not notice before its next append. So winning the lock also bumps
``logs.epoch`` and hands the new epoch to :meth:`PostgresStore.set_fence`; every append locks the
log row and commits only while the epoch is still its own. A deposed writer's append fails with
:class:`~trailseal.core.errors.ConflictError` — it can never commit a fork, and the new writer,
which restores its frontier *after* the bump, continues the very tree the old one left.

**Outbox.** A node that receives events for a log it does not sequence writes the prepared
request to ``pending`` (a committed, ``synchronous_commit=on`` insert) and waits. The sequencing
node claims pending requests, commits them like its own, and stores each request's receipts (or
its conflict) back in the row; ``NOTIFY`` wakes both sides, polling covers a missed notification.
A request is answered only from the stored result, so its acknowledgement still means durable
*and* sequenced; a retry or a second claim after a crash is resolved by event-id deduplication.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from trailseal.storage.postgres.store import PostgresStore

_log = logging.getLogger("trailseal.cluster")

#: Epoch that no election ever hands out: appends of a demoted node always fail.
DEPOSED = -1
_CLAIM_ROWS = 1000


@dataclass(frozen=True, slots=True)
class Claimed:
    """A pending request handed to the sequencing node."""

    request_id: int
    payload: bytes
    want_proofs: bool
    event_count: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a pending request: receipts JSON, or an error ``{kind, detail, ...}``."""

    result: bytes | None
    error: Mapping[str, Any] | None


class PgCoordinator:
    """Leases, fencing and the outbox of one node; thread-safe."""

    def __init__(self, store: PostgresStore, node: str) -> None:
        self.store = store
        self.node = node
        channel = hashlib.sha256(store.schema.encode()).hexdigest()[:16]
        self.pending_channel = f"trailseal_pending_{channel}"
        self.done_channel = f"trailseal_done_{channel}"
        self._lease_conn: psycopg.Connection[Any] | None = None
        self._lease_lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = False

    # -- leases ------------------------------------------------------------------------------
    def _lease(self) -> psycopg.Connection[Any]:
        if self._lease_conn is None or self._lease_conn.closed:
            self._lease_conn = self.store.connect(
                autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=5,
                keepalives_interval=2, keepalives_count=3, application_name=f"trailseal-lease {self.node}",
            )
        return self._lease_conn

    def _lost_all(self, why: BaseException) -> None:
        if self._held:
            _log.warning("lease session lost (%s); no longer sequencing %s", why, sorted(self._held))
        for log in self._held:
            self.store.set_fence(log, DEPOSED)
        self._held.clear()
        if self._lease_conn is not None:
            try:
                self._lease_conn.close()
            except psycopg.Error:
                pass
        self._lease_conn = None

    def try_lead(self, log: str) -> int | None:
        """Try to become ``log``'s sequencer; return the new epoch, or ``None`` if another leads."""
        with self._lease_lock:
            if log in self._held:
                return self._held[log]
            try:
                conn = self._lease()
                keys = self.store.advisory_key("lead:" + log)
                row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", keys).fetchone()
                if not row or not row[0]:
                    return None
                bumped = conn.execute(
                    "UPDATE logs SET epoch = epoch + 1, leader = %s, leader_since = now() "
                    "WHERE name = %s RETURNING epoch",
                    (self.node, log),
                ).fetchone()
                if bumped is None:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", keys)
                    return None
            except psycopg.Error as exc:
                self._lost_all(exc)
                return None
            epoch = int(bumped[0])
            self._held[log] = epoch
            self.store.set_fence(log, epoch)
            _log.info("node %s now sequences log %s (epoch %d)", self.node, log, epoch)
            return epoch

    def verify(self) -> set[str]:
        """Logs still led: probes the lease session; a dead session loses every lease."""
        with self._lease_lock:
            if self._held:
                try:
                    self._lease().execute("SELECT 1")
                except psycopg.Error as exc:
                    self._lost_all(exc)
            return set(self._held)

    def release(self, log: str) -> None:
        """Stop sequencing ``log``: fence this node's appends off, unlock."""
        with self._lease_lock:
            self.store.set_fence(log, DEPOSED)
            if self._held.pop(log, None) is None or self._lease_conn is None:
                return
            try:
                self._lease_conn.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", self.store.advisory_key("lead:" + log)
                )
            except psycopg.Error as exc:
                self._lost_all(exc)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Run a block while no other node runs one for ``name`` (e.g. first key generation)."""
        with self.store.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", self.store.advisory_key(name))
            yield

    def leaders(self) -> dict[str, tuple[str | None, int]]:
        """``log -> (leader node, epoch)`` as recorded by the last elections."""
        with self.store.connection() as conn:
            rows = conn.execute("SELECT name, leader, epoch FROM logs ORDER BY name").fetchall()
        return {str(name): (leader, int(epoch)) for name, leader, epoch in rows}

    # -- outbox ------------------------------------------------------------------------------
    def enqueue(self, log: str, payload: bytes, event_count: int, want_proofs: bool) -> int:
        """Store a request for ``log``'s sequencer (committed before this returns)."""
        with self.store.connection() as conn:
            row = conn.execute(
                "INSERT INTO pending (log, want_proofs, event_count, payload) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (log, want_proofs, event_count, payload),
            ).fetchone()
            conn.execute("SELECT pg_notify(%s, %s)", (self.pending_channel, log))
        assert row is not None
        return int(row[0])

    def claim(self, log: str, max_events: int) -> list[Claimed]:
        """Open requests of ``log`` in arrival order, up to about ``max_events`` events."""
        with self.store.connection() as conn:
            rows = conn.execute(
                "SELECT id, payload, want_proofs, event_count FROM pending "
                "WHERE log = %s AND done_at IS NULL ORDER BY id LIMIT %s",
                (log, _CLAIM_ROWS),
            ).fetchall()
        claimed: list[Claimed] = []
        total = 0
        for request_id, payload, want_proofs, count in rows:
            if claimed and total + int(count) > max_events:
                break
            claimed.append(Claimed(int(request_id), bytes(payload), bool(want_proofs), int(count)))
            total += int(count)
        return claimed

    def complete(self, log: str, outcomes: Mapping[int, Outcome]) -> None:
        """Record outcomes of claimed requests and wake their waiters."""
        if not outcomes:
            return
        with self.store.connection() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE pending SET done_at = now(), result = %s, error = %s "
                    "WHERE id = %s AND done_at IS NULL",
                    [
                        (o.result, Jsonb(dict(o.error)) if o.error is not None else None, rid)
                        for rid, o in outcomes.items()
                    ],
                )
            conn.execute("SELECT pg_notify(%s, %s)", (self.done_channel, log))

    def collect(self, request_ids: Sequence[int]) -> dict[int, Outcome]:
        """Outcomes of finished requests among ``request_ids``; their rows are deleted."""
        if not request_ids:
            return {}
        with self.store.connection() as conn:
            rows = conn.execute(
                "DELETE FROM pending WHERE id = ANY(%s) AND done_at IS NOT NULL "
                "RETURNING id, result, error",
                (list(request_ids),),
            ).fetchall()
        return {
            int(rid): Outcome(bytes(result) if result is not None else None, error)
            for rid, result, error in rows
        }

    def purge(self, older_than_seconds: float) -> int:
        """Delete finished requests nobody collected (their node died) after a while."""
        with self.store.connection() as conn:
            return conn.execute(
                "DELETE FROM pending WHERE done_at < now() - make_interval(secs => %s)",
                (older_than_seconds,),
            ).rowcount

    def open_requests(self, log: str) -> int:
        """Requests of ``log`` waiting for its sequencer."""
        with self.store.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pending WHERE log = %s AND done_at IS NULL", (log,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- notifications -----------------------------------------------------------------------
    def listen(self, on_notify: Callable[[str, str], None]) -> None:
        """Call ``on_notify(kind, log)`` for outbox notifications (``pending``, ``done``) from a
        background thread; after a reconnect it is called with ``("reconnect", "")``."""
        if self._listener is not None:
            return

        def run() -> None:
            while not self._stop.is_set():
                try:
                    with self.store.connect(autocommit=True, connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {self.pending_channel}".encode())
                        conn.execute(f"LISTEN {self.done_channel}".encode())
                        self.listening = True
                        on_notify("reconnect", "")
                        while not self._stop.is_set():
                            for note in conn.notifies(timeout=0.5):
                                kind = "pending" if note.channel == self.pending_channel else "done"
                                on_notify(kind, note.payload)
                except psycopg.Error as exc:
                    self.listening = False
                    _log.warning("outbox listener: %s; reconnecting", exc)
                    self._stop.wait(1.0)
                except Exception:  # a bad callback must not kill the listener
                    _log.exception("outbox listener callback failed")
            self.listening = False

        self._listener = threading.Thread(target=run, name="trailseal-outbox-listener", daemon=True)
        self._listener.start()

    def close(self) -> None:
        """Stop listening and end the lease session (releasing every lease)."""
        self._stop.set()
        if self._listener is not None:
            self._listener.join(5)
        with self._lease_lock:
            for log in self._held:
                self.store.set_fence(log, DEPOSED)
            self._held.clear()
            if self._lease_conn is not None:
                self._lease_conn.close()
                self._lease_conn = None
