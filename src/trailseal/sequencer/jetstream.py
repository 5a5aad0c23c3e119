"""NATS JetStream ingest: API nodes publish accepted events, the log's sequencer consumes them.

Acknowledgement modes (docs/deploy.md):

* **sequenced** (default, no bus): the producer's answer comes after the event is committed to
  the store and covered by a signed checkpoint; the receipt carries leaf index and checkpoint.
* **accepted** (``--ingest nats://...``): the answer comes once JetStream stored the event (the
  publish acknowledgement, replicated to the stream's quorum); the receipt says
  ``"status": "accepted"`` and the final receipt is fetched later with ``GET /v1/events/{id}``.

One message per event on subject ``<stream>.events.<log>``, payload ``content_hash || body``
(:mod:`trailseal.sequencer.wire`), header ``Nats-Msg-Id: <event id>`` so JetStream drops a retry
within its duplicate window; beyond it, the sequencer's own event-id deduplication answers the
retry with the original leaf. The stream uses work-queue retention: a message is deleted once the
sequencer acknowledged it, which it does only *after* the commit that contains it — so a crash at
any point re-delivers, and re-delivery is idempotent. Each log has one durable pull consumer,
driven by whichever node currently leads the log (a :class:`~trailseal.sequencer.cluster.LeadHook`).

nats-py is asyncio; the bus runs its own event loop on a background thread, so callers on any
thread or loop can use it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig

from trailseal.core.errors import ConflictError, FormatError, OverloadedError
from trailseal.sequencer.cluster import ClusterSequencer
from trailseal.sequencer.runner import SequencerUnavailable
from trailseal.sequencer.types import Prepared
from trailseal.sequencer.wire import decode_event, encode_event

_log = logging.getLogger("trailseal.jetstream")
_T = TypeVar("_T")
_IN_FLIGHT = 3  # fetched batches handed to the writer and not yet acknowledged, per log


class JetStreamBus:
    """The stream, its publisher and the consumers of the logs this node leads."""

    def __init__(
        self,
        url: str,
        stream: str = "TRAILSEAL",
        *,
        sequencer: ClusterSequencer | None = None,
        replicas: int = 1,
        ack_wait: float = 10.0,
        fetch_batch: int = 1000,
        publish_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.stream = stream
        self.sequencer = sequencer
        self.replicas = replicas
        self.ack_wait = ack_wait
        self.fetch_batch = fetch_batch
        self.publish_timeout = publish_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="trailseal-nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._consumers: dict[str, asyncio.Task[None]] = {}
        self._settling: dict[str, list[asyncio.Future[None]]] = {}

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def subject(self, log: str) -> str:
        """The subject events of ``log`` are published on."""
        return f"{self.stream}.events.{log}"

    def durable(self, log: str) -> str:
        """The durable consumer name of ``log`` (consumer names cannot hold dots)."""
        return f"seq-{hashlib.sha256(log.encode()).hexdigest()[:20]}"

    @property
    def connected(self) -> bool:
        """True while the connection to NATS is up."""
        return bool(self._nc is not None and self._nc.is_connected)

    def start(self, timeout: float = 15.0) -> None:
        """Connect and create (or update) the stream."""
        self._run(self._connect()).result(timeout)

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            servers=[url.strip() for url in self.url.split(",")], connect_timeout=5, max_reconnect_attempts=-1,
            reconnect_time_wait=0.5, name="trailseal",
        )
        self._js = self._nc.jetstream()
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.stream}.events.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=120.0,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(config)

    def close(self, timeout: float = 15.0) -> None:
        """Stop consumers (each finishes its batches), flush and close the connection, stop the loop."""
        for log in list(self._consumers):
            self.stopped(log)
        if self._nc is not None:
            try:  # acknowledgements are buffered publishes: flush them, then close
                self._run(self._shutdown()).result(timeout)
            except Exception as exc:
                _log.warning("nats close: %r", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _shutdown(self) -> None:
        if self._nc.is_connected:
            await self._nc.flush(timeout=5)
        await self._nc.close()

    def backlog(self, log: str) -> int:
        """Messages of ``log`` not yet acknowledged by its sequencer (pending + in flight)."""
        async def ask() -> int:
            info = await self._js.consumer_info(self.stream, self.durable(log))
            return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

        return self._run(ask()).result(15)

    def delete_stream(self) -> None:
        """Delete the stream (tests)."""
        self._run(self._js.delete_stream(self.stream)).result(15)

    # -- publishing --------------------------------------------------------------------------
    async def publish(self, log: str, items: Sequence[Prepared]) -> None:
        """Store ``items`` in the stream; returns once JetStream acknowledged every one."""
        future = self._run(self._publish(log, items))
        try:
            await asyncio.wrap_future(future)
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
            raise SequencerUnavailable(f"bus: JetStream did not store the events: {exc!r}") from exc

    async def _publish(self, log: str, items: Sequence[Prepared]) -> None:
        if self._js is None or not self.connected:
            raise nats.errors.ConnectionClosedError
        subject = self.subject(log)
        await asyncio.gather(*(
            self._js.publish(
                subject, encode_event(item), timeout=self.publish_timeout,
                stream=self.stream, headers={"Nats-Msg-Id": item.event.id},
            )
            for item in items
        ))

    # -- consuming (LeadHook) ----------------------------------------------------------------
    def started(self, log: str) -> None:
        """This node now sequences ``log``: start its consumer."""
        def launch() -> None:
            self._consumers[log] = self._loop.create_task(self._consume(log))

        if log not in self._consumers:
            self._loop.call_soon_threadsafe(launch)

    def stopped(self, log: str) -> None:
        """Stop ``log``'s consumer; batches already handed to the writer are committed and
        acknowledged first (anything unacknowledged is redelivered to the next sequencer)."""
        async def stop() -> None:
            task = self._consumers.pop(log, None)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            settling = self._settling.pop(log, [])
            await asyncio.gather(*settling, return_exceptions=True)

        try:
            self._run(stop()).result(60)
        except Exception as exc:
            _log.warning("stopping consumer of %s: %s", log, exc)

    async def _consume(self, log: str) -> None:
        assert self.sequencer is not None
        subscription = None
        while subscription is None:
            try:
                subscription = await self._js.pull_subscribe(
                    self.subject(log), durable=self.durable(log), stream=self.stream,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait,
                        max_ack_pending=self.fetch_batch * 20, filter_subject=self.subject(log),
                    ),
                )
            except Exception as exc:
                _log.warning("consumer of %s: %r; retrying", log, exc)
                await asyncio.sleep(1.0)
        # Pipelined: while the writer commits batch N, batch N+1 is fetched and decoded.
        settling = self._settling.setdefault(log, [])
        while True:
            while len(settling) >= _IN_FLIGHT:
                await asyncio.wait([settling[0]])
            try:
                messages = await subscription.fetch(self.fetch_batch, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("fetch for %s: %r", log, exc)
                await asyncio.sleep(0.5)
                continue
            decoded, future = await self._submit(log, messages)
            if decoded:
                task = asyncio.ensure_future(self._settle(log, decoded, future))
                settling.append(task)
                task.add_done_callback(settling.remove)

    async def _submit(
        self, log: str, messages: Sequence[Any]
    ) -> tuple[list[tuple[Any, Prepared]], concurrent.futures.Future[Any] | None]:
        """Decode a fetched batch and hand it to the writer as one request (one group commit).

        Returns the decoded messages and the commit's future (``None`` if the writer refused).
        """
        assert self.sequencer is not None
        decoded: list[tuple[Any, Prepared]] = []
        for message in messages:
            try:
                decoded.append((message, decode_event(message.data)))
            except FormatError as exc:
                _log.error("stream message of %s is malformed (%s); terminated", log, exc)
                await message.term()
        if not decoded:
            return decoded, None
        try:
            return decoded, self.sequencer.submit_local(log, [item for _, item in decoded])
        except (OverloadedError, SequencerUnavailable) as exc:
            _log.warning("batch of log %s not sequenced (%s); redelivering", log, exc)
            await asyncio.gather(*(message.nak(delay=1.0) for message, _ in decoded))
            return [], None

    async def _settle(
        self, log: str, decoded: Sequence[tuple[Any, Prepared]], future: concurrent.futures.Future[Any] | None
    ) -> None:
        """Acknowledge a batch once its commit succeeded (never before).

        A request fails as a whole, so when one event conflicts (an id reused for other content)
        the batch is retried event by event: the others are committed, that one terminated.
        """
        if future is None:
            return
        try:
            await asyncio.wrap_future(future)
        except ConflictError as exc:
            if not exc.event_id:  # deposed: the next sequencer gets them redelivered
                await asyncio.gather(*(message.nak(delay=1.0) for message, _ in decoded))
                return
            await self._sequence_each(log, decoded)
            return
        except Exception as exc:  # unavailable, shutting down: redelivered after the delay
            _log.warning("batch of log %s not sequenced (%s); redelivering", log, exc)
            await asyncio.gather(*(message.nak(delay=1.0) for message, _ in decoded))
            return
        await asyncio.gather(*(message.ack() for message, _ in decoded))

    async def _sequence_each(self, log: str, decoded: Sequence[tuple[Any, Prepared]]) -> None:
        assert self.sequencer is not None
        for message, item in decoded:
            try:
                await asyncio.wrap_future(self.sequencer.submit_local(log, [item]))
            except ConflictError as exc:
                if not exc.event_id:
                    await message.nak(delay=1.0)
                    continue
                _log.error("event %s not sequenced: %s; terminated", exc.event_id, exc)
                await message.term()
            except Exception as exc:
                _log.warning("event of log %s not sequenced (%s); redelivering", log, exc)
                await message.nak(delay=1.0)
            else:
                await message.ack()
