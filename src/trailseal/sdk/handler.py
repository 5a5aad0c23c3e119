"""``AuditLogHandler``: log records that carry ``extra={"audit": {...}}`` become audit events.

::

    logging.getLogger("billing").addHandler(AuditLogHandler(client=audit))
    log.info("invoice approved", extra={"audit": {"action": "invoice.approve",
                                                  "resource": "invoice:inv-42"}})

The ``audit`` mapping holds ``emit`` keyword arguments; the actor and ids come from the audit
context as usual. The event's ``time`` is the record's; ``reason`` defaults to the formatted
message; ``metadata.log`` records the logger name and level. Records without ``audit`` are ignored,
so the handler can sit on the root logger. Failures go through ``Handler.handleError`` (logging's
own mechanism), never into the code that logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from trailseal.sdk.default import Emitter, resolve

__all__ = ["AuditLogHandler"]


class AuditLogHandler(logging.Handler):
    """See the module docstring. ``client`` defaults to the default client at emit time."""

    def __init__(self, client: Emitter | None = None, level: int = logging.NOTSET, *, key: str = "audit") -> None:
        super().__init__(level)
        self.client = client
        self.key = key

    def emit(self, record: logging.LogRecord) -> None:
        """Turn ``record`` into an audit event when it carries the ``audit`` extra."""
        audit = getattr(record, self.key, None)
        if not isinstance(audit, Mapping):
            return
        try:
            fields: dict[str, Any] = dict(audit)
            fields.setdefault("time", datetime.fromtimestamp(record.created, UTC))
            message = record.getMessage()
            if message:
                fields.setdefault("reason", message[:4096])
            metadata = dict(fields.get("metadata") or {})
            metadata.setdefault("log", {"logger": record.name, "level": record.levelname})
            fields["metadata"] = metadata
            if "outcome" not in fields and record.levelno >= logging.ERROR:
                fields["outcome"] = "failure"
            resolve(self.client).emit(**fields)
        except Exception:
            self.handleError(record)
