"""``Sequencer``: a writer thread per log behind a bounded queue, with group commit.

A batch closes when it holds ``batch_max_events`` events or ``batch_max_wait`` seconds after its
first request arrived, whichever comes first. Requests are admitted only while the events queued
across all logs stay under ``queue_max_events``; beyond that :meth:`Sequencer.submit` raises
:class:`~trailseal.core.errors.OverloadedError` at once (the API turns it into 503 with
``Retry-After``), so memory stays flat under any offered load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trailseal.core.errors import ConflictError, FormatError, OverloadedError, TrailsealError
from trailseal.core.keys import Keyring
from trailseal.sequencer.log import LogSequencer, Request
from trailseal.sequencer.types import Item, Receipt
from trailseal.storage.base import Store

_log = logging.getLogger("trailseal.sequencer")


@dataclass(frozen=True)
class SequencerConfig:
    """Group-commit and backpressure knobs."""

    batch_max_events: int = 2000
    batch_max_wait: float = 0.005
    queue_max_events: int = 50_000
    retry_after: float = 1.0


@dataclass
class _Item:
    request: Request
    future: concurrent.futures.Future[list[Receipt]]
    size: int


class SequencerUnavailable(TrailsealError):
    """The log's writer stopped after an error it cannot recover from on its own."""


def error_record(exc: BaseException) -> dict[str, Any]:
    """A request's failure as plain data, for another process or node (the writer process's
    pipe, the PostgreSQL outbox); :func:`error_from_record` turns it back into the exception."""
    if isinstance(exc, ConflictError):
        return {"kind": "conflict", "detail": str(exc), "event_id": exc.event_id}
    if isinstance(exc, FormatError):
        return {"kind": "format", "detail": str(exc)}
    if isinstance(exc, OverloadedError):
        return {"kind": "overloaded", "detail": str(exc), "retry_after": exc.retry_after}
    return {"kind": "unavailable", "detail": f"{type(exc).__name__}: {exc}"}


def error_from_record(record: Mapping[str, Any]) -> TrailsealError:
    """The exception an :func:`error_record` stands for."""
    detail = str(record.get("detail", "request failed at the sequencer"))
    kind = record.get("kind")
    if kind == "conflict":
        return ConflictError(detail, event_id=str(record.get("event_id", "")))
    if kind == "format":
        return FormatError(detail)
    if kind == "overloaded":
        return OverloadedError(detail, retry_after=float(record.get("retry_after", 1.0)))
    return SequencerUnavailable(detail)


class _LogWorker(threading.Thread):
    def __init__(self, owner: Sequencer, log_seq: LogSequencer) -> None:
        super().__init__(name=f"sequencer-{log_seq.log}", daemon=True)
        self.owner = owner
        self.seq = log_seq
        self.inbox: queue.Queue[_Item | None] = queue.Queue()
        self.stopping = False
        self.failure: BaseException | None = None
        self.batches = 0
        self.last_commit_seconds = 0.0

    def run(self) -> None:
        cfg = self.owner.config
        while True:
            first = self.inbox.get()
            if first is None:
                return
            batch = [first]
            events = first.size
            deadline = time.monotonic() + cfg.batch_max_wait
            stop_after = False
            while events < cfg.batch_max_events:
                timeout = deadline - time.monotonic()
                try:
                    item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop_after = True
                    break
                batch.append(item)
                events += item.size
            self._commit(batch)
            if stop_after:
                return

    def _commit(self, batch: list[_Item]) -> None:
        started = time.monotonic()
        try:
            if self.failure is not None:
                raise SequencerUnavailable(f"log {self.seq.log}: writer stopped: {self.failure}")
            self.seq.commit([item.request for item in batch])
        except BaseException as exc:  # fail this batch, keep the thread alive
            _log.exception("commit failed for log %s", self.seq.log)
            try:
                self.seq._restore()
            except BaseException as again:
                self.failure = again
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
        else:
            for item in batch:
                if item.request.error is not None:
                    item.future.set_exception(item.request.error)
                else:
                    item.future.set_result(item.request.receipts or [])
        finally:
            self.owner._release(sum(item.size for item in batch))
            self.batches += 1
            self.last_commit_seconds = time.monotonic() - started


class Sequencer:
    """Owns one :class:`LogSequencer` and writer thread per log."""

    def __init__(
        self,
        store: Store,
        keyring_for: Callable[[str], Keyring],
        origin_for: Callable[[str], str],
        clock: Callable[[], str],
        config: SequencerConfig | None = None,
    ) -> None:
        self.store = store
        self.keyring_for = keyring_for
        self.origin_for = origin_for
        self.clock = clock
        self.config = config or SequencerConfig()
        self._workers: dict[str, _LogWorker] = {}
        self._lock = threading.Lock()
        self._queued = 0
        self._closed = False

    # -- admission ---------------------------------------------------------------------------
    @property
    def queued_events(self) -> int:
        """Events admitted but not yet committed, across all logs."""
        return self._queued

    def _admit(self, size: int) -> None:
        with self._lock:
            if self._closed:
                raise OverloadedError("sequencer: shutting down", retry_after=self.config.retry_after)
            if self._queued and self._queued + size > self.config.queue_max_events:
                raise OverloadedError(
                    f"sequencer: queue full ({self._queued} events queued, limit "
                    f"{self.config.queue_max_events})",
                    retry_after=self.config.retry_after,
                )
            self._queued += size

    def _release(self, size: int) -> None:
        with self._lock:
            self._queued -= size

    def worker(self, log: str) -> _LogWorker:
        """The log's writer, started on first use."""
        with self._lock:
            found = self._workers.get(log)
            if found is not None:
                return found
            origin = self.origin_for(log)
            self.store.ensure_log(log, origin, self.clock())
            seq = LogSequencer(self.store, log, origin, self.keyring_for(log), self.clock)
            started = _LogWorker(self, seq)
            started.start()
            self._workers[log] = started
            return started

    def submit_future(
        self, log: str, events: Sequence[Item], *, want_proofs: bool = False
    ) -> concurrent.futures.Future[list[Receipt]]:
        """Queue one request; the future resolves after its batch committed (fsync)."""
        worker = self.worker(log)
        if worker.failure is not None:
            raise SequencerUnavailable(f"log {log}: writer stopped: {worker.failure}")
        size = max(1, len(events))
        self._admit(size)
        future: concurrent.futures.Future[list[Receipt]] = concurrent.futures.Future()
        worker.inbox.put(_Item(Request(list(events), want_proofs), future, size))
        return future

    async def submit(
        self, log: str, events: Sequence[Item], *, want_proofs: bool = False
    ) -> list[Receipt]:
        """Async form of :meth:`submit_future`."""
        return await asyncio.wrap_future(self.submit_future(log, events, want_proofs=want_proofs))

    def submit_sync(
        self, log: str, events: Sequence[Item], *, want_proofs: bool = False
    ) -> list[Receipt]:
        """Blocking form, for the CLI and embedding."""
        return self.submit_future(log, events, want_proofs=want_proofs).result()

    def tree_size(self, log: str) -> int:
        """Committed size of a log that this process sequences."""
        return self.worker(log).seq.tree_size

    def receipt_for(self, log: str, leaf_index: int) -> Receipt:
        """Receipt of a committed leaf (with its inclusion proof)."""
        return self.worker(log).seq.receipt_for(leaf_index)

    def close(self, timeout: float = 30.0) -> None:
        """Stop admitting, drain what is queued, stop the writers."""
        with self._lock:
            self._closed = True
            workers = list(self._workers.values())
        for worker in workers:
            worker.inbox.put(None)
        for worker in workers:
            worker.join(timeout)
