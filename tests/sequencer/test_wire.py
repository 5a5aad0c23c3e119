"""The inter-node encoding of prepared events round-trips exactly and rejects damage."""

from __future__ import annotations

import pytest

from tests.factories import make_event
from trailseal.core.errors import FormatError
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.wire import decode_event, decode_request, encode_event, encode_request


def test_request_round_trip() -> None:
    items = [prepare(make_event(), log="default", received_at="2026-11-28T10:15:31.000000Z") for _ in range(5)]
    back = decode_request(encode_request(items))
    assert back == items
    assert decode_event(encode_event(items[0])) == items[0]
    assert decode_request(b"") == []


@pytest.mark.parametrize("cut", [1, 10, 40, -1])
def test_truncated_payloads_are_refused(cut: int) -> None:
    payload = encode_request([prepare(make_event(), log="default", received_at="2026-11-28T10:15:31.000000Z")])
    with pytest.raises(FormatError):
        decode_request(payload[:cut])


def test_garbage_body_is_refused() -> None:
    with pytest.raises(FormatError):
        decode_event(b"\x00" * 32 + b"{not json")
    with pytest.raises(FormatError):
        decode_event(b"short")
