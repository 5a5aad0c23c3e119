"""The process-wide default client, for integrations configured without an explicit one.

The middleware, the logging handler and the SQLAlchemy relay take ``client=``; when it is
``None`` they use the default client *at the moment they emit*, so tests can swap in an
``AuditRecorder`` (the ``audit_recorder`` pytest fixture does) without rebuilding the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Emitter", "emit", "get_default_client", "set_default_client"]


class Emitter(Protocol):
    """Anything with ``emit(event=None, **fields) -> event id``: ``AuditClient``, ``AuditRecorder``."""

    def emit(self, event: Any = None, **fields: Any) -> str:
        """Queue one event; see :meth:`trailseal.sdk.AuditClient.emit`."""


_default: Emitter | None = None


def set_default_client(client: Emitter | None) -> Emitter | None:
    """Make ``client`` the default (``None`` clears it); returns the previous default."""
    global _default
    previous, _default = _default, client
    return previous


def get_default_client() -> Emitter:
    """The default client; ``RuntimeError`` when none was set."""
    if _default is None:
        raise RuntimeError("trailseal: no default audit client; call trailseal.sdk.set_default_client(AuditClient(...))")
    return _default


def emit(event: Mapping[str, Any] | Any = None, **fields: Any) -> str:
    """``get_default_client().emit(event, **fields)``: one line from anywhere in the code."""
    return get_default_client().emit(event, **fields)


def resolve(client: Emitter | None) -> Emitter:
    """``client``, or the default client when it is ``None``."""
    return client if client is not None else get_default_client()
