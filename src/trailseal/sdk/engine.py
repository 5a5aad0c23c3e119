"""The delivery engine shared by ``AuditClient`` and ``AsyncAuditClient``: two daemon threads.

::

    emit() ──► memory queue ──► spooler thread ──► spool (durable, seq stamped) ──► sender thread ──► server
    (caller's   (bounded,          (one transaction      (bounded)                   (one batch in flight,
     thread)     deque)             per drain)                                        retries, receipts)

``emit`` only appends to a deque, so its cost on the caller's thread is a few microseconds. One
batch is in flight at a time and a batch is removed from the spool only after its receipts came
back, so events arrive in spool order, exactly once (retries are byte-identical and the server
answers a repeated id with the original receipt).

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

from trailseal.core.errors import FormatError, VerificationError
from trailseal.core.receipt import Receipt
from trailseal.sdk.errors import ClientClosed, RejectedBatch, SpoolFull, TransportError
from trailseal.sdk.monitor import ReceiptMonitor
from trailseal.sdk.retry import RetryPolicy
from trailseal.sdk.spool import PendingEvent, Spool, SpoolRecord
from trailseal.sdk.transport import Transport

__all__ = ["ClientStats", "Engine"]

_log = logging.getLogger("trailseal.sdk")
_SPOOL_CHUNK = 5000  # most events the spooler writes in one transaction


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

    def __post_init__(self) -> None:
        if self.on_full not in ("block", "raise"):
            raise ValueError(f"on_full: want 'block' or 'raise', got {self.on_full!r}")
        if self.batch_size < 1 or self.max_queue < 1 or self.spool_max_events < 1:
            raise ValueError("batch_size, max_queue and spool_max_events must be at least 1")


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
        self._queue: deque[PendingEvent] = deque()
        self._closed = False
        self._stopping = threading.Event()  # spooler: drain and exit
        self._halt = threading.Event()  # sender: exit now
        self._spooler_wake = threading.Event()
        self._sender_wake = threading.Event()
        self._progress = threading.Condition()  # notified when events move on
        self._moving = threading.Lock()  # held from taking events off the queue to spooling them
        self._flushing = 0
        self._delivering = False  # a batch is in flight or its receipts are being handled
        self._sent = self._failed = self._retries = self._duplicates = 0
        self._verified = self._verify_failed = 0
        self._failures_in_row = 0
        self._limit = config.batch_size  # halved while a refused batch is narrowed down
        self._spooler = threading.Thread(target=self._spool_loop, name="trailseal-spooler", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="trailseal-sender", daemon=True)
        self._spooler.start()
        self._sender.start()

    # -- the caller's side ----------------------------------------------------------------------
    def put(self, item: PendingEvent, *, block: bool | None = None) -> None:
        """Queue one event; the full policy applies when memory is full (see module docstring)."""
        if self._closed:
            raise ClientClosed("client: closed; it accepts no more events")
        queue = self._queue
        if len(queue) >= self.config.max_queue:
            self._wait_for_room(self.config.on_full == "block" if block is None else block)
        queue.append(item)
        self._spooler_wake.set()

    def _wait_for_room(self, block: bool) -> None:
        deadline = time.monotonic() + self.config.block_timeout
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

    def spool_now(self, items: Sequence[PendingEvent], *, dedupe: bool) -> int:
        """Write ``items`` to the spool on the caller's thread (durable when it returns), after
        the events already queued; ``SpoolFull`` when they do not fit."""
        if self._closed:
            raise ClientClosed("client: closed; it accepts no more events")
        with self._moving:  # what was emitted before goes first: producer order is kept
            while self._queue and self._move(1 << 62, 1 << 62):
                pass
            if self.spool.pending()[0] + len(items) > self.config.spool_max_events:
                raise SpoolFull(f"spool: full ({self.spool.pending()[0]} events); try again later",
                                capacity=self.config.spool_max_events)
            stored = self.spool.append(items, dedupe=dedupe)
        self._sender_wake.set()
        return stored

    def stats(self) -> ClientStats:
        """Current counters."""
        spooled, size = self.spool.pending()
        return ClientStats(
            queued=len(self._queue), spooled=spooled, spooled_bytes=size, sent=self._sent,
            failed=self._failed, retries=self._retries, duplicates=self._duplicates,
            verified=self._verified, verification_failures=self._verify_failed,
        )

    def flush(self, timeout: float | None) -> int:
        """Wait until everything queued so far is acknowledged (or dead-lettered); return how many
        events are still undelivered (0 on success) when ``timeout`` seconds passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._progress:
            self._flushing += 1
        try:
            self._spooler_wake.set()
            self._sender_wake.set()
            with self._progress:
                while True:
                    left = len(self._queue) + self.spool.pending()[0]
                    if (left == 0 and not self._delivering) or not self._sender.is_alive():
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
        self._spooler_wake.set()
        self._spooler.join(timeout=30)
        self._halt.set()
        self._sender_wake.set()
        self._sender.join(timeout=30)
        lost = len(self._queue)
        spooled, _ = self.spool.pending()
        self.spool.close()
        self.transport.close()
        if lost:
            _log.error("trailseal client closed with %d events in memory that could not be spooled (spool full)", lost)
        if spooled:
            _log.warning("trailseal client closed with %d undelivered events left in the spool", spooled)
        return left if lost == 0 else max(left, lost + spooled)

    # -- spooler thread -------------------------------------------------------------------------
    def _spool_loop(self) -> None:
        queue, config = self._queue, self.config
        failures = 0
        while True:
            self._spooler_wake.wait(0.25)
            self._spooler_wake.clear()
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
                    break  # the spool is full: wait for the sender to make room
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
        items: list[PendingEvent] = []
        while len(items) < room and queue:
            item = queue[0]
            if size + len(item.body) > max_bytes and (items or count):
                break
            size += len(item.body) + 40
            items.append(queue.popleft())
        if not items:
            return 0
        try:
            self.spool.append(items)
        except BaseException:
            queue.extendleft(reversed(items))
            raise
        return len(items)

    def _spool_full(self) -> bool:
        count, size = self.spool.pending()
        return count >= self.config.spool_max_events or size >= self.config.spool_max_bytes

    # -- sender thread --------------------------------------------------------------------------
    def _send_loop(self) -> None:
        partial_since: float | None = None
        while not self._halt.is_set():
            try:
                records = self.spool.head(self._limit)
            except Exception:
                _log.exception("trailseal spool: cannot read")
                self._halt.wait(1.0)
                continue
            if not records:
                partial_since = None
                self._sender_wake.wait(0.25)
                self._sender_wake.clear()
                continue
            lingering = len(records) < self._limit and not self._flushing and not self._stopping.is_set()
            if lingering and self.spool.pending()[0] == len(records):  # not cut short by a change of log
                now = time.monotonic()
                partial_since = partial_since or now
                remaining = self.config.linger - (now - partial_since)
                if remaining > 0:
                    self._sender_wake.wait(remaining)
                    self._sender_wake.clear()
                    continue
            partial_since = None
            self._delivering = True
            try:
                self._deliver(records)
            finally:
                self._delivering = False
                with self._progress:
                    self._progress.notify_all()

    def _deliver(self, records: list[SpoolRecord]) -> None:
        log = records[0].log
        try:
            receipts = self.transport.send(
                log, [r.event_id for r in records], [r.body for r in records], proofs=self.monitor is not None
            )
        except RejectedBatch as exc:
            self._reject(records, exc)
            return
        except TransportError as exc:
            self._backoff(exc, exc.retry_after, len(records))
            return
        except Exception as exc:  # a bug or an unexpected library error: keep the events, retry
            _log.exception("trailseal sender: unexpected error")
            self._backoff(exc, None, len(records))
            return
        self._failures_in_row = 0
        self._limit = min(self.config.batch_size, self._limit * 2)
        self.spool.remove_through(records[-1].position)
        self._sent += len(records)
        self._spooler_wake.set()
        self._handle_receipts(records, receipts)

    def _backoff(self, exc: Exception, retry_after: float | None, size: int) -> None:
        self._retries += 1
        self._failures_in_row += 1
        wait = self.config.retry.delay(self._failures_in_row, retry_after)
        level = logging.WARNING if self._failures_in_row in (1, 10) or self._failures_in_row % 100 == 0 else logging.DEBUG
        _log.log(level, "trailseal: delivery of %d events failed (%s, attempt %d); retrying in %.2fs; events stay spooled",
                 size, exc, self._failures_in_row, wait)
        self._halt.wait(wait)

    def _reject(self, records: list[SpoolRecord], exc: RejectedBatch) -> None:
        """Dead-letter the refused events; resend the rest (split the batch when unsure which)."""
        if exc.rejected:
            doomed = [records[i] for i in sorted(exc.rejected)]
            reasons = "; ".join(f"{records[i].event_id}: {why}" for i, why in sorted(exc.rejected.items()))
            self._dead_letter(doomed, exc.status, reasons)
            return
        if len(records) == 1:
            self._dead_letter(records, exc.status, str(exc))
            return
        # Which event is at fault is unknown (400, 413, ...): narrow the batch down by halves
        # (the next batches start at the same head, so the order is kept) until it is found.
        self._limit = max(1, len(records) // 2)

    def _dead_letter(self, records: Sequence[SpoolRecord], status: int, reason: str) -> None:
        self.spool.dead_letter(records, status, reason)
        self._failed += len(records)
        _log.error("trailseal: the server refused %d events for good (HTTP %d: %s); kept in the dead-letter table",
                   len(records), status, reason)
        with self._progress:
            self._progress.notify_all()

    def _handle_receipts(self, records: list[SpoolRecord], answers: list[dict[str, object]]) -> None:
        try:
            receipts = [Receipt.from_json(answer) for answer in answers] if (self.monitor or self.on_receipt) else []
        except FormatError as exc:
            self._verification_failed(VerificationError(f"receipt: unreadable: {exc}"))
            return
        self._duplicates += sum(1 for answer in answers if answer.get("duplicate"))
        for record, answer in zip(records, answers, strict=True):
            if answer.get("id") != record.event_id:
                self._verification_failed(
                    VerificationError(f"receipt: id {answer.get('id')!r} answers event {record.event_id!r}")
                )
                return
        if self.monitor is not None:
            try:
                self.monitor.check(receipts)
                self._verified += len(receipts)
            except VerificationError as exc:
                self._verification_failed(exc)
            except TransportError as exc:
                self._verification_failed(VerificationError(f"consistency proof unavailable: {exc}"))
        if self.on_receipt is not None:
            for receipt in receipts:
                try:
                    self.on_receipt(receipt)
                except Exception:
                    _log.exception("trailseal: on_receipt callback failed")

    def _verification_failed(self, exc: VerificationError) -> None:
        self._verify_failed += 1
        _log.error("trailseal receipt check FAILED: %s", exc)
        if self.on_verification_error is not None:
            try:
                self.on_verification_error(exc)
            except Exception:
                _log.exception("trailseal: on_verification_error callback failed")
