"""trailseal producer SDK: emit audit events in one line, and never lose one.

::

    from trailseal.sdk import AuditClient, audit_context

    audit = AuditClient("http://127.0.0.1:8700", spool_path="audit.spool")
    with audit_context(actor="alice@example.com", request_id="req-7"):
        audit.emit(action="invoice.approve", resource="invoice:inv-42", outcome="success")
    audit.close()

Depends on :mod:`trailseal.core`, :mod:`trailseal.verify`'s building blocks and ``httpx`` only;
the SQLAlchemy integration (:mod:`trailseal.sdk.sqlalchemy`) needs the ``sqlalchemy`` extra and
the middleware uses ``opentelemetry-api`` when installed. See ``docs/sdk.md``.
"""

from trailseal.sdk.asgi import AuditMiddleware
from trailseal.sdk.client import AsyncAuditClient, AuditClient
from trailseal.sdk.context import (
    AuditContext,
    audit_context,
    bind_context,
    current_context,
    set_actor,
)
from trailseal.sdk.default import Emitter, emit, get_default_client, set_default_client
from trailseal.sdk.engine import ClientStats
from trailseal.sdk.errors import (
    ClientClosed,
    RejectedBatch,
    SDKError,
    SpoolFull,
    SpoolLocked,
    TransportError,
)
from trailseal.sdk.handler import AuditLogHandler
from trailseal.sdk.monitor import ReceiptMonitor
from trailseal.sdk.retry import RetryPolicy
from trailseal.sdk.spool import DeadLetter, MemorySpool, Spool, SQLiteSpool
from trailseal.sdk.testing import AuditRecorder
from trailseal.sdk.transport import HTTPTransport, MemoryTransport, Transport
from trailseal.sdk.wsgi import WSGIAuditMiddleware

__all__ = [
    "AsyncAuditClient",
    "AuditClient",
    "AuditContext",
    "AuditLogHandler",
    "AuditMiddleware",
    "AuditRecorder",
    "ClientClosed",
    "ClientStats",
    "DeadLetter",
    "Emitter",
    "HTTPTransport",
    "MemorySpool",
    "MemoryTransport",
    "ReceiptMonitor",
    "RejectedBatch",
    "RetryPolicy",
    "SDKError",
    "SQLiteSpool",
    "Spool",
    "SpoolFull",
    "SpoolLocked",
    "Transport",
    "TransportError",
    "WSGIAuditMiddleware",
    "audit_context",
    "bind_context",
    "current_context",
    "emit",
    "get_default_client",
    "set_actor",
    "set_default_client",
]
