"""Helpers for the SDK integration tests: read a log back from a real server; a producer process."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from trailseal.core.tiles import TILE_WIDTH, entries_path
from trailseal.verify.monitor import split_bundle


def server_events(url: str, log: str = "default") -> list[dict[str, Any]]:
    """Every stored envelope of ``log``, in leaf order, read through the public tile API."""
    response = httpx.get(f"{url}/v1/logs/{log}/checkpoint", timeout=10)
    if response.status_code == 404:
        return []
    size = int(response.text.split("\n")[1])
    events: list[dict[str, Any]] = []
    for bundle in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        width = min(TILE_WIDTH, size - bundle * TILE_WIDTH)
        got = httpx.get(f"{url}/v1/logs/{log}/{entries_path(bundle, width)}", timeout=10)
        got.raise_for_status()
        events += [orjson.loads(entry) for entry in split_bundle(got.content)]
    return events


def producer_main(argv: list[str]) -> None:
    """``python -m tests.integration.sdk_kit MODE URL SPOOL COUNT``.

    ``spool``: emit COUNT events (the server may be down), print ``SPOOLED <n>`` once all are in
    the spool, then wait to be killed. ``stream``: emit COUNT events at a steady pace, printing
    ``SPOOLED <n>`` as the spool takes them. ``resume``: open the spool, deliver what it holds,
    print the stats as JSON and exit.
    """
    from trailseal.sdk import AuditClient, RetryPolicy, audit_context

    mode, url, spool, count = argv[0], argv[1], Path(argv[2]), int(argv[3])
    client = AuditClient(url, spool_path=spool, retry=RetryPolicy(initial=0.05, maximum=0.3), linger=0.01,
                         batch_size=100, timeout=5)
    if mode == "resume":
        left = client.flush(60)
        stats = client.stats
        client.close(1)
        print(json.dumps({"left": left, "sent": stats.sent, "producer": client.producer_id}), flush=True)
        return
    with audit_context(actor="producer-process", request_id="batch-job-1"):
        for n in range(count):
            client.emit(action="job.step", resource=f"step:{n}", metadata={"n": n})
            if mode == "stream":
                time.sleep(0.001)
                if n % 50 == 0:
                    print(f"SPOOLED {client.stats.spooled + client.stats.sent}", flush=True)
    while client.stats.queued:
        time.sleep(0.01)
    print(f"SPOOLED {client.stats.spooled} PRODUCER {client.producer_id}", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    producer_main(sys.argv[1:])
