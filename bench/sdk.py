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

(d) ``--cold``: a steadier measure of what (a) paced is about. A call made now and then runs with
    cold caches, so it costs about what it touches. This runs ``emit`` (its background threads
    stopped) and the ``queue.Queue.put`` baseline (no consumer waiting) under valgrind's cache
    simulator (``callgrind --cache-sim=yes``: L1 32 KiB code + 48 KiB data, last level 4 MiB),
    evicting the caches before each call, and prints per call the instructions run and the cache
    lines that had to come from memory (code and data). Needs valgrind; takes a minute or two.
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import os
import platform
import queue
import shutil
import subprocess
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


_COLD_CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=4194304,16,64"]


def cold_child(target: str, count: int) -> None:
    """Under callgrind: ``count`` calls of ``target``, each after evicting the caches, each made
    through ``itertools.starmap`` so that ``--toggle-collect=starmap_next`` counts those calls and
    nothing else."""
    calls = [emit_kwargs(n) for n in range(count + 100)]
    client = AuditClient(transport=NullTransport(), max_queue=10 * count)
    engine = client._engine
    engine.close(5)  # stop the background threads: their work would be counted too
    engine._closed = engine._spooler_idle = False  # ... and let emit queue (in memory) again
    box: queue.Queue[Any] = queue.Queue()
    event = {"actor": {"id": "alice@example.com"}, **emit_kwargs(0)}

    def emit(n: int) -> object:
        return client.emit(**calls[n])

    def put(n: int) -> object:
        return box.put(event)

    call = emit if target == "emit" else put
    evictor = bytearray(16 << 20)
    with audit_context(actor="alice@example.com", request_id="req-1"):
        for n in range(100):  # warm-up (and the interpreter's specialization), not counted
            call(n)
        gc.disable()  # a collection now and then would be counted in one call
        for n in range(100, 100 + count):
            copy = bytes(evictor)  # touch 32 MiB: nothing of the last call stays cached
            del copy
            for _ in itertools.starmap(call, ((n,),)):
                pass
    engine._closed = True  # closed above already: nothing to deliver at exit


def bench_cold(count: int, tmp: Path) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        print("(d) --cold needs valgrind (callgrind and callgrind_annotate)")
        return
    found: dict[str, list[float]] = {}
    for target in ("emit", "queue"):
        out = tmp / f"callgrind.{target}"
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--cache-sim=yes",
                *_COLD_CACHES,
                "--toggle-collect=starmap_next",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--cold-child",
                target,
                "--cold",
                str(count),
            ],
            check=True,
            capture_output=True,
        )
        report = subprocess.run(
            [
                "callgrind_annotate",
                "--show=Ir,ILmr,DLmr,DLmw",
                "--show-percs=no",
                "--auto=no",
                str(out),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        totals = next(line for line in report.splitlines() if "PROGRAM TOTALS" in line)
        found[target] = [float(value.replace(",", "")) / count for value in totals.split()[:4]]
    emit, base = found["emit"], found["queue"]
    if not emit[0]:
        print("(d) --cold: nothing counted (libpython without its symbols? needs starmap_next)")
        return
    for label, (instructions, code, data_read, data_write) in (
        ("emit()", emit),
        ("baseline queue.Queue.put", base),
    ):
        print(
            f"(d) {label}, cold, per call: {instructions:,.0f} instructions, "
            f"{code + data_read + data_write:,.0f} cache lines from memory "
            f"({code:,.0f} code, {data_read + data_write:,.0f} data)"
        )
    ratio = (emit[1] + emit[2] + emit[3]) / (base[1] + base[2] + base[3])
    print(f"    ratio (cache lines) {ratio:.1f}x")


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument(
        "--cold",
        type=int,
        nargs="?",
        const=100,
        metavar="CALLS",
        help="only (d): cold calls under valgrind's cache simulator (default 100)",
    )
    parser.add_argument("--cold-child", choices=["emit", "queue"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(args.cold_child, args.cold or 100)
        return
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="ts-bench-sdk-") as name:
            print(f"machine: {platform.machine()}, Python {platform.python_version()}; {load()}")
            bench_cold(args.cold, Path(name))
        return
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
