"""``ScaleOut``: what a node runs beyond one process on SQLite (docs/deploy.md).

* with a ``postgresql://`` store: the sequencer election, fencing and the outbox
  (:mod:`trailseal.storage.postgres.coordination`) behind a
  :class:`~trailseal.sequencer.cluster.ClusterSequencer`, and the search indexer;
* with ``--ingest nats://...``: the JetStream bus (:mod:`trailseal.sequencer.jetstream`) — the
  ingest route answers ``202`` with ``"accepted"`` receipts once JetStream stored the events.

With neither, the plain single-process :class:`~trailseal.sequencer.runner.Sequencer` runs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from trailseal.core.errors import ConflictError
from trailseal.core.keys import Keyring
from trailseal.sequencer.runner import Sequencer, SequencerConfig
from trailseal.sequencer.types import Prepared
from trailseal.server.settings import Settings
from trailseal.storage import Store
from trailseal.storage.proofs import receipt_for

_log = logging.getLogger("trailseal.server")


def is_postgres(url: str) -> bool:
    """True for a PostgreSQL store URL."""
    return url.startswith(("postgresql://", "postgres://"))


class ScaleOut:
    """Election, outbox and bus of one node, built from :class:`Settings`."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.node = f"{socket.gethostname()}:{settings.port}:{os.getpid()}"
        self.coordinator: Any = None
        self.bus: Any = None
        self._known_logs: set[str] = set()
        if is_postgres(settings.store):
            from trailseal.storage.postgres import PostgresStore
            from trailseal.storage.postgres.coordination import PgCoordinator

            assert isinstance(store, PostgresStore)
            self.coordinator = PgCoordinator(store, self.node)
        if settings.ingest:
            from trailseal.sequencer.jetstream import JetStreamBus

            self.bus = JetStreamBus(
                settings.ingest, settings.nats_stream, replicas=settings.nats_replicas
            )
        self.clustered = self.coordinator is not None or self.bus is not None

    def sequencer(
        self,
        store: Store,
        keyring_for: Callable[[str], Keyring],
        origin_for: Callable[[str], str],
        clock: Callable[[], str],
        config: SequencerConfig,
    ) -> Sequencer:
        """The node's sequencer: plain, or elected per log when clustered."""
        if not self.clustered:
            return Sequencer(store, keyring_for, origin_for, clock, config)
        from trailseal.sequencer.cluster import ClusterSequencer, LocalLeases

        on_idle = None
        if self.coordinator is not None:
            index = self.coordinator.store.index_search

            def on_idle(log: str) -> None:
                index(log, 2000)

        made = ClusterSequencer(
            store, keyring_for, origin_for, clock, config,
            leases=self.coordinator or LocalLeases(),
            outbox=self.coordinator,
            role=self.settings.role,
            interval=self.settings.election_interval_ms / 1000.0,
            wait_timeout=self.settings.forward_timeout_seconds,
            on_idle=on_idle,
        )
        if self.bus is not None:
            self.bus.sequencer = made
            made.hooks.append(self.bus)
        return made

    def start(self, sequencer: Sequencer) -> None:
        """Connect the bus, then start electing (the default log first exists, so a node
        that starts alone is its sequencer when it reports ready)."""
        if self.bus is not None:
            self.bus.start()
        start = getattr(sequencer, "start", None)
        if start is not None:
            log = self.settings.default_log
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.store.ensure_log(log, self.settings.origin(log), now)
            start()

    def close(self) -> None:
        """Close the bus (after the sequencer drained) and this process's lease session (held
        for key generation; with the sequencer in the writer process nothing else closes it)."""
        if self.bus is not None:
            self.bus.close()
        if self.coordinator is not None:
            self.coordinator.close()

    def key_guard(self, log: str) -> contextlib.AbstractContextManager[Any]:
        """Held while loading or generating ``log``'s keyring: one node generates, others read."""
        if self.coordinator is None:
            return contextlib.nullcontext()
        guard: contextlib.AbstractContextManager[Any] = self.coordinator.exclusive("keys:" + log)
        return guard

    # -- health ------------------------------------------------------------------------------
    def readiness(self, sequencer: Sequencer) -> str | None:
        """Why this node should not receive traffic, or ``None``."""
        if self.bus is not None and not self.bus.connected:
            return f"bus: not connected to {self.settings.ingest}"
        # The outbox this process's sequencer listens on (a writer process reports its own
        # through ``coordinator_error``).
        outbox = getattr(sequencer, "outbox", None)
        if outbox is not None and not outbox.listening:
            return "cluster: outbox listener is not connected to PostgreSQL"
        error = getattr(sequencer, "coordinator_error", None)
        if error:
            return f"cluster: {error}"
        return None

    def status(self, sequencer: Sequencer) -> dict[str, Any]:
        """Role and led logs, for ``/readyz``."""
        if not self.clustered:
            return {}
        out: dict[str, Any] = {"node": self.node, "role": self.settings.role,
                               "leads": list(getattr(sequencer, "leading", []))}
        if self.bus is not None:
            out["ingest"] = "jetstream"
        return out

    # -- accepted mode -----------------------------------------------------------------------
    async def accept(self, log: str, items: Sequence[Prepared], origin: str, now: str) -> list[dict[str, Any]]:
        """Publish ``items`` to JetStream; ``accepted`` receipts (already-sequenced retries get
        their sequenced receipt, marked duplicate). A reused id with other content is a conflict.
        """
        seen: dict[str, bytes] = {}
        for item in items:
            previous = seen.setdefault(item.event.id, item.content_hash)
            if previous != item.content_hash:
                raise ConflictError(
                    f"event {item.event.id}: id sent twice with different content",
                    event_id=item.event.id,
                )
        stored = await asyncio.to_thread(self.store.lookup_ids, log, list(seen))
        answers: list[dict[str, Any]] = []
        fresh: list[Prepared] = []
        for item in items:
            hit = stored.get(item.event.id)
            if hit is None:
                fresh.append(item)
                answers.append({
                    "id": item.event.id, "log": log, "status": "accepted",
                    "leaf_hash": base64.b64encode(item.leaf_hash).decode(),
                })
                continue
            leaf_index, content_hash = hit
            if content_hash != item.content_hash:
                raise ConflictError(
                    f"event {item.event.id}: id already used for different content (leaf {leaf_index})",
                    event_id=item.event.id,
                )
            receipt = await asyncio.to_thread(receipt_for, self.store, log, leaf_index, duplicate=True, proof=False)
            answers.append(receipt.to_json())
        if fresh:
            if log not in self._known_logs:
                await asyncio.to_thread(self.store.ensure_log, log, origin, now)
                self._known_logs.add(log)
            await self.bus.publish(log, fresh)
        return answers
