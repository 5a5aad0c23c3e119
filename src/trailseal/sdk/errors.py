"""Errors the producer SDK raises, under the one ``TrailsealError`` tree of ``trailseal.core.errors``.

::

    TrailsealError
     ├── InvalidEvent(ValueError)          (core) emit() got an envelope that cannot be valid
     ├── VerificationError                 (core) a receipt, checkpoint or consistency check failed
     └── SDKError
          ├── SpoolFull                    the spool is at capacity (policy "raise", or "block" timed out)
          ├── SpoolLocked                  another process holds the spool file
          ├── ClientClosed(RuntimeError)   emit() after close()
          └── TransportError               one delivery attempt failed; .retryable, .status, .retry_after
               └── RejectedBatch           the server refused part of a batch (4xx); .rejected

The client itself never raises ``TransportError`` to the caller: it retries, spools or
dead-letters. Transports raise it so the client can decide.
"""

from __future__ import annotations

from trailseal.core.errors import TrailsealError

__all__ = ["ClientClosed", "RejectedBatch", "SDKError", "SpoolFull", "SpoolLocked", "TransportError"]


class SDKError(TrailsealError):
    """Base of the producer SDK's own errors."""


class SpoolFull(SDKError):
    """The spool holds ``capacity`` events and cannot take more; nothing was dropped."""

    def __init__(self, message: str, *, capacity: int) -> None:
        self.capacity = capacity
        super().__init__(message)


class SpoolLocked(SDKError):
    """The spool file is in use by another client (another process, or an unclosed client)."""


class ClientClosed(SDKError, RuntimeError):
    """The client was closed; it accepts no more events."""


class TransportError(SDKError):
    """One delivery attempt failed.

    ``retryable`` is true for network errors, 408, 425, 429 and 5xx; ``retry_after`` is the
    server's ``Retry-After`` in seconds when it sent one; ``status`` is the HTTP status (0 when no
    answer arrived).
    """

    def __init__(
        self, message: str, *, status: int = 0, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class RejectedBatch(TransportError):
    """The server refused events of a batch for good. ``rejected`` maps batch positions to reasons;
    an empty map means "some event in this batch", to be found by splitting the batch."""

    def __init__(self, message: str, *, status: int, rejected: dict[int, str] | None = None) -> None:
        self.rejected = dict(rejected or {})
        super().__init__(message, status=status, retryable=False)
