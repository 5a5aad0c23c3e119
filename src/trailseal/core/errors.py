"""One exception tree for trailseal.

::

    TrailsealError
     ├── InvalidEvent(ValueError)          an event envelope fails validation; .field names it
     ├── CanonicalizationError(ValueError) a value has no RFC 8785 form (NaN, Infinity, non-str key, ...)
     ├── FormatError(ValueError)           a note, checkpoint, key string or proof is malformed
     ├── VerificationError                 a proof, signature, checkpoint or log check failed
     │    ├── InclusionError
     │    └── ConsistencyError
     ├── ConflictError                     same idempotency key, different content
     ├── NotFoundError(LookupError)        unknown event, log, leaf index, tree size
     ├── OverloadedError                   a bounded queue is full; .retry_after seconds
     ├── LimitExceeded(ValueError)         a request exceeds a configured limit; .limit names it
     └── AccessError(PermissionError)      access control refused a request
          ├── AuthenticationError          no, unknown, revoked or expired key or token
          ├── PermissionDenied             the principal's roles do not grant the permission
          └── RateLimited                  the key's token bucket is empty; .retry_after seconds

Messages are lowercase ``what: detail`` with expected and actual values; exceptions carry data.
"""

from __future__ import annotations


class TrailsealError(Exception):
    """Base of every error trailseal raises on purpose."""


class InvalidEvent(TrailsealError, ValueError):
    """An event envelope failed validation. ``field`` is a dotted path (``actor.id``) or ``""``."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}" if field else message)


class CanonicalizationError(TrailsealError, ValueError):
    """A value cannot be expressed as RFC 8785 canonical JSON."""


class FormatError(TrailsealError, ValueError):
    """A note, checkpoint, verifier key, tile path or proof is malformed."""


class VerificationError(TrailsealError):
    """A proof, signature, checkpoint or log check failed."""


class InclusionError(VerificationError):
    """An inclusion proof does not lead to the expected root."""


class ConsistencyError(VerificationError):
    """A consistency proof does not connect the two roots."""


class ConflictError(TrailsealError):
    """An idempotency key was reused with different content."""

    def __init__(self, message: str, *, event_id: str = "") -> None:
        self.event_id = event_id
        super().__init__(message)


class NotFoundError(TrailsealError, LookupError):
    """An event, log, leaf index or tree size does not exist."""


class OverloadedError(TrailsealError):
    """A bounded queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class LimitExceeded(TrailsealError, ValueError):
    """A request exceeded a configured limit; ``limit`` names it (e.g. ``max_event_bytes``)."""

    def __init__(self, limit: str, message: str, *, status: int = 413) -> None:
        self.limit = limit
        self.status = status
        super().__init__(f"{limit}: {message}")


class AccessError(TrailsealError, PermissionError):
    """Access control refused a request."""


class AuthenticationError(AccessError):
    """No credentials, or a key or token that is unknown, malformed, revoked, expired or forged."""


class PermissionDenied(AccessError):
    """The caller is known but none of its grants allows ``permission`` on ``tenant``."""

    def __init__(self, message: str, *, permission: str = "", tenant: str = "") -> None:
        self.permission = permission
        self.tenant = tenant
        super().__init__(message)


class RateLimited(AccessError):
    """The caller's token bucket is empty; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)
