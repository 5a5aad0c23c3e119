"""HTTPTransport: status codes to retry / dead-letter decisions, API key, Retry-After."""

from __future__ import annotations

import email.utils
import time

import httpx
import orjson
import pytest

from trailseal.sdk import HTTPTransport, RejectedBatch, RetryPolicy, TransportError
from trailseal.sdk.retry import parse_retry_after


def transport(handler: httpx.MockTransport, **options: str) -> HTTPTransport:
    return HTTPTransport("http://audit.test", client=httpx.Client(transport=handler), **options)


def test_posts_a_json_array_with_log_proofs_and_bearer_key() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        events = orjson.loads(request.content)
        return httpx.Response(200, json={"receipts": [{"id": e["id"]} for e in events]})

    sender = transport(httpx.MockTransport(handle), api_key="k-123")
    receipts = sender.send("acme", ["a", "b"], [b'{"id":"a"}', b'{"id":"b"}'], proofs=True)
    assert [r["id"] for r in receipts] == ["a", "b"]
    request = seen[0]
    assert request.url.path == "/v1/events" and request.url.params["log"] == "acme"
    assert request.url.params["proofs"] == "true"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["content-type"] == "application/json"
    sender.send("", ["a"], [b'{"id":"a"}'], proofs=False)
    assert "log" not in seen[1].url.params and "authorization" not in transport(httpx.MockTransport(handle))._headers


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 401, 403, 404])
def test_retryable_statuses(status: int) -> None:
    sender = transport(httpx.MockTransport(lambda r: httpx.Response(status, headers={"retry-after": "3"}, json={"detail": "busy"})))
    with pytest.raises(TransportError) as info:
        sender.send("", ["a"], [b'{"id":"a"}'], proofs=False)
    assert not isinstance(info.value, RejectedBatch)
    assert info.value.retryable and info.value.status == status and info.value.retry_after == 3.0


def test_network_error_is_retryable() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(TransportError) as info:
        transport(httpx.MockTransport(broken)).send("", ["a"], [b"{}"], proofs=False)
    assert info.value.retryable and info.value.status == 0


def test_422_names_the_refused_events() -> None:
    problem = {"detail": "invalid", "errors": [{"index": 1, "field": "actor.id", "detail": "required field is missing"}]}
    sender = transport(httpx.MockTransport(lambda r: httpx.Response(422, json=problem)))
    with pytest.raises(RejectedBatch) as info:
        sender.send("", ["a", "b"], [b"{}", b"{}"], proofs=False)
    assert info.value.rejected == {1: "actor.id: required field is missing"} and not info.value.retryable


def test_409_names_the_conflicting_id_and_400_is_unattributed() -> None:
    conflict = transport(httpx.MockTransport(lambda r: httpx.Response(409, json={"detail": "id reused", "event_id": "b"})))
    with pytest.raises(RejectedBatch) as info:
        conflict.send("", ["a", "b"], [b"{}", b"{}"], proofs=False)
    assert info.value.rejected == {1: "id reused"}
    bad = transport(httpx.MockTransport(lambda r: httpx.Response(400, json={"detail": "malformed"})))
    with pytest.raises(RejectedBatch) as info:
        bad.send("", ["a", "b"], [b"{}", b"{}"], proofs=False)
    assert info.value.rejected == {}


def test_wrong_receipt_count_is_retryable() -> None:
    sender = transport(httpx.MockTransport(lambda r: httpx.Response(200, json={"receipts": []})))
    with pytest.raises(TransportError, match="0 receipts for 1 events"):
        sender.send("", ["a"], [b"{}"], proofs=False)


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (parse_retry_after(later) or 0) <= 31


def test_backoff_grows_caps_and_respects_retry_after() -> None:
    policy = RetryPolicy(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.5)
    for failures, base in ((1, 0.1), (2, 0.2), (3, 0.4), (10, 1.0)):
        for _ in range(50):
            assert base * 0.5 <= policy.delay(failures) <= base
    assert policy.delay(1, retry_after=5.0) == 5.0
    with pytest.raises(ValueError):
        RetryPolicy(initial=0)
