"""``ProcessSequencer``: the log writers in a child process, behind the :class:`Sequencer` API.

In one Python process the writer thread and the request handlers share the GIL: every time the
writer comes back from SQLite (which releases the GIL for I/O) it waits for the event loop to
let go, so commits stretch and the receipt → checkpoint time grows with the request load. With
``writer_process`` on (the default of ``trailseal serve`` on SQLite), the sequencer runs in its
own process instead and the two use both cores::

    API process                                      writer process
    ───────────                                      ──────────────
    HTTP, pipeline stages, reads                     Sequencer (group commit, one thread per log)
    submit() ── admission (503 when full) ──►        re-hash, commit + fsync, sign checkpoint
             ◄── receipts, or the request's error ──

The API process keeps admission (``queue_max_events``, answered at once with
:class:`~trailseal.core.errors.OverloadedError`), so backpressure is unchanged. Requests travel
as :class:`~trailseal.sequencer.types.Staged` values (the canonical bytes, hashes and the store's
columns), pickled over a pipe: the writer does not rebuild envelopes. Receipts are sent only after the commit, so
a crash of either process loses no acknowledged event: the writer exits when the API process
goes away (end of file on the pipe) after committing what it holds, and a new writer waits on
``writer.lock`` (an exclusive ``flock`` the old one holds until it exits), so two writers never
append to one log. If the writer dies, the requests it held fail with
:class:`~trailseal.sequencer.runner.SequencerUnavailable` (503, the producer retries; a retry of
an event that was committed after all is answered from its id) and a new writer is started,
which continues each log from the store; after 5 deaths within a minute it stays down and
``/readyz`` reports it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import functools
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from trailseal.core.errors import TrailsealError
from trailseal.core.keys import Keyring
from trailseal.sequencer.runner import (
    Sequencer,
    SequencerConfig,
    SequencerUnavailable,
    error_from_record,
    error_record,
)
from trailseal.sequencer.types import Item, LeafColumns, Receipt, Staged
from trailseal.storage.base import Store

__all__ = ["ProcessSequencer", "WriterFactory"]

_log = logging.getLogger("trailseal.sequencer")

WriterFactory = Callable[[SequencerConfig], Sequencer]
"""Builds the child's in-process :class:`Sequencer` (must be picklable: a module-level function
or a :func:`functools.partial` of one)."""

_START_TIMEOUT = 120.0  # the writer restores each log's frontier from the store before "ready"
_CALL_TIMEOUT = 60.0
_MAX_RESTARTS = 5  # within a minute; then the writer stays down and /readyz says so


def _to_wire(item: Item) -> tuple[Any, ...]:
    """A plain tuple (pickles several times faster than the dataclass): columns, bytes, hashes."""
    return (*item.leaf_columns(), item.body, item.leaf_hash, item.content_hash)


def astuple_receipt(receipt: Receipt) -> tuple[Any, ...]:
    """A receipt's fields in order, as a plain tuple (``Receipt(*fields)`` rebuilds it)."""
    return (receipt.id, receipt.log, receipt.leaf_index, receipt.leaf_hash, receipt.tree_size,
            receipt.checkpoint, receipt.inclusion_proof, receipt.duplicate)


def _from_wire(record: tuple[Any, ...]) -> Staged:
    return Staged(LeafColumns._make(record[:_COLUMNS]), *record[_COLUMNS:])


_COLUMNS = len(LeafColumns._fields)


class _WriterState:
    """What ``/readyz`` reads for a log: the writer's failure, if it stopped."""

    def __init__(self, owner: ProcessSequencer) -> None:
        self._owner = owner

    @property
    def failure(self) -> BaseException | None:
        return self._owner.failure


class ProcessSequencer(Sequencer):
    """A :class:`Sequencer` whose writers run in a child process (see the module docs)."""

    def __init__(
        self,
        store: Store,
        keyring_for: Callable[[str], Keyring],
        origin_for: Callable[[str], str],
        clock: Callable[[], str],
        config: SequencerConfig,
        *,
        factory: WriterFactory,
        lock_path: Path | None,
    ) -> None:
        super().__init__(store, keyring_for, origin_for, clock, config)
        self.failure: BaseException | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[concurrent.futures.Future[Any], int]] = {}
        self._pending_lock = threading.Lock()
        self._outbox: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._started_logs: set[str] = set()
        # The child bounds nothing itself: admission happens here, before a request is sent.
        self._spawn_args = (factory, replace(config, queue_max_events=2**62), str(lock_path) if lock_path is not None else None)
        self._generation = 0  # bumped at each restart: queued messages of a dead writer are dropped
        self._restarts: list[float] = []
        self._process, self._conn = self._spawn()
        self._reader = threading.Thread(target=self._read_loop, name="writer-receipts", daemon=True)
        self._reader.start()
        self._sender = threading.Thread(target=self._send_loop, name="writer-requests", daemon=True)
        self._sender.start()

    def _spawn(self) -> tuple[multiprocessing.process.BaseProcess, multiprocessing.connection.Connection]:
        """Start a writer process and wait until it restored its logs and said ready."""
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=_child_main, args=(child, *self._spawn_args),
                                  name="trailseal-writer", daemon=True)
        process.start()
        child.close()
        if not parent.poll(_START_TIMEOUT):
            process.kill()
            raise SequencerUnavailable(f"writer process did not start within {_START_TIMEOUT:.0f} s")
        try:
            hello = parent.recv()
        except EOFError:
            process.join(5)
            raise SequencerUnavailable(
                f"writer process exited at start (exit code {process.exitcode}); see its log"
            ) from None
        if hello[0] != "ready":
            process.join(5)
            raise SequencerUnavailable(f"writer process failed to start: {hello[1]}")
        return process, parent

    def _restart(self) -> bool:
        """Replace a writer that died (at most :data:`_MAX_RESTARTS` a minute); True if running."""
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60.0]
        if len(self._restarts) >= _MAX_RESTARTS:
            _log.critical("writer process died %d times within a minute; not restarting it: "
                          "requests get 503 until the service is restarted", len(self._restarts))
            return False
        self._restarts.append(now)
        time.sleep(0.2 * len(self._restarts))
        try:
            process, conn = self._spawn()
        except SequencerUnavailable as exc:
            _log.critical("writer process could not be restarted: %s", exc)
            return False
        with self._lock:
            if self._closed:
                process.kill()
                return False
            self._generation += 1
            self._process, self._conn = process, conn
            self._started_logs.clear()
            self.failure = None
        _log.warning("writer process restarted (pid %s); it continues each log from the store", process.pid)
        return True

    @property
    def pid(self) -> int | None:
        """The writer process id."""
        return self._process.pid

    # -- calls -------------------------------------------------------------------------------
    def _call(self, op: str, *args: Any, size: int = 0) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.failure is not None:
            future.set_exception(SequencerUnavailable(f"writer process stopped: {self.failure}"))
            return future
        call_id = next(self._ids)
        with self._pending_lock:
            self._pending[call_id] = (future, size)
        self._outbox.put((self._generation, (op, call_id, *args)))
        return future

    def _settle(self, call_id: int) -> concurrent.futures.Future[Any] | None:
        """Take a call off the pending table (releasing its admission); its future, if any."""
        with self._pending_lock:
            future, size = self._pending.pop(call_id, (None, 0))
        if size:
            self._release(size)
        return future

    def _drop(self, call_id: int, why: str) -> None:
        future = self._settle(call_id)
        if future is not None and not future.done():
            future.set_exception(SequencerUnavailable(why))

    def _send_loop(self) -> None:
        # Pickling and writing happen here, never on the event loop: a write blocks while the
        # socket buffer is full (a request of 100 events is larger than it).
        while True:
            queued = self._outbox.get()
            if queued is None:
                return
            generation, message = queued
            if generation != self._generation:  # meant for a writer that died: never sent
                self._drop(message[1], "writer process stopped before the request was sent")
                continue
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:
                self._drop(message[1], f"writer process stopped: {exc}")

    def _read_loop(self) -> None:
        while True:
            try:
                kind, call_id, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._process.join(2)
                code = self._process.exitcode
                self._fail(exc if self._closed else SequencerUnavailable(
                    f"writer process exited (exit code {code})"))
                if self._closed or not self._restart():
                    return
                continue
            future = self._settle(call_id)
            if future is None:
                continue
            if kind == "receipts":
                future.set_result([Receipt(*fields) for fields in value])
            elif kind == "ok":
                future.set_result(value)
            else:
                future.set_exception(error_from_record(value))

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self.failure = exc
            if not self._closed:
                _log.error("writer process failed: %s", exc)
        with self._pending_lock:
            pending = list(self._pending)
        for call_id in pending:
            self._drop(call_id, f"writer process stopped: {exc}")

    def _wait(self, future: concurrent.futures.Future[Any]) -> Any:
        try:
            return future.result(_CALL_TIMEOUT)
        except concurrent.futures.TimeoutError:
            raise SequencerUnavailable(f"writer process did not answer within {_CALL_TIMEOUT:.0f} s") from None

    # -- the Sequencer API -------------------------------------------------------------------
    def worker(self, log: str) -> Any:
        """Start ``log``'s writer in the child (restores its frontier) and return its state."""
        if log not in self._started_logs:
            self._wait(self._call("start", log))
            self._started_logs.add(log)
        return _WriterState(self)

    def submit_future(
        self, log: str, events: Sequence[Item], *, want_proofs: bool = False
    ) -> concurrent.futures.Future[list[Receipt]]:
        """Queue one request in the writer; resolves after its batch committed (fsync)."""
        if self.failure is not None:
            raise SequencerUnavailable(f"log {log}: writer process stopped: {self.failure}")
        size = max(1, len(events))
        self._admit(size)
        return self._call("submit", log, [_to_wire(e) for e in events], want_proofs, size=size)

    def cluster_status(self) -> dict[str, Any]:
        """The writer's election state (PostgreSQL): ``leading``, ``coordinator_error``,
        ``listening`` (its outbox listener). Empty when the writer is down."""
        if self.failure is not None:
            return {}
        try:
            status: dict[str, Any] = self._call("status").result(5.0)
        except (concurrent.futures.TimeoutError, TrailsealError):
            return {}
        return status

    @property
    def leading(self) -> list[str]:
        """Logs the writer process sequences (a cluster node)."""
        return list(self.cluster_status().get("leading", []))

    @property
    def coordinator_error(self) -> str | None:
        """Why the writer's cluster coordination is unhealthy, if it is."""
        if self.failure is not None:
            return f"writer process stopped: {self.failure}"
        status = self.cluster_status()
        if not status:
            return "writer process did not answer"
        if not status.get("listening", True):
            return "outbox listener is not connected to PostgreSQL"
        error = status.get("coordinator_error")
        return str(error) if error else None

    def tree_size(self, log: str) -> int:
        """Committed size of a log, as the writer holds it."""
        return int(self._wait(self._call("tree_size", log)))

    def receipt_for(self, log: str, leaf_index: int) -> Receipt:
        """Receipt of a committed leaf (with its inclusion proof)."""
        receipt: Receipt = self._wait(self._call("receipt_for", log, leaf_index))
        return receipt

    def close(self, timeout: float = 30.0) -> None:
        """Stop admitting, let the writer drain and exit, wait for it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._outbox.put((self._generation, ("close", 0)))
        self._outbox.put(None)
        self._sender.join(timeout)
        self._process.join(timeout)
        if self._process.is_alive():
            _log.error("writer process did not stop within %.0f s; killing it", timeout)
            self._process.kill()
            self._process.join(5)
        self._reader.join(5)
        self._conn.close()


# -- the child ---------------------------------------------------------------------------------
def _start(sequencer: Sequencer, log: str) -> None:
    sequencer.worker(log)


def _status(sequencer: Sequencer) -> dict[str, Any]:
    outbox = getattr(sequencer, "outbox", None)
    return {
        "leading": list(getattr(sequencer, "leading", [])),
        "coordinator_error": getattr(sequencer, "coordinator_error", None),
        "listening": bool(getattr(outbox, "listening", True)),
    }


_CALLS: dict[str, Callable[..., Any]] = {
    "start": _start,
    "status": _status,
    "tree_size": Sequencer.tree_size,
    "receipt_for": Sequencer.receipt_for,
}


def _child_main(
    conn: multiprocessing.connection.Connection, factory: WriterFactory, config: SequencerConfig,
    lock_path: str | None,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s writer %(levelname)s %(message)s")
    # This process is ours: hand the GIL over sooner than the default 5 ms, so the thread that
    # reads requests is not held up behind a commit's Python work (and the API process's writes
    # do not wait on a full socket buffer).
    sys.setswitchinterval(0.0005)
    # A previous writer (its API process was killed) may still be finishing its last commit.
    # (None: the store elects its writers itself, as PostgreSQL does.)
    lock = open(lock_path, "a+") if lock_path is not None else None  # noqa: SIM115 - held until exit
    if lock is not None:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
    try:
        sequencer = factory(config)
    except BaseException as exc:
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    send_lock = threading.Lock()

    def reply(call_id: int, kind: str, value: Any) -> None:
        with send_lock, contextlib.suppress(OSError, ValueError):
            conn.send((kind, call_id, value))

    def answer(call_id: int, run: Callable[[], Any]) -> None:
        try:
            value = run()
        except BaseException as exc:  # every failure goes back to the caller
            reply(call_id, "err", error_record(exc))
        else:
            reply(call_id, "ok", value)

    def submitted(call_id: int) -> Callable[[concurrent.futures.Future[list[Receipt]]], None]:
        def done(future: concurrent.futures.Future[list[Receipt]]) -> None:
            exc = future.exception()
            if exc is not None:
                reply(call_id, "err", error_record(exc))
            else:
                reply(call_id, "receipts", [astuple_receipt(r) for r in future.result()])
        return done

    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break  # the API process is gone: commit what is queued, then exit
            op, call_id = message[0], message[1]
            if op == "close":
                break
            if op == "submit":
                _, _, log, payload, want_proofs = message
                try:
                    staged = [_from_wire(record) for record in payload]
                    future = sequencer.submit_future(log, staged, want_proofs=want_proofs)
                except BaseException as exc:
                    reply(call_id, "err", error_record(exc))
                else:
                    future.add_done_callback(submitted(call_id))
            elif op in _CALLS:
                answer(call_id, functools.partial(_CALLS[op], sequencer, *message[2:]))
            else:
                reply(call_id, "err", {"kind": "format", "detail": f"unknown writer call {op!r}"})
    finally:
        sequencer.close()
        sequencer.store.close()
        conn.close()
        if lock is not None:
            lock.close()
