"""``AuditClient`` and ``AsyncAuditClient``: emit audit events in one line, never lose them.

::

    from trailseal.sdk import AuditClient

    with AuditClient("http://127.0.0.1:8700", spool_path="/var/lib/myapp/audit.spool") as audit:
        audit.emit(action="invoice.approve", actor="alice@example.com", resource="invoice:inv-42")

``emit`` validates the cheap things, fills in the audit context (actor, tenant, request and trace
ids), reads the clock, gives the event a UUIDv7 ``id`` (its idempotency key,
:mod:`trailseal.sdk.ids`), serializes it and appends it to an in-memory queue — a few
microseconds, no lock and no I/O — and returns; the engine (:mod:`trailseal.sdk.engine`) writes
the ``time`` text and stamps ``producer.id``/``producer.seq`` as it writes the event to the spool,
then batches, sends, retries and checks receipts in the background.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import orjson

from trailseal.core.errors import VerificationError
from trailseal.core.event import Event
from trailseal.core.note import VerifierSet
from trailseal.core.receipt import Receipt
from trailseal.sdk.context import effective_context
from trailseal.sdk.engine import ClientStats, Engine, EngineConfig
from trailseal.sdk.envelope import QueueItem, build_event, keyword_item
from trailseal.sdk.monitor import ReceiptMonitor
from trailseal.sdk.retry import RetryPolicy
from trailseal.sdk.spool import DeadLetter, Item, MemorySpool, Spool, SQLiteSpool
from trailseal.sdk.transport import HTTPTransport, Transport

__all__ = ["AsyncAuditClient", "AuditClient"]

_OPTIONS_DOC = """
    Where events go: ``url`` of a trailseal server (or a ready ``transport``); ``api_key`` is sent
    as ``Authorization: Bearer <key>``; ``log`` is the default target log (else the server's
    default; an ``audit_context(tenant=...)`` or ``emit(log=...)`` overrides it); ``timeout`` is
    the HTTP timeout in seconds.

    Spool: ``spool_path`` — a SQLite file that makes events durable before they are sent and keeps
    ``producer.id`` and ``producer.seq`` across restarts (without it the spool is in memory and each
    client is a new producer); ``spool_sync`` — ``"full"`` (fsync, survives power loss) or
    ``"normal"`` (survives a process crash); ``spool_max_events`` / ``spool_max_bytes`` — its bounds;
    ``max_queue`` — events held in memory before the spool; ``on_full`` — ``"block"`` (wait up to
    ``block_timeout`` seconds for room, then raise ``SpoolFull``) or ``"raise"`` (raise at once).

    Batching and retries: ``batch_size`` events per request, sent when that many are waiting or
    ``linger`` seconds after the first; ``max_in_flight`` — batches sent at once (default 2: the
    next batch travels while the server works on the previous one, and the server still sequences
    them in ``producer.seq`` order; each batch is acknowledged before it leaves the spool);
    ``retry`` — a :class:`RetryPolicy`.

    Envelope: ``producer_id`` (default: generated once and kept in the spool); ``source`` —
    ``{"service", "host", "region", "environment"}`` put on every event; ``strict`` — run the
    full envelope validation on the caller's thread (about 40 µs) instead of the cheap checks.

    Receipt checking: ``verifier_keys`` (``name+hash+base64`` strings, or a ``VerifierSet``) turns
    on the producer-side monitor (:mod:`trailseal.sdk.monitor`); ``on_receipt`` is called with
    every :class:`Receipt`, ``on_verification_error`` with every failed check (both on a sender
    thread, one call at a time even with several batches in flight).
"""


class _Base:
    """What the sync and async clients share: configuration and event building."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        transport: Transport | None = None,
        log: str | None = None,
        timeout: float = 10.0,
        spool_path: str | os.PathLike[str] | None = None,
        spool_sync: str = "full",
        spool_max_events: int = 1_000_000,
        spool_max_bytes: int = 1 << 30,
        max_queue: int = 100_000,
        on_full: str = "block",
        block_timeout: float = 5.0,
        batch_size: int = 500,
        linger: float = 0.05,
        max_in_flight: int = 2,
        retry: RetryPolicy | None = None,
        producer_id: str | None = None,
        source: Mapping[str, str] | None = None,
        strict: bool = False,
        verifier_keys: Iterable[str] | VerifierSet | None = None,
        on_receipt: Callable[[Receipt], None] | None = None,
        on_verification_error: Callable[[VerificationError], None] | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        if transport is None:
            if url is None:
                raise ValueError("client: give url= (a trailseal server) or transport=")
            transport = HTTPTransport(url, api_key=api_key, timeout=timeout)
        config = EngineConfig(
            batch_size=batch_size,
            linger=linger,
            max_queue=max_queue,
            spool_max_events=spool_max_events,
            spool_max_bytes=spool_max_bytes,
            on_full=on_full,
            block_timeout=block_timeout,
            retry=retry or RetryPolicy(),
            max_in_flight=max_in_flight,
        )
        spool: Spool = (
            SQLiteSpool(spool_path, producer_id=producer_id, sync=spool_sync)
            if spool_path is not None
            else MemorySpool(producer_id)
        )
        monitor = None
        if verifier_keys is not None:
            monitor = ReceiptMonitor(
                verifier_keys,
                transport.consistency,
                load=spool.load_checkpoint,
                save=spool.save_checkpoint,
            )
        self._log = log or ""
        self._source = dict(source) if source else None
        self._strict = strict
        self._close_timeout = close_timeout
        self._engine = Engine(
            spool,
            transport,
            config,
            monitor=monitor,
            on_receipt=on_receipt,
            on_verification_error=on_verification_error,
        )
        # Deliver what is queued when the client is collected or the interpreter exits
        # (weakref.finalize runs at exit), if the application forgot close().
        self._finalizer = weakref.finalize(self, self._engine.close, close_timeout)

    __init__.__doc__ = _OPTIONS_DOC

    @property
    def producer_id(self) -> str:
        """The ``producer.id`` stamped on this client's events."""
        return self._engine.spool.producer_id

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the counters: queued, spooled, sent, failed, retries, ..."""
        return self._engine.stats()

    def dead_letters(self) -> list[DeadLetter]:
        """Events the server refused for good (kept in the spool's dead-letter table)."""
        return self._engine.spool.dead_letters()

    def _pending(
        self,
        event: Event | Mapping[str, Any] | None,
        fields: dict[str, Any],
    ) -> Item:
        wire, log = build_event(
            event, fields, effective_context(), source=self._source, strict=self._strict
        )
        return log or self._log, wire["id"], orjson.dumps(wire)

    def _item(
        self,
        event: Event | Mapping[str, Any] | None,
        action: Any,
        actor: Any,
        resource: Any,
        outcome: Any,
        reason: Any,
        before: Any,
        after: Any,
        metadata: Any,
        time: Any,
        id: Any,
        request_id: Any,
        trace_id: Any,
        span_id: Any,
        source: Any,
        log: Any,
    ) -> QueueItem:
        """The queue item for one ``emit``: the direct path for keywords, else the general one."""
        if event is None and not self._strict:
            return keyword_item(
                self._log,
                self._source,
                action,
                actor,
                resource,
                outcome,
                reason,
                before,
                after,
                metadata,
                time,
                id,
                request_id,
                trace_id,
                span_id,
                source,
                log,
            )
        fields: dict[str, Any] = {}
        for name, value in (
            ("action", action),
            ("actor", actor),
            ("resource", resource),
            ("outcome", outcome),
            ("reason", reason),
            ("before", before),
            ("after", after),
            ("metadata", metadata),
            ("time", time),
            ("id", id),
            ("request_id", request_id),
            ("trace_id", trace_id),
            ("span_id", span_id),
            ("source", source),
            ("log", log),
        ):
            if value is not None:
                fields[name] = value
        return self._pending(event, fields)

    def _spool_items(self, events: Iterable[Event | Mapping[str, Any]]) -> list[Item]:
        return [self._pending(event, {}) for event in events]


class AuditClient(_Base):
    """Emits audit events from synchronous code; background threads deliver them.

    Use it as a context manager, or call :meth:`close` at shutdown (an interpreter exit closes it
    too, waiting up to ``close_timeout`` seconds). Thread-safe.
    """

    def emit(
        self,
        event: Event | Mapping[str, Any] | None = None,
        *,
        action: str | None = None,
        actor: str | Mapping[str, Any] | Any | None = None,
        resource: str | tuple[str, str] | Mapping[str, Any] | Any | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        time: str | datetime | None = None,
        id: str | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        source: Mapping[str, str] | None = None,
        log: str | None = None,
    ) -> str:
        """Queue one event and return its id at once.

        Give the envelope fields as keywords (``actor`` may be an id string, ``resource`` a
        ``"type:id"`` string), or an ``Event`` / wire-form mapping as ``event`` (keywords
        override its fields). Missing ``actor``, ``request_id``, ``trace_id``, ``span_id`` and
        the target log come from the audit context. Raises ``InvalidEvent`` for a missing
        required field or a malformed action, ``SpoolFull`` per the ``on_full`` policy, and
        ``ClientClosed`` after :meth:`close`.
        """
        item = self._item(
            event,
            action,
            actor,
            resource,
            outcome,
            reason,
            before,
            after,
            metadata,
            time,
            id,
            request_id,
            trace_id,
            span_id,
            source,
            log,
        )
        # Engine.put's usual case, written out here: on a cold cache the call alone would cost
        # emit a measurable share of its time.
        engine = self._engine
        queue = engine._queue
        if engine._closed or len(queue) >= engine._max_queue:
            engine.put(item)  # raises ClientClosed, or applies the on_full policy
        else:
            queue.append(item)
            if engine._spooler_idle:
                engine.wake_spooler()
        return item[1]

    def spool(self, events: Iterable[Event | Mapping[str, Any]], *, dedupe: bool = True) -> int:
        """Write ``events`` to the spool now, on this thread, in one transaction; when this
        returns they are durable (with a ``spool_path``). With ``dedupe``, events whose ``id``
        was spooled this way before are skipped — the hand-off an outbox relay needs. Returns how
        many were stored."""
        return self._engine.spool_now(self._spool_items(events), dedupe=dedupe)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every event emitted so far is acknowledged (or dead-lettered). Returns the
        number still undelivered: 0 on success, more if ``timeout`` seconds passed first."""
        return self._engine.flush(timeout)

    def close(self, timeout: float | None = None) -> int:
        """Flush (up to ``timeout``, default ``close_timeout``), stop, release the spool. Events
        not delivered stay in a durable spool for the next start. Returns how many those are."""
        left = self._engine.close(self._close_timeout if timeout is None else timeout)
        self._finalizer.detach()
        return left

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncAuditClient(_Base):
    """The ``asyncio`` twin of :class:`AuditClient`: ``await emit(...)``, ``await flush()``,
    ``await aclose()``, ``async with``. Delivery runs on the same background threads, so it goes
    on while the event loop is busy, and ``emit`` never waits for I/O unless memory is full and
    the policy is ``"block"`` (then it waits without blocking the loop)."""

    async def emit(
        self,
        event: Event | Mapping[str, Any] | None = None,
        *,
        action: str | None = None,
        actor: str | Mapping[str, Any] | Any | None = None,
        resource: str | tuple[str, str] | Mapping[str, Any] | Any | None = None,
        outcome: str | None = None,
        reason: str | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        time: str | datetime | None = None,
        id: str | None = None,
        request_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        source: Mapping[str, str] | None = None,
        log: str | None = None,
    ) -> str:
        """Queue one event and return its id; see :meth:`AuditClient.emit`."""
        item = self._item(
            event,
            action,
            actor,
            resource,
            outcome,
            reason,
            before,
            after,
            metadata,
            time,
            id,
            request_id,
            trace_id,
            span_id,
            source,
            log,
        )
        engine = self._engine
        if len(engine._queue) < engine.config.max_queue or engine.config.on_full == "raise":
            engine.put(item, block=False)
        else:
            await asyncio.to_thread(engine.put, item, block=True)
        return item[1]

    async def spool(
        self, events: Iterable[Event | Mapping[str, Any]], *, dedupe: bool = True
    ) -> int:
        """See :meth:`AuditClient.spool` (runs on a worker thread)."""
        items = self._spool_items(events)
        return await asyncio.to_thread(self._engine.spool_now, items, dedupe=dedupe)

    async def flush(self, timeout: float | None = None) -> int:
        """See :meth:`AuditClient.flush`."""
        return await asyncio.to_thread(self._engine.flush, timeout)

    async def aclose(self, timeout: float | None = None) -> int:
        """See :meth:`AuditClient.close`."""
        left = await asyncio.to_thread(
            self._engine.close, self._close_timeout if timeout is None else timeout
        )
        self._finalizer.detach()
        return left

    async def __aenter__(self) -> AsyncAuditClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
