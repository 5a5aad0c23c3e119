"""``ClusterSequencer``: a :class:`Sequencer` that commits only the logs this node was elected for.

Any number of ``trailseal serve`` processes share one store; for each log exactly one of them —
the holder of the log's lease (:class:`Leases`) — runs the log's writer. A coordinator thread
re-checks the leases every ``interval`` seconds, takes over logs nobody leads, and on losing a
lease retires the writer at once. Winning a lease always builds a *fresh* writer, whose frontier is
restored from the store after the fencing epoch was bumped, so the new writer continues exactly the
tree its predecessor committed (no fork, no gap); the store refuses appends of a deposed writer.

Requests for a log this node does not lead go through the :class:`Outbox` and are answered with
the receipts the elected node stored — acknowledged still means durable *and* sequenced. The
elected node drains the outbox of each log it leads in a pump thread.

Plug points are small Protocols: :mod:`trailseal.storage.postgres.coordination` implements both for
PostgreSQL; :class:`LocalLeases` (always the leader) serves a single process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from trailseal.core.errors import ConflictError, FormatError, OverloadedError, TrailsealError
from trailseal.core.keys import Keyring
from trailseal.core.receipt import Receipt
from trailseal.sequencer.runner import (
    Sequencer,
    SequencerConfig,
    SequencerUnavailable,
    error_from_record,
    error_record,
)
from trailseal.sequencer.types import Item, Prepared
from trailseal.sequencer.wire import decode_request, encode_request
from trailseal.storage.base import Store

_log = logging.getLogger("trailseal.cluster")


class Leases(Protocol):
    """Who sequences which log."""

    def try_lead(self, log: str) -> int | None:
        """Become the log's sequencer if nobody is; the election's epoch, or ``None``."""

    def verify(self) -> set[str]:
        """The logs this node still leads."""

    def release(self, log: str) -> None:
        """Stop leading ``log``."""

    def close(self) -> None:
        """Give up every lease."""


class ClaimedRequest(Protocol):
    """A request taken from the outbox."""

    @property
    def request_id(self) -> int: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def want_proofs(self) -> bool: ...


class OutcomeRecord(Protocol):
    """A finished outbox request: receipts JSON, or an error ``{kind, detail, event_id}``."""

    @property
    def result(self) -> bytes | None: ...

    @property
    def error(self) -> Mapping[str, Any] | None: ...


class Outbox(Protocol):
    """Durable hand-over of requests from any node to the log's sequencer."""

    listening: bool

    def enqueue(self, log: str, payload: bytes, event_count: int, want_proofs: bool) -> int:
        """Store a request durably; its id."""

    def claim(self, log: str, max_events: int) -> Sequence[ClaimedRequest]:
        """Open requests of ``log``, oldest first."""

    def complete(self, log: str, outcomes: Mapping[int, Any]) -> None:
        """Record outcomes (``request id -> Outcome``)."""

    def collect(self, request_ids: Sequence[int]) -> Mapping[int, OutcomeRecord]:
        """Finished outcomes among ``request_ids`` (removed once collected)."""

    def purge(self, older_than_seconds: float) -> int:
        """Forget uncollected outcomes older than that."""

    def listen(self, on_notify: Callable[[str, str], None]) -> None:
        """Deliver ``(kind, log)`` notifications from a background thread."""


class LeadHook(Protocol):
    """Work a node runs for each log while it leads it (JetStream consumer, search indexer)."""

    def started(self, log: str) -> None:
        """The node now sequences ``log``."""

    def stopped(self, log: str) -> None:
        """The node no longer sequences ``log`` (stop before returning)."""


class LocalLeases:
    """A single process leads every log (SQLite, or one node)."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def try_lead(self, log: str) -> int | None:
        """Always granted; no epoch (no fencing needed)."""
        self._held.add(log)
        return 0

    def verify(self) -> set[str]:
        """Every log taken."""
        return set(self._held)

    def release(self, log: str) -> None:
        """Forget ``log``."""
        self._held.discard(log)

    def close(self) -> None:
        """Nothing to release."""
        self._held.clear()


@dataclass
class _Waiter:
    log: str
    future: concurrent.futures.Future[list[Receipt]]
    deadline: float


@dataclass
class _Pump:
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)


class ClusterSequencer(Sequencer):
    """Sequences the logs it holds a lease for; forwards the rest through the outbox.

    ``role="api"`` never takes a lease (an API-only node). Call :meth:`start` once built.
    """

    def __init__(
        self,
        store: Store,
        keyring_for: Callable[[str], Keyring],
        origin_for: Callable[[str], str],
        clock: Callable[[], str],
        config: SequencerConfig | None = None,
        *,
        leases: Leases,
        outbox: Outbox | None = None,
        role: str = "all",
        interval: float = 0.5,
        wait_timeout: float = 30.0,
        on_idle: Callable[[str], None] | None = None,
    ) -> None:
        def stored_origin(log: str) -> str:
            # The origin recorded when the log was created wins, so nodes configured with another
            # --server-name still sign checkpoints of the one origin the verifiers expect.
            info = store.get_log(log)
            return info.origin if info is not None else origin_for(log)

        super().__init__(store, keyring_for, stored_origin, clock, config)
        if role not in ("all", "api"):
            raise ValueError(f"cluster: role must be 'all' or 'api', got {role!r}")
        self.leases = leases
        self.outbox = outbox
        self.role = role
        self.interval = interval
        self.wait_timeout = wait_timeout
        self.on_idle = on_idle
        self.hooks: list[LeadHook] = []
        self._leading: set[str] = set()
        self._route = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pumps: dict[str, _Pump] = {}
        self._waiting: dict[int, _Waiter] = {}
        self._waiting_lock = threading.Lock()
        self._known_logs: set[str] = set()
        self._last_purge = 0.0
        self.coordinator_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Elect once synchronously, then keep coordinating in the background."""
        if self.outbox is not None:
            self.outbox.listen(self._notified)
        self.tick()
        self._thread = threading.Thread(target=self._coordinate, name="trailseal-coordinator", daemon=True)
        self._thread.start()

    def _coordinate(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                self.coordinator_error = None
            except Exception as exc:
                self.coordinator_error = str(exc)
                _log.exception("cluster coordination failed")

    def tick(self) -> None:
        """One round: drop lost leases, take free ones, time out and poll forwarded requests."""
        held = self.leases.verify()
        for log in sorted(self._leading - held):
            _log.warning("lost the lease of log %s", log)
            self._demote(log, release=False)
        for log in sorted(self._leading):
            worker = self._workers.get(log)
            if worker is not None and worker.failure is not None:
                # The writer gave up (e.g. the database was unreachable while it restored):
                # step down so this node or another elects a fresh writer once it can.
                _log.error("writer of log %s stopped (%s); releasing its lease", log, worker.failure)
                self._demote(log)
        if self.role == "all" and not self._stop.is_set():
            for info in self.store.list_logs():
                if info.name not in self._leading and self.leases.try_lead(info.name) is not None:
                    self._promote(info.name)
        self._collect()
        if self.outbox is not None and time.monotonic() - self._last_purge > 60:
            self._last_purge = time.monotonic()
            self.outbox.purge(600)

    @property
    def leading(self) -> list[str]:
        """Logs this node sequences now."""
        return sorted(self._leading)

    def _promote(self, log: str) -> None:
        try:
            with self._route:
                self._retire(log)
                Sequencer.worker(self, log)  # a fresh writer: frontier restored after the fence
                self._leading.add(log)
        except Exception:
            _log.exception("cannot sequence log %s; releasing its lease", log)
            self.leases.release(log)
            return
        if self.outbox is not None:
            pump = _Pump(threading.Thread(target=self._pump, args=(log,), name=f"outbox-{log}", daemon=True))
            self._pumps[log] = pump
            pump.thread.start()
        for hook in self.hooks:
            hook.started(log)

    def _demote(self, log: str, *, release: bool = True) -> None:
        for hook in self.hooks:
            hook.stopped(log)
        pump = self._pumps.pop(log, None)
        if pump is not None:
            pump.stop.set()
            pump.wake.set()
        with self._route:
            self._leading.discard(log)
            worker = self._retire(log)
        if release:
            self.leases.release(log)
        if worker is not None:
            worker.join(10)
        if pump is not None:
            pump.thread.join(10)

    def _retire(self, log: str) -> threading.Thread | None:
        """Detach the log's writer; it finishes what it has queued (fenced if deposed)."""
        with self._lock:
            worker = self._workers.pop(log, None)
        if worker is not None:
            worker.inbox.put(None)
        return worker

    def close(self, timeout: float = 30.0) -> None:
        """Stop electing, drain pumps and writers, fail forwarded waits, give up the leases."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for log in list(self._pumps):
            pump = self._pumps.pop(log)
            pump.stop.set()
            pump.wake.set()
            pump.thread.join(timeout)
        for log in list(self._leading):
            for hook in self.hooks:
                hook.stopped(log)
        super().close(timeout)
        with self._waiting_lock:
            waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.future.done():
                waiter.future.set_exception(SequencerUnavailable("server: shutting down"))
        self.leases.close()

    # -- submission --------------------------------------------------------------------------
    def submit_future(
        self, log: str, events: Sequence[Item], *, want_proofs: bool = False
    ) -> concurrent.futures.Future[list[Receipt]]:
        """Commit here when this node leads ``log``; otherwise hand over through the outbox."""
        with self._route:
            if log in self._leading:
                return self._fenced(log, super().submit_future(log, events, want_proofs=want_proofs))
        if self.outbox is None:
            raise SequencerUnavailable(f"log {log}: not sequenced on this node and no outbox")
        if log not in self._known_logs:
            self.store.ensure_log(log, self.origin_for(log), self.clock())
            self._known_logs.add(log)
        request_id = self.outbox.enqueue(log, encode_request(events), len(events), want_proofs)
        future: concurrent.futures.Future[list[Receipt]] = concurrent.futures.Future()
        with self._waiting_lock:
            self._waiting[request_id] = _Waiter(log, future, time.monotonic() + self.wait_timeout)
        return future

    def _fenced(
        self, log: str, inner: concurrent.futures.Future[list[Receipt]]
    ) -> concurrent.futures.Future[list[Receipt]]:
        """``inner``, with a store-level conflict (leadership moved) turned into a retryable 503."""
        outer: concurrent.futures.Future[list[Receipt]] = concurrent.futures.Future()

        def done(got: concurrent.futures.Future[list[Receipt]]) -> None:
            exc = got.exception()
            if exc is None:
                outer.set_result(got.result())
            elif isinstance(exc, ConflictError) and not exc.event_id:
                outer.set_exception(
                    SequencerUnavailable(f"log {log}: sequencer changed during the commit ({exc}); retry")
                )
            elif not isinstance(exc, TrailsealError):  # the database went away, a timeout, ...
                outer.set_exception(SequencerUnavailable(f"log {log}: store unavailable: {exc}; retry"))
            else:
                outer.set_exception(exc)

        inner.add_done_callback(done)
        return outer

    # -- outbox: waiting side ----------------------------------------------------------------
    def _notified(self, kind: str, log: str) -> None:
        if kind == "pending":
            pump = self._pumps.get(log)
            if pump is not None:
                pump.wake.set()
        else:
            self._collect()

    def _collect(self) -> None:
        if self.outbox is None:
            return
        with self._waiting_lock:
            ids = list(self._waiting)
        if not ids:
            return
        outcomes = self.outbox.collect(ids)
        now = time.monotonic()
        with self._waiting_lock:
            finished = {rid: self._waiting.pop(rid) for rid in outcomes if rid in self._waiting}
            expired = {rid: w for rid, w in self._waiting.items() if w.deadline < now}
            for rid in expired:
                del self._waiting[rid]
        for rid, waiter in finished.items():
            outcome = outcomes[rid]
            if outcome.error is not None:
                waiter.future.set_exception(error_from_record(outcome.error))
            else:
                receipts = [Receipt.from_json(r) for r in orjson.loads(outcome.result or b"[]")]
                waiter.future.set_result(receipts)
        for waiter in expired.values():
            waiter.future.set_exception(
                SequencerUnavailable(
                    f"log {waiter.log}: no sequencer answered within {self.wait_timeout:g}s; the "
                    f"request stays queued and will be sequenced, retry with the same event ids"
                )
            )

    # -- outbox: sequencing side -------------------------------------------------------------
    def _pump(self, log: str) -> None:
        pump = self._pumps[log]
        assert self.outbox is not None
        while not pump.stop.is_set():
            pump.wake.wait(0.25)
            pump.wake.clear()
            if pump.stop.is_set():
                return
            try:
                more = self._drain_outbox(log)
                if more:
                    pump.wake.set()
                elif self.on_idle is not None:
                    self.on_idle(log)
            except Exception:
                _log.exception("outbox pump of log %s failed", log)
                pump.stop.wait(1.0)

    def _drain_outbox(self, log: str) -> bool:
        """Sequence one round of pending requests; True when more may be waiting."""
        assert self.outbox is not None
        limit = self.config.batch_max_events * 4
        claimed = self.outbox.claim(log, limit)
        if not claimed:
            return False
        outcomes: dict[int, Any] = {}
        futures: list[tuple[int, concurrent.futures.Future[list[Receipt]]]] = []
        for item in claimed:
            try:
                events = decode_request(item.payload)
            except FormatError as exc:
                outcomes[item.request_id] = _outcome(None, error_record(exc))
                continue
            try:
                futures.append(
                    (item.request_id, Sequencer.submit_future(self, log, events, want_proofs=item.want_proofs))
                )
            except OverloadedError:
                break  # the rest stays pending for the next round
        for request_id, future in futures:
            try:
                receipts = future.result(timeout=120)
            except ConflictError as exc:
                if not exc.event_id:
                    continue  # deposed: the next sequencer answers it
                outcomes[request_id] = _outcome(None, error_record(exc))
            except Exception as exc:  # leave it pending; it is retried or times out
                _log.warning("outbox request %d of log %s not sequenced: %s", request_id, log, exc)
            else:
                outcomes[request_id] = _outcome(orjson.dumps([r.to_json() for r in receipts]), None)
        self.outbox.complete(log, outcomes)
        return len(outcomes) == len(claimed)  # all answered: look again at once

    def submit_local(
        self, log: str, events: Sequence[Prepared], *, want_proofs: bool = False
    ) -> concurrent.futures.Future[list[Receipt]]:
        """Commit on this node's writer, which must lead ``log`` (bus consumers use this)."""
        with self._route:
            if log not in self._leading:
                raise SequencerUnavailable(f"log {log}: this node no longer sequences it")
            return self._fenced(log, super().submit_future(log, events, want_proofs=want_proofs))


@dataclass(frozen=True)
class Outcome:
    """A finished outbox request, as the pump records it."""

    result: bytes | None
    error: Mapping[str, Any] | None


def _outcome(result: bytes | None, error: Mapping[str, Any] | None) -> Outcome:
    return Outcome(result, error)
