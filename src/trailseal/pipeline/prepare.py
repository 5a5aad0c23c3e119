"""Parse → validate → stamp server fields → canonicalize → hash.

This is the minimal pipeline every event passes before the sequencer; the ``pipeline`` issue adds
schema validation, redaction and enrichment as further stages in front of :func:`prepare`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from trailseal.core.canonical import canonicalize, check_depth
from trailseal.core.errors import FormatError, InvalidEvent, LimitExceeded
from trailseal.core.event import Event
from trailseal.core.hashing import leaf_hash
from trailseal.sequencer.types import Prepared

_SERVER_FIELDS = ("received_at", "log", "schema")


def content_hash(event: Event) -> bytes:
    """SHA-256 of the canonical producer content: the envelope without server-added fields.

    Two submissions with the same ``id`` are the same event when these hashes match (a retry);
    otherwise the second is a conflict.
    """
    body = event.to_dict()
    for name in _SERVER_FIELDS:
        body.pop(name, None)
    return hashlib.sha256(canonicalize(body)).digest()


def prepare(raw: Mapping[str, Any], *, log: str, received_at: str) -> Prepared:
    """Validate one producer event and build what the sequencer stores.

    Raises :class:`~trailseal.core.errors.InvalidEvent` naming the field at fault.
    """
    if not isinstance(raw, Mapping):
        raise InvalidEvent("", f"an event must be a JSON object, got {type(raw).__name__}")
    event = Event.from_dict(raw)
    producer_hash = content_hash(event)
    event = event.with_server_fields(received_at=received_at, log=log)
    body = canonicalize(event.to_dict())
    return Prepared(event=event, body=body, leaf_hash=leaf_hash(body), content_hash=producer_hash)


class BatchError(InvalidEvent):
    """One or more events of a request are invalid; ``errors`` lists each ``(index, error)``."""

    def __init__(self, errors: Sequence[tuple[int, InvalidEvent]]) -> None:
        self.errors = list(errors)
        first_index, first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(first.field, f"event {first_index}: {first.detail}{more}")
        self.index = first_index


def prepare_all(
    raws: Sequence[Any],
    *,
    log: str,
    received_at: str,
    max_depth: int,
    max_event_bytes: int,
    sizes: Sequence[int] | None = None,
) -> list[Prepared]:
    """Prepare a whole request; all-or-nothing: any invalid event fails the request.

    A size breach raises :class:`LimitExceeded` at once; validation errors are collected (up to
    100) and raised together as :class:`BatchError`.
    """
    prepared: list[Prepared] = []
    errors: list[tuple[int, InvalidEvent]] = []
    for position, raw in enumerate(raws):
        try:
            if sizes is not None and sizes[position] > max_event_bytes:
                raise LimitExceeded(
                    "max_event_bytes",
                    f"event {position} is {sizes[position]} bytes, limit {max_event_bytes}",
                )
            check_depth(raw, max_depth)
            item = prepare(raw, log=log, received_at=received_at)
            if len(item.body) > max_event_bytes:
                raise LimitExceeded(
                    "max_event_bytes",
                    f"event {position} is {len(item.body)} bytes, limit {max_event_bytes}",
                )
            prepared.append(item)
        except InvalidEvent as exc:
            errors.append((position, exc))
            if len(errors) >= 100:
                break
        except FormatError as exc:
            errors.append((position, InvalidEvent("", str(exc))))
            if len(errors) >= 100:
                break
    if errors:
        raise BatchError(errors)
    return prepared
