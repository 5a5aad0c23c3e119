"""The delivery engine shared by ``AuditClient`` and ``AsyncAuditClient``: background threads.

::

    emit() ──► memory queue ──► spooler thread ──► spool (durable, seq stamped) ──► sender ──► server
    (caller's   (bounded,          (one transaction      (bounded)                 (max_in_flight
     thread)     deque)             per drain)                                      batches, retries,
                                                                                    receipts)

``emit`` builds and serializes the event — all but the text of its time stamp — and appends a
``(log, id, body, now_ns)`` tuple to a deque: no lock, no system call and no thread switch on the
caller's thread. It wakes the spooler only when the spooler is idle, through a
``queue.SimpleQueue`` (a C-level put that never blocks and never lets go of the GIL), so a burst
of emits costs the spooler one wake-up. The spooler writes each event's ``time`` into its body as
it takes it off the queue (:func:`~trailseal.sdk.envelope.complete`: the clock was read in
``emit``) and makes the random bits of later ids (:func:`~trailseal.sdk.ids.restock`): work that
``emit`` would otherwise do with cold caches, where it costs most (docs/sdk.md, *Performance*).

The background threads are written to hold the GIL as little as possible, because every moment
they hold it is a moment an ``emit`` elsewhere can stall: the spooler lets events gather for a
few milliseconds and writes them in one ``executemany`` transaction; the sender reads a batch in
one query as columns, does not re-read the spool while it lingers, and checks receipts with
list-level operations. (The interpreter's switch interval is left alone: it is the application's.)

``max_in_flight`` batches are sent at once (default 2). A batch is removed from the spool only
after its receipts came back, so delivery is at-least-once whatever the setting, and retries are
byte-identical, so the server answers a repeated id with the original receipt. Events *arrive* in
spool order either way: the server hands a producer's batches to its sequencer in ``producer.seq``
order, holding one that overtook its predecessor (docs/api.md, *Producer order*).

When the spool is full the spooler stops taking from memory; when memory is full too, ``put``
applies the policy: ``"block"`` waits up to ``block_timeout`` seconds for room and then raises
:class:`~trailseal.sdk.errors.SpoolFull`; ``"raise"`` raises at once. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue

from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.receipt import Receipt
from trailseal.sdk.envelope import QueueItem, complete
from trailseal.sdk.errors import ClientClosed, RejectedBatch, SpoolFull, TransportError
from trailseal.sdk.ids import restock
from trailseal.sdk.monitor import ReceiptMonitor
from trailseal.sdk.retry import RetryPolicy
from trailseal.sdk.spool import Item, Spool, SpoolBatch, SpoolRecord
from trailseal.sdk.transport import Transport

__all__ = ["ClientStats", "Engine", "EngineConfig"]

_log = logging.getLogger("trailseal.sdk")
_SPOOL_CHUNK = 5000  # most events the spooler writes in one transaction
_GATHER = (
    0.005  # after a wake-up, the spooler lets events gather this long (at most) before writing
)


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A snapshot of a client's counters.

    ``queued`` — in memory, not yet in the spool; ``spooled`` (and ``spooled_bytes``) — in the
    spool, not yet acknowledged; ``sent`` — acknowledged by the server since this client started
    (``duplicates`` of them were already stored: retries); ``failed`` — refused by the server for
    good and kept in the dead-letter table; ``retries`` — failed delivery attempts;
    ``verified`` / ``verification_failures`` — receipts checked by the monitor.
    """

    queued: int
    spooled: int
    spooled_bytes: int
    sent: int
    failed: int
    retries: int
    duplicates: int
    verified: int
    verification_failures: int


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tuning of an :class:`Engine`; the clients document each field."""

    batch_size: int = 500
    linger: float = 0.05
    max_queue: int = 100_000
    spool_max_events: int = 1_000_000
    spool_max_bytes: int = 1 << 30
    on_full: str = "block"
    block_timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_in_flight: int = 2

    def __post_init__(self) -> None:
        if self.on_full not in ("block", "raise"):
            raise ValueError(f"on_full: want 'block' or 'raise', got {self.on_full!r}")
        if (
            self.batch_size < 1
            or self.max_queue < 1
            or self.spool_max_events < 1
            or self.max_in_flight < 1
        ):
            raise ValueError(
                "batch_size, max_queue, spool_max_events and max_in_flight must be at least 1"
            )


class Engine:
    """Moves events from memory to the spool to the server; see the module docstring."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        config: EngineConfig,
        *,
        monitor: ReceiptMonitor | None = None,
        on_receipt: Callable[[Receipt], None] | None = None,
        on_verification_error: Callable[[VerificationError], None] | None = None,
    ) -> None:
        self.spool = spool
        self.transport = transport
        self.config = config
        self.monitor = monitor
        self.on_receipt = on_receipt
        self.on_verification_error = on_verification_error
        self._queue: deque[QueueItem] = deque()
        self._max_queue = config.max_queue
        self._closed = False
        self._stopping = threading.Event()  # spooler: drain and exit
        self._halt = threading.Event()  # sender and workers: exit now
        self._wake: SimpleQueue[None] = SimpleQueue()  # spooler wake-ups: never blocks the putter
        self._spooler_idle = False  # the spooler waits on _wake: the next put must wake it
        self._spooler_waits_for_room = False  # the spool is full: the sender wakes the spooler
        self._sender_wake = threading.Event()
        self._progress = threading.Condition()  # notified when events move on
        self._moving = threading.Lock()  # held from taking events off the queue to spooling them
        self._counters = threading.Lock()  # the counters below are updated by several threads
        self._monitoring = threading.RLock()  # one receipt check or callback at a time
        self._flushing = 0
        self._in_transit = 0  # events taken off the queue, not yet committed to the spool
        self._batches_in_flight = 0  # batches handed to a sender, not yet done
        self._events_in_flight = 0
        self._sent = self._failed = self._retries = self._duplicates = 0
        self._verified = self._verify_failed = 0
        self._failures_in_row = 0
        self._slots = threading.Semaphore(config.max_in_flight)
        self._work: SimpleQueue[SpoolBatch | None] = SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"trailseal-send-{n}", daemon=True)
            for n in range(config.max_in_flight if config.max_in_flight > 1 else 0)
        ]
        self._spooler = threading.Thread(
            target=self._spool_loop, name="trailseal-spooler", daemon=True
        )
        self._sender = threading.Thread(
            target=self._send_loop, name="trailseal-sender", daemon=True
        )
        for worker in self._workers:
            worker.start()
        self._spooler.start()
        self._sender.start()

    # -- the caller's side ----------------------------------------------------------------------
    def put(self, item: QueueItem, *, block: bool | None = None) -> None:
        """Queue one item (:data:`~trailseal.sdk.envelope.QueueItem`); the full policy applies
        when memory is full. (``AuditClient.emit`` does the usual case itself.)"""
        if self._closed:
            raise ClientClosed("client: closed; it accepts no more events")
        queue = self._queue
        if len(queue) >= self._max_queue:
            self._wait_for_room(self.config.on_full == "block" if block is None else block)
        queue.append(item)
        if self._spooler_idle:
            self.wake_spooler()

    def wake_spooler(self) -> None:
        """Wake the idle spooler (after a put that found it idle): a C-level put that never
        blocks and never lets go of the GIL."""
        self._spooler_idle = False
        self._wake.put(None)

    def _wait_for_room(self, block: bool) -> None:
        deadline = time.monotonic() + self.config.block_timeout
        self._wake.put(None)
        with self._progress:
            while len(self._queue) >= self.config.max_queue:
                remaining = deadline - time.monotonic()
                if not block or remaining <= 0:
                    spooled, _ = self.spool.pending()
                    raise SpoolFull(
                        f"spool: full ({spooled} events spooled, {len(self._queue)} queued in memory, "
                        f"server unreachable or slow); policy {self.config.on_full!r}",
                        capacity=self.config.spool_max_events + self.config.max_queue,
                    )
                self._progress.wait(min(remaining, 0.1))
                if self._closed:
                    raise ClientClosed("client: closed while waiting for room")

    def spool_now(self, items: Sequence[Item], *, dedupe: bool) -> int:
        """Write ``items`` to the spool on the caller's thread (durable when it returns), after
        the events already queued; ``SpoolFull`` when they do not fit."""
        if self._closed:
            raise ClientClosed("client: closed; it accepts no more events")
        with self._moving:  # what was emitted before goes first: producer order is kept
            while self._queue and self._move(1 << 62, 1 << 62):
                pass
            if self.spool.pending()[0] + len(items) > self.config.spool_max_events:
                raise SpoolFull(
                    f"spool: full ({self.spool.pending()[0]} events); try again later",
                    capacity=self.config.spool_max_events,
                )
            stored = self.spool.append(items, dedupe=dedupe)
        self._sender_wake.set()
        return stored

    def _queued(self) -> int:
        """Events in memory, including those being written to the spool right now. (Read in this
        order, an event being moved is counted in one place or the other, never in neither.)"""
        queued = len(self._queue)
        return queued + self._in_transit

    def _undelivered(self) -> int:
        queued = self._queued()
        return queued + self.spool.pending()[0]

    def stats(self) -> ClientStats:
        """Current counters."""
        queued = self._queued()
        spooled, size = self.spool.pending()
        return ClientStats(
            queued=queued,
            spooled=spooled,
            spooled_bytes=size,
            sent=self._sent,
            failed=self._failed,
            retries=self._retries,
            duplicates=self._duplicates,
            verified=self._verified,
            verification_failures=self._verify_failed,
        )

    def flush(self, timeout: float | None) -> int:
        """Wait until everything queued so far is acknowledged (or dead-lettered); return how many
        events are still undelivered (0 on success) when ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            self._flushing += 1
        try:
            self._wake.put(None)
            self._sender_wake.set()
            with self._progress:
                while True:
                    left = self._undelivered()
                    if (left == 0 and not self._batches_in_flight) or not self._sender.is_alive():
                        return left
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return left
                    self._progress.wait(0.05 if remaining is None else min(remaining, 0.05))
        finally:
            with self._progress:
                self._flushing -= 1

    def close(self, timeout: float | None) -> int:
        """Flush for up to ``timeout`` seconds, stop the threads, release the spool; return the
        number of events left undelivered (kept in a durable spool for the next start)."""
        if self._closed:
            return 0
        left = self.flush(timeout)
        self._closed = True
        self._stopping.set()
        self._wake.put(None)
        self._spooler.join(timeout=30)
        self._halt.set()
        self._sender_wake.set()
        self._sender.join(timeout=30)
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        lost = len(self._queue)
        spooled, _ = self.spool.pending()
        self.spool.close()
        self.transport.close()
        if lost:
            _log.error(
                "trailseal client closed with %d events in memory that could not be spooled (spool full)",
                lost,
            )
        if spooled:
            _log.warning(
                "trailseal client closed with %d undelivered events left in the spool", spooled
            )
        return left if lost == 0 else max(left, lost + spooled)

    # -- spooler thread -------------------------------------------------------------------------
    def _spool_loop(self) -> None:
        queue, config, wake = self._queue, self.config, self._wake
        gather = min(_GATHER, config.linger)
        failures = 0
        while True:
            restock()  # random bits for the ids of later emits, made here rather than in emit
            if not queue and not self._stopping.is_set():
                self._spooler_idle = True
                if not queue:  # a put after the flag was set wakes us; one before is seen here
                    try:
                        wake.get(timeout=0.25)
                    except Empty:
                        pass
                self._spooler_idle = False
            if (
                queue
                and gather > 0
                and len(queue) < config.batch_size
                and not (self._flushing or self._stopping.is_set())
            ):
                # Let a burst gather: one transaction (and one GIL stretch) for many events.
                try:
                    wake.get(timeout=gather)
                except Empty:
                    pass
            while queue:
                try:
                    with self._moving:
                        moved = self._move(config.spool_max_events, config.spool_max_bytes)
                    failures = 0
                except Exception:
                    failures += 1
                    _log.exception("trailseal spool: cannot write events; retrying")
                    time.sleep(min(5.0, 0.05 * 2**failures))
                    break
                if not moved:
                    if self._stopping.is_set():
                        break
                    self._sender_wake.set()  # the spool is full: wait for the sender to make room
                    self._spooler_waits_for_room = True
                    try:
                        wake.get(timeout=0.05)
                    except Empty:
                        pass
                    self._spooler_waits_for_room = False
                    continue
                self._sender_wake.set()
                with self._progress:
                    self._progress.notify_all()
            if self._stopping.is_set() and (not queue or self._halt.is_set() or self._spool_full()):
                return

    def _move(self, max_events: int, max_bytes: int) -> int:
        """Move events from the queue to the spool, up to the spool's bounds; hold ``_moving``."""
        queue = self._queue
        count, size = self.spool.pending()
        room = min(max_events - count, _SPOOL_CHUNK, len(queue))
        if room <= 0:
            return 0
        popleft = queue.popleft
        self._in_transit = room  # before they leave the queue: see _queued
        items = complete([popleft() for _ in range(room)])  # time stamps written here
        total = size + sum(len(item[2]) + 40 for item in items)
        if total > max_bytes:  # keep what fits (at least one event when the spool is empty)
            keep = 0
            for item in items:
                size += len(item[2]) + 40
                if size > max_bytes and (keep or count):
                    break
                keep += 1
            queue.extendleft(reversed(items[keep:]))
            del items[keep:]
            if not items:
                self._in_transit = 0
                return 0
        try:
            self.spool.append(items)
        except BaseException:
            queue.extendleft(reversed(items))
            raise
        finally:
            self._in_transit = 0  # after the spool counts them
        return len(items)

    def _spool_full(self) -> bool:
        count, size = self.spool.pending()
        return count >= self.config.spool_max_events or size >= self.config.spool_max_bytes

    # -- sender thread --------------------------------------------------------------------------
    def _send_loop(self) -> None:
        limit = self.config.batch_size
        after = 0  # the last position handed out: batches in flight lie at or before it
        partial_since: float | None = None
        while not self._halt.is_set():
            if not self._slots.acquire(timeout=0.25):
                continue
            handed = False
            try:
                try:
                    batch = self.spool.batch(limit, after)
                except Exception:
                    _log.exception("trailseal spool: cannot read")
                    self._halt.wait(1.0)
                    continue
                if batch is None:
                    partial_since = None
                    self._sender_wake.wait(0.25)
                    self._sender_wake.clear()
                    continue
                # A partial batch that holds everything waiting (not one cut short by a change of
                # log): linger for more, without re-reading the spool on every wake-up.
                if (
                    len(batch) < limit
                    and not self._flushing
                    and not self._stopping.is_set()
                    and self.spool.pending()[0] - self._events_in_flight <= len(batch)
                ):
                    partial_since = partial_since or time.monotonic()
                    if self._linger(
                        partial_since + self.config.linger, limit
                    ) or self.spool.pending()[0] - self._events_in_flight > len(batch):
                        continue  # more arrived meanwhile: read again
                partial_since = None
                after = batch.last
                with self._counters:
                    self._batches_in_flight += 1
                    self._events_in_flight += len(batch)
                handed = True
                if self._workers:
                    self._work.put(batch)
                else:
                    try:
                        self._run(batch)
                    except Exception:  # a bug: log it, keep sending (the events stay spooled)
                        _log.exception("trailseal sender: unexpected error")
                        after = 0  # read the spool from its head again
            finally:
                if not handed:
                    self._slots.release()

    def _linger(self, deadline: float, limit: int) -> bool:
        """Wait until ``deadline`` or until a full batch waits; True when there is more to read."""
        while not (self._halt.is_set() or self._flushing or self._stopping.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.spool.pending()[0] - self._events_in_flight >= limit:
                return True
            self._sender_wake.wait(remaining)
            self._sender_wake.clear()
        return True

    def _work_loop(self) -> None:
        while True:
            batch = self._work.get()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception:  # a bug: log it, keep the worker (the events stay spooled)
                _log.exception("trailseal sender: unexpected error")

    def _run(self, batch: SpoolBatch) -> None:
        """Deliver one batch handed out by the sender, then give its slot back."""
        try:
            self._deliver(batch)
        finally:
            with self._counters:
                self._batches_in_flight -= 1
                self._events_in_flight -= len(batch)
            self._slots.release()
            self._sender_wake.set()
            with self._progress:
                self._progress.notify_all()

    def _deliver(self, batch: SpoolBatch) -> None:
        """Send ``batch`` until every event in it is acknowledged or dead-lettered (retrying, and
        narrowing a refused batch down), or the engine halts (the rest stays spooled)."""
        parts = [batch]
        while parts and not self._halt.is_set():
            part = parts[0]
            try:
                receipts = self.transport.send(
                    part.log, part.event_ids, part.bodies, proofs=self.monitor is not None
                )
            except RejectedBatch as exc:
                parts[0:1] = self._reject(part, exc)
                continue
            except TransportError as exc:
                self._backoff(exc, exc.retry_after, len(part))
                continue
            except Exception as exc:  # a bug or an unexpected library error: keep the events, retry
                _log.exception("trailseal sender: unexpected error")
                self._backoff(exc, None, len(part))
                continue
            del parts[0]
            self._failures_in_row = 0
            self._remove(part)
            with self._counters:
                self._sent += len(part)
            if self._spooler_waits_for_room:
                self._wake.put(None)
            self._handle_receipts(part, receipts)

    def _remove(self, part: SpoolBatch) -> None:
        """Remove an acknowledged part from the spool; a failure is retried (the events would
        only be sent again, but flush() waits for an empty spool)."""
        failures = 0
        while True:
            try:
                self.spool.remove(part.first, part.last)
                return
            except Exception:
                failures += 1
                _log.exception("trailseal spool: cannot remove acknowledged events; retrying")
                if self._halt.wait(min(5.0, 0.05 * 2**failures)):
                    return

    def _backoff(self, exc: Exception, retry_after: float | None, size: int) -> None:
        with self._counters:
            self._retries += 1
            self._failures_in_row += 1
            failures = self._failures_in_row
        wait = self.config.retry.delay(failures, retry_after)
        level = logging.WARNING if failures in (1, 10) or failures % 100 == 0 else logging.DEBUG
        _log.log(
            level,
            "trailseal: delivery of %d events failed (%s, attempt %d); retrying in %.2fs; events stay spooled",
            size,
            exc,
            failures,
            wait,
        )
        self._halt.wait(wait)

    def _reject(self, part: SpoolBatch, exc: RejectedBatch) -> list[SpoolBatch]:
        """Dead-letter the refused events of ``part``; return what is left to send, in order
        (a refused batch is split in halves when it is unclear which event is at fault)."""
        if exc.rejected:
            doomed = sorted(i for i in exc.rejected if 0 <= i < len(part))
            reasons = "; ".join(f"{part.event_ids[i]}: {exc.rejected[i]}" for i in doomed)
            self._dead_letter([part.records()[i] for i in doomed], exc.status, reasons)
            rest = part.without(set(doomed))
            return [rest] if len(rest) else []
        if len(part) == 1:
            self._dead_letter(part.records(), exc.status, str(exc))
            return []
        # Which event is at fault is unknown (400, 413, ...): narrow it down by halves, in order.
        middle = len(part) // 2
        return [part.part(0, middle), part.part(middle, len(part))]

    def _dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        self.spool.dead_letter(records, status, reason)
        with self._counters:
            self._failed += len(records)
        _log.error(
            "trailseal: the server refused %d events for good (HTTP %d: %s); kept in the dead-letter table",
            len(records),
            status,
            reason,
        )
        with self._progress:
            self._progress.notify_all()

    def _handle_receipts(self, part: SpoolBatch, answers: list[dict[str, object]]) -> None:
        try:
            receipts = (
                [Receipt.from_json(answer) for answer in answers]
                if (self.monitor or self.on_receipt)
                else []
            )
        except FormatError as exc:
            self._verification_failed(VerificationError(f"receipt: unreadable: {exc}"))
            return
        answered = [answer.get("id") for answer in answers]
        duplicates = sum(1 for answer in answers if answer.get("duplicate"))
        if duplicates:
            with self._counters:
                self._duplicates += duplicates
        if answered != part.event_ids:
            index = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(answered, part.event_ids, strict=False))
                    if a != b
                ),
                min(len(answered), len(part.event_ids)),
            )
            got = answered[index] if index < len(answered) else None
            want = part.event_ids[index] if index < len(part.event_ids) else None
            self._verification_failed(
                VerificationError(f"receipt: id {got!r} answers event {want!r}")
            )
            return
        if self.monitor is not None:
            with self._monitoring:
                try:
                    self.monitor.check(receipts)
                    with self._counters:
                        self._verified += len(receipts)
                except VerificationError as exc:
                    self._verification_failed(exc)
                except TransportError as exc:
                    self._verification_failed(
                        VerificationError(f"consistency proof unavailable: {exc}")
                    )
        if self.on_receipt is not None:
            with self._monitoring:  # one callback at a time, also with several batches in flight
                for receipt in receipts:
                    try:
                        self.on_receipt(receipt)
                    except Exception:
                        _log.exception("trailseal: on_receipt callback failed")

    def _verification_failed(self, exc: VerificationError) -> None:
        with self._counters:
            self._verify_failed += 1
        _log.error("trailseal receipt check FAILED: %s", exc)
        if self.on_verification_error is not None:
            with self._monitoring:
                try:
                    self.on_verification_error(exc)
                except Exception:
                    _log.exception("trailseal: on_verification_error callback failed")
