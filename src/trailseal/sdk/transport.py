"""Transports: how a batch of spooled events reaches the service.

A :class:`Transport` sends one batch for one log and returns the receipts (JSON, one per event,
in order), or raises :class:`~trailseal.sdk.errors.TransportError` (retry later) /
:class:`~trailseal.sdk.errors.RejectedBatch` (refused for good). :class:`HTTPTransport` speaks
the HTTP API (``POST /v1/events``); :class:`MemoryTransport` keeps what it is sent, for tests.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx
import orjson

from trailseal.sdk.errors import RejectedBatch, TransportError
from trailseal.sdk.retry import parse_retry_after

__all__ = ["HTTPTransport", "MemoryTransport", "Transport"]

_RETRYABLE = frozenset({408, 425, 429})
# Not the batch's fault: a wrong key, a missing permission or log is fixed by configuration, so
# the events wait in the spool (and the client logs the problem) instead of being dead-lettered.
_BLOCKED = frozenset({401, 403, 404})


class Transport(Protocol):
    """Delivers batches; see the module docstring."""

    def send(self, log: str, event_ids: Sequence[str], bodies: Sequence[bytes], *, proofs: bool) -> list[dict[str, Any]]:
        """POST ``bodies`` (JSON objects) to ``log`` ("" = the default log); return the receipts."""

    def consistency(self, log: str, first: int, second: int) -> list[bytes]:
        """The RFC 9162 consistency proof between two tree sizes of ``log``."""

    def close(self) -> None:
        """Release connections."""


class HTTPTransport:
    """The HTTP API over one keep-alive ``httpx.Client``; ``api_key`` is sent as a Bearer token."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        headers = {"content-type": "application/json", "user-agent": "trailseal-sdk"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.url = url.rstrip("/")
        self._owned = client is None
        self._client = client or httpx.Client(base_url=self.url, timeout=timeout)
        self._headers = headers

    def send(self, log: str, event_ids: Sequence[str], bodies: Sequence[bytes], *, proofs: bool) -> list[dict[str, Any]]:
        """One ``POST /v1/events``; see :class:`Transport`."""
        params = {"log": log} if log else {}
        if proofs:
            params["proofs"] = "true"
        body = b"[" + b",".join(bodies) + b"]"
        try:
            response = self._client.post(f"{self.url}/v1/events", content=body, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise TransportError(f"transport: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status == 200:
            try:
                receipts: list[dict[str, Any]] = orjson.loads(response.content)["receipts"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise TransportError(f"transport: unreadable answer: {exc}", status=status) from exc
            if len(receipts) != len(bodies):
                raise TransportError(f"transport: {len(receipts)} receipts for {len(bodies)} events", status=status)
            return receipts
        detail, problem = _problem(response)
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if status in _RETRYABLE or status >= 500 or status in _BLOCKED:
            raise TransportError(f"server answered {status}: {detail}", status=status, retry_after=retry_after)
        rejected: dict[int, str] = {}
        if status == 422:
            for error in problem.get("errors") or ():
                index = error.get("index", 0 if len(bodies) == 1 else None)
                if isinstance(index, int) and 0 <= index < len(bodies):
                    rejected[index] = f"{error.get('field', '')}: {error.get('detail', '')}".strip(": ")
        elif status == 409 and problem.get("event_id") in event_ids:
            rejected[list(event_ids).index(problem["event_id"])] = detail
        elif len(bodies) == 1:
            rejected[0] = detail
        raise RejectedBatch(f"server answered {status}: {detail}", status=status, rejected=rejected)

    def consistency(self, log: str, first: int, second: int) -> list[bytes]:
        """``GET /v1/logs/{log}/proofs/consistency``."""
        try:
            response = self._client.get(
                f"{self.url}/v1/logs/{log}/proofs/consistency", params={"first": first, "second": second},
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            raise TransportError(f"transport: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise TransportError(f"consistency proof: server answered {response.status_code}", status=response.status_code)
        return [base64.b64decode(h) for h in response.json()["hashes"]]

    def close(self) -> None:
        """Close the HTTP client (if this transport created it)."""
        if self._owned:
            self._client.close()


def _problem(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    try:
        problem = response.json()
    except ValueError:
        return response.text[:500], {}
    if not isinstance(problem, dict):
        return str(problem)[:500], {}
    return str(problem.get("detail") or problem.get("title") or problem), problem


class MemoryTransport:
    """Keeps every delivered event (parsed) in ``events``; answers with minimal receipts.

    ``fail`` — a callable given the batch size and returning an exception to raise, or ``None`` —
    lets tests script outages. Repeated ids answer ``"duplicate": true`` like the server.
    """

    def __init__(self, fail: Callable[[int], Exception | None] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.batches: list[tuple[str, int]] = []
        self.fail = fail
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()

    def send(self, log: str, event_ids: Sequence[str], bodies: Sequence[bytes], *, proofs: bool) -> list[dict[str, Any]]:
        """Record the batch; see :class:`Transport`."""
        if self.fail is not None and (error := self.fail(len(bodies))) is not None:
            raise error
        receipts = []
        with self._lock:
            self.batches.append((log, len(bodies)))
            for body in bodies:
                event = orjson.loads(body)
                duplicate = event["id"] in self._index
                if not duplicate:
                    self._index[event["id"]] = len(self.events)
                    self.events.append(event)
                receipt: dict[str, Any] = {"id": event["id"], "log": log or "default", "status": "sequenced",
                                           "leaf_index": self._index[event["id"]]}
                if duplicate:
                    receipt["duplicate"] = True
                receipts.append(receipt)
        return receipts

    def consistency(self, log: str, first: int, second: int) -> list[bytes]:
        """Not available in memory."""
        raise TransportError("memory transport: no proofs", retryable=False)

    def close(self) -> None:
        """Nothing to release."""
