"""Self-audit: each search, read, export, bundle, verification request and admin action — and
each denied attempt — becomes one event in the ``_system`` log.

The event is an ordinary envelope (ARCHITECTURE.md §2), so ``_system`` is verified like any
other log::

    {"time": ..., "action": "trail.read.search", "outcome": "success" | "denied" | "failure",
     "actor": {"id": "ts_3f9a1c2b7d4e" | token subject | "anonymous",
               "type": "api_key" | "oidc" | "anonymous", "ip": ..., "user_agent": ...},
     "resource": {"type": "log", "id": "<tenant>[,<tenant>...]" | "*"},
     "request_id": <X-Request-ID if sent>,
     "source": {"service": "trailseal", "host": <server name>},
     "metadata": {"method", "path", "route", "query", "status"[, "detail"]}}

:class:`AuditRecorder` queues the event without waiting for its commit (the reader is not slowed
by an fsync); :meth:`AuditRecorder.flush` waits for everything queued so far. If the event cannot
even be queued (the sequencer is overloaded or stopped) ``record`` raises, and the server answers
503 instead of serving an unrecorded read.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trailseal.access.roles import SYSTEM_LOG

_log = logging.getLogger("trailseal.access")

#: Queues one ``_system`` event (an envelope dict); the future resolves once it is committed.
Submit = Callable[[dict[str, Any]], "concurrent.futures.Future[Any]"]

_MAX_QUERY = 2048


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """What self-audit needs to know about one request."""

    actor: str
    actor_type: str
    action: str
    tenants: tuple[str, ...]
    outcome: str  # success | failure | denied
    method: str
    path: str
    route: str
    query: str
    status: int
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    detail: str | None = None


def audit_event(record: AccessRecord, *, time: str, server_name: str) -> dict[str, Any]:
    """The ``_system`` envelope for ``record``."""
    actor: dict[str, Any] = {"id": record.actor[:256] or "anonymous", "type": record.actor_type}
    client = None
    if record.ip:
        try:
            actor["ip"] = str(ipaddress.ip_address(record.ip))
        except ValueError:
            client = record.ip[:256]  # e.g. a unix socket peer: kept, but not as actor.ip
    if record.user_agent:
        actor["user_agent"] = record.user_agent[:1024]
    metadata: dict[str, Any] = {
        "method": record.method,
        "path": record.path[:_MAX_QUERY],
        "route": record.route[:512],
        "query": record.query[:_MAX_QUERY],
        "status": record.status,
    }
    if record.detail:
        metadata["detail"] = record.detail[:1024]
    if client is not None:
        metadata["client"] = client
    event: dict[str, Any] = {
        "time": time,
        "actor": actor,
        "action": record.action,
        "resource": {"type": "log", "id": ",".join(record.tenants)[:256] or "*"},
        "outcome": record.outcome,
        "source": {"service": "trailseal", "host": server_name[:256]},
        "metadata": metadata,
    }
    if record.request_id:
        event["request_id"] = record.request_id[:256]
    return event


class AuditRecorder:
    """Queues ``_system`` events through ``submit`` and keeps track of the uncommitted ones."""

    log = SYSTEM_LOG

    def __init__(self, submit: Submit, *, clock: Callable[[], str], server_name: str) -> None:
        self.submit = submit
        self.clock = clock
        self.server_name = server_name
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self.recorded = 0
        self.failed = 0

    def record(self, record: AccessRecord) -> None:
        """Queue the event for ``record``; raises if it cannot be queued."""
        future = self.submit(audit_event(record, time=self.clock(), server_name=self.server_name))
        with self._lock:
            self._pending.add(future)
            self.recorded += 1
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
        if future.exception() is not None:
            self.failed += 1
            _log.error("self-audit event was not committed: %s", future.exception())

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every event queued so far is committed (or failed)."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending, timeout=timeout)
