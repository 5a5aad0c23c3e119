"""Pure-ASGI guard: bounded in-flight requests, 503 with ``Retry-After`` beyond the bound."""

from __future__ import annotations

from typing import Any

import orjson

Scope = dict[str, Any]
Message = dict[str, Any]


class InflightLimit:
    """Answers 503 + ``Retry-After`` when more than ``limit`` HTTP requests are in flight.

    Health endpoints are exempt so orchestrators can still see an overloaded node.
    """

    def __init__(self, app: Any, *, limit: int, retry_after: int = 1) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = retry_after
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in ("/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            body = orjson.dumps(
                {
                    "type": "https://trailseal.dev/problems/overloaded",
                    "title": "service unavailable",
                    "status": 503,
                    "detail": f"server: {self.inflight} requests in flight, limit {self.limit}",
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"retry-after", str(self.retry_after).encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
