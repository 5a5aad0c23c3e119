"""Prepared events on the wire between nodes: the outbox and the JetStream stream.

One record is ``content_hash (32 bytes) || body``; a request is records each prefixed with the
body length as a big-endian ``uint32``::

    request = *( uint32 body_length || content_hash[32] || body[body_length] )

``body`` is the RFC 8785 leaf input the API node built (id, ``received_at`` and ``log`` already
stamped), so the sequencer stores exactly what the producer was answered about; the leaf hash is
recomputed from it and the event is re-parsed for the query columns.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from trailseal.core.canonical import loads
from trailseal.core.errors import FormatError
from trailseal.core.event import Event
from trailseal.core.hashing import leaf_hash
from trailseal.sequencer.types import Item, Prepared

_LENGTH = struct.Struct(">I")
_HASH = 32


def encode_event(item: Prepared) -> bytes:
    """One record without the length prefix (a JetStream message)."""
    return item.content_hash + item.body


def decode_event(record: bytes) -> Prepared:
    """Inverse of :func:`encode_event`; raises :class:`FormatError` on a malformed record."""
    if len(record) <= _HASH:
        raise FormatError(f"wire: record is {len(record)} bytes, want more than {_HASH}")
    content_hash, body = record[:_HASH], record[_HASH:]
    try:
        event = Event.from_dict(loads(body))
    except ValueError as exc:
        raise FormatError(f"wire: event body does not parse: {exc}") from exc
    return Prepared(event=event, body=body, leaf_hash=leaf_hash(body), content_hash=content_hash)


def encode_request(items: Sequence[Item]) -> bytes:
    """A whole request (the outbox payload)."""
    out = bytearray()
    for item in items:
        out += _LENGTH.pack(len(item.body))
        out += item.content_hash
        out += item.body
    return bytes(out)


def decode_request(payload: bytes) -> list[Prepared]:
    """Inverse of :func:`encode_request`."""
    items: list[Prepared] = []
    at = 0
    while at < len(payload):
        if at + _LENGTH.size + _HASH > len(payload):
            raise FormatError(f"wire: truncated record header at byte {at}")
        (length,) = _LENGTH.unpack_from(payload, at)
        start = at + _LENGTH.size
        end = start + _HASH + length
        if end > len(payload):
            raise FormatError(f"wire: record at byte {at} wants {length} body bytes, payload ends")
        items.append(decode_event(payload[start:end]))
        at = end
    return items
