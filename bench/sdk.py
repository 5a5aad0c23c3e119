"""SDK benchmarks (the `sdk` issue). Run: `.venv/bin/python bench/sdk.py [--quick]`.

(a) Cost of ``AuditClient.emit()`` on the caller's thread, per call (p50/p99/max), while the
    background threads spool (SQLite, synchronous=FULL) and deliver: paced at 2,000 emits/s (an
    application emitting as part of its work) and flat out (a tight loop, where the background
    threads compete for the GIL with the caller). Baseline: ``queue.Queue.put`` of a prebuilt
    dict with a consumer thread draining it, measured the same ways in this run. A second line
    measures ``emit`` with the background threads idle (its item goes to a plain deque): what is
    ``emit``'s own cost, without GIL contention from the SDK's threads.
(b) SDK ceiling: events/s from emit to acknowledged through the full engine (SQLite spool with
    fsync, batching, receipts) to a transport that answers at once — what one producer process can
    push when the server is not the bottleneck.
(c) End to end against a real ``trailseal serve`` subprocess: delivered events/s from one producer
    process (emit → spool → HTTP → fsync'd receipts) with ``max_in_flight`` 1 (the default: arrival
    in producer order), 2 and 4, vs a raw ``httpx`` client posting the same events pre-serialized in
    the same batch size, one request at a time (the order-preserving upper bound for one
    producer) and as many requests at a time.

The load average is printed before and after: the figures mean little on a busy machine.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

import httpx  # noqa: E402
import orjson  # noqa: E402
from tests.integration.conftest import ServerProcess  # noqa: E402

from trailseal.sdk import AuditClient, audit_context  # noqa: E402


class NullTransport:
    """Answers every batch at once with minimal receipts (the server is not measured)."""

    def send(self, log: str, event_ids: Any, bodies: Any, *, proofs: bool) -> list[dict[str, Any]]:
        return [{"id": event_id} for event_id in event_ids]

    def consistency(self, log: str, first: int, second: int) -> list[bytes]:
        return []

    def close(self) -> None:
        pass


def emit_kwargs(n: int) -> dict[str, Any]:
    return {
        "action": "invoice.approve",
        "resource": f"invoice:inv-{n}",
        "outcome": "success",
        "metadata": {"amount": 120, "currency": "EUR"},
    }


def percentiles(samples: list[int]) -> tuple[float, float, float]:
    samples.sort()
    return (
        samples[len(samples) // 2] / 1000,
        samples[int(len(samples) * 0.99)] / 1000,
        samples[-1] / 1000,
    )


def timed_calls(count: int, call: Any, pace: float) -> list[int]:
    """Per-call ns of ``call(n)``; with ``pace`` > 0, one call every ``pace`` seconds."""
    samples = []
    next_at = time.perf_counter()
    for n in range(count):
        if pace:
            next_at += pace
            while time.perf_counter() < next_at:
                time.sleep(max(0.0, next_at - time.perf_counter() - 0.0002))
        started = time.perf_counter_ns()
        call(n)
        samples.append(time.perf_counter_ns() - started)
    return samples


def bench_emit_alone(count: int, pace: float) -> tuple[float, float, float]:
    """(p50, p99, max) µs of emit with the background threads idle: emit builds the event, its
    item goes to a plain deque. What is left of the SDK's tail without the GIL contention."""
    client = AuditClient(transport=NullTransport(), max_queue=count * 2)
    held: collections.deque[Any] = collections.deque()
    client._engine.put = held.append  # type: ignore[method-assign,assignment]
    with audit_context(actor="alice@example.com", request_id="req-1"):
        for n in range(1000):  # warm-up
            client.emit(**emit_kwargs(n))
        calls = [emit_kwargs(n) for n in range(count)]
        samples = timed_calls(count, lambda n: client.emit(**calls[n]), pace)
    client.close(1)
    return percentiles(samples)


def bench_emit(
    count: int, tmp: Path, pace: float
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """((p50, p99, max) µs of emit, the same of queue.put)."""
    client = AuditClient(
        transport=NullTransport(),
        spool_path=tmp / f"emit-{pace}.spool",
        batch_size=1000,
        max_queue=count * 2,
    )
    with audit_context(actor="alice@example.com", request_id="req-1"):
        for n in range(1000):  # warm-up
            client.emit(**emit_kwargs(n))
        calls = [emit_kwargs(n) for n in range(count)]
        samples = timed_calls(count, lambda n: client.emit(**calls[n]), pace)
    client.close(60)
    sdk = percentiles(samples)

    box: queue.Queue[Any] = queue.Queue()

    def drain() -> None:
        while box.get() is not None:
            pass

    consumer = threading.Thread(target=drain)
    consumer.start()
    event = {"actor": {"id": "alice@example.com"}, **emit_kwargs(0)}
    samples = timed_calls(count, lambda n: box.put(event), pace)
    box.put(None)
    consumer.join()
    return sdk, percentiles(samples)


def bench_ceiling(count: int, tmp: Path) -> float:
    client = AuditClient(
        transport=NullTransport(),
        spool_path=tmp / "ceiling.spool",
        batch_size=1000,
        max_queue=count * 2,
    )
    started = time.perf_counter()
    with audit_context(actor="alice@example.com"):
        for n in range(count):
            client.emit(**emit_kwargs(n))
    left = client.flush(300)
    elapsed = time.perf_counter() - started
    client.close(10)
    assert left == 0
    return count / elapsed


def bench_end_to_end(count: int, batch: int, tmp: Path, in_flight: int) -> float:
    """SDK delivered events/s against a real server."""
    server = ServerProcess(tmp / f"sdk-data-{in_flight}").start()
    try:
        client = AuditClient(
            server.url,
            spool_path=tmp / f"e2e-{in_flight}.spool",
            batch_size=batch,
            max_queue=count * 2,
            timeout=60,
            max_in_flight=in_flight,
        )
        started = time.perf_counter()
        with audit_context(actor="alice@example.com"):
            for n in range(count):
                client.emit(**emit_kwargs(n))
        left = client.flush(600)
        sdk_rate = count / (time.perf_counter() - started)
        client.close(10)
        assert left == 0
    finally:
        server.stop()
    return sdk_rate


def bench_raw(count: int, batch: int, tmp: Path, concurrency: int) -> float:
    """Raw httpx events/s: pre-serialized batches, ``concurrency`` requests at a time."""
    server = ServerProcess(tmp / f"raw-data-{concurrency}").start()
    try:
        now = "2026-11-28T10:15:30.123456Z"
        events = [
            {
                "time": now,
                "actor": {"id": "alice@example.com"},
                "producer": {"id": "raw", "seq": n},
                **{k: v for k, v in emit_kwargs(n).items() if k != "resource"},
                "resource": {"type": "invoice", "id": f"inv-{n}"},
            }
            for n in range(count)
        ]
        bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, count, batch)]
        todo = iter(bodies)
        lock = threading.Lock()

        def post_all(http: httpx.Client) -> None:
            while True:
                with lock:
                    body = next(todo, None)
                if body is None:
                    return
                http.post(
                    "/v1/events", content=body, headers={"content-type": "application/json"}
                ).raise_for_status()

        with httpx.Client(base_url=server.url, timeout=60) as http:
            started = time.perf_counter()
            posters = [threading.Thread(target=post_all, args=(http,)) for _ in range(concurrency)]
            for poster in posters:
                poster.start()
            for poster in posters:
                poster.join()
            raw_rate = count / (time.perf_counter() - started)
    finally:
        server.stop()
    return raw_rate


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    emits, ceiling, e2e = (20_000, 20_000, 5_000) if args.quick else (100_000, 100_000, 30_000)
    print(
        f"machine: {platform.machine()}, {platform.processor() or '?'}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; {load()}"
    )
    with tempfile.TemporaryDirectory(prefix="ts-bench-sdk-") as name:
        tmp = Path(name)
        for label, pace, calls in (
            ("paced, 2,000/s", 1 / 2000, emits // 5),
            ("flat out", 0.0, emits),
        ):
            sdk, base = bench_emit(calls, tmp, pace)
            alone = bench_emit_alone(calls, pace)
            print(
                f"(a) emit() on the caller's thread, {label}, {calls:,} calls: p50 {sdk[0]:.1f} µs, "
                f"p99 {sdk[1]:.1f} µs, max {sdk[2]:.0f} µs (target p99 < 50 µs)"
            )
            print(
                f"    the same with the background threads idle: p50 {alone[0]:.1f} µs, "
                f"p99 {alone[1]:.1f} µs, max {alone[2]:.0f} µs"
            )
            print(
                f"    baseline queue.Queue.put: p50 {base[0]:.1f} µs, p99 {base[1]:.1f} µs; "
                f"ratio p50 {sdk[0] / base[0]:.1f}x, p99 {sdk[1] / base[1]:.1f}x"
            )
        rate = bench_ceiling(ceiling, tmp)
        print(
            f"(b) SDK ceiling (durable spool, instant transport): {rate:,.0f} events/s (target >= 10,000/s)"
        )
        for in_flight in (1, 2, 4):
            sdk_rate = bench_end_to_end(e2e, 1000, tmp, in_flight)
            raw_rate = bench_raw(e2e, 1000, tmp, in_flight)
            print(
                f"(c) one producer process to a real server, {e2e:,} events, max_in_flight={in_flight}: "
                f"SDK {sdk_rate:,.0f} events/s (target >= 10,000/s); raw httpx, same batches of 1000, "
                f"{in_flight} at a time: {raw_rate:,.0f} events/s; ratio {sdk_rate / raw_rate:.2f}"
            )
    print(load())


if __name__ == "__main__":
    main()
