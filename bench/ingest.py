"""Ingest benchmarks (the `ingest` issue). Run: `.venv/bin/python bench/ingest.py [--quick]`.

(a) In-process commit path (sequencer: leaf indexes, tiles, root re-check, signed checkpoint,
    SQLite WAL + synchronous=FULL commit) vs plain SQLite ``executemany`` of the same rows into
    the same table at the same durability, in batches of 1,000: events/s and the ratio.
(b) End to end: a real ``trailseal serve`` subprocess and client *processes* sending batches of
    100 events over HTTP keep-alive: acknowledged events/s, p50/p99 acknowledgement latency, and
    p99 time from receipt (``received_at``) to the signed checkpoint covering the event, at full
    load and at half of it.
(c) Memory under overload: server RSS at 1x and 5x the clients with a small queue: ratio and the
    share of 503 answers.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

import orjson  # noqa: E402
from tests.factories import make_event  # noqa: E402

from trailseal.core.keys import Keyring  # noqa: E402
from trailseal.pipeline.prepare import prepare  # noqa: E402
from trailseal.sequencer.log import LogSequencer, Request, _leaf_entry  # noqa: E402
from trailseal.storage.sqlite import SQLiteStore  # noqa: E402
from trailseal.storage.sqlite.migrations import MIGRATIONS  # noqa: E402

NOW = "2026-11-28T10:15:31.000000Z"


def bench_commit_path(total: int, batch: int = 1000) -> tuple[float, float]:
    """(sequencer events/s, plain executemany rows/s) over the same prepared rows."""
    events = [prepare({k: v for k, v in make_event().items()}, log="default", received_at=NOW) for _ in range(total)]
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    try:
        store = SQLiteStore(tmp / "seq.db")
        store.ensure_log("default", "bench/default", NOW)
        seq = LogSequencer(store, "default", "bench/default", Keyring.generate("bench/default", NOW), lambda: NOW)
        started = time.perf_counter()
        for i in range(0, total, batch):
            seq.commit([Request(events[i : i + batch])])
        seq_rate = total / (time.perf_counter() - started)
        store.close()

        rows = [_leaf_entry("default", i, item) for i, item in enumerate(events)]
        conn = sqlite3.connect(tmp / "plain.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(MIGRATIONS[0])
        sql = f"INSERT INTO entries VALUES ({', '.join('?' * 16)})"
        tuples = [(e.log, e.leaf_index, e.event_id, e.leaf_hash, e.content_hash, e.body, e.time,
                   e.received_at, e.action, e.actor_id, e.resource_type, e.resource_id, e.outcome,
                   e.request_id, e.trace_id, e.source_service) for e in rows]
        started = time.perf_counter()
        for i in range(0, total, batch):
            conn.execute("BEGIN")
            conn.executemany(sql, tuples[i : i + batch])
            conn.execute("COMMIT")
        plain_rate = total / (time.perf_counter() - started)
        conn.close()
        return seq_rate, plain_rate
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- end to end --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailseal.cli", "serve", "--data", str(data), "--port", str(port),
         "--server-name", "bench", "--no-auth", *extra],  # auth overhead: bench/access.py
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def client(port: int, seconds: float, rate: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Send batches of 100 id-less events (the server assigns ids) until time is up."""
    body = orjson.dumps([{k: v for k, v in make_event().items() if k != "request_id"} for _ in range(100)])
    headers = {"content-type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    acked = rejected = 0
    deadline = time.monotonic() + seconds
    interval = 100.0 / rate if rate else 0.0
    next_send = time.monotonic()
    while time.monotonic() < deadline:
        if interval:
            pause = next_send - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            next_send += interval
        started = time.perf_counter()
        conn.request("POST", "/v1/events", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            latencies.append(time.perf_counter() - started)
            acked += 100
        else:
            rejected += 1
            time.sleep(0.05)
    out.put((acked, rejected, latencies))


def run_load(port: int, clients: int, seconds: float, rate_per_client: float = 0.0) -> dict[str, float]:
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=client, args=(port, seconds, rate_per_client, out)) for _ in range(clients)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    latencies = sorted(x for _, _, lat in results for x in lat)
    acked = sum(a for a, _, _ in results)
    rejected = sum(r for _, r, _ in results)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [0.0] * 99
    return {"events_per_s": acked / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000,
            "acked": acked, "rejected_requests": rejected}


def checkpoint_lag_p99(data: Path, since_leaf: int) -> float:
    """p99 of (covering checkpoint's created_at - event received_at), in ms."""
    conn = sqlite3.connect(data / "trailseal.db")
    rows = conn.execute(
        "SELECT (julianday(c.created_at) - julianday(e.received_at)) * 86400000.0 FROM entries e "
        "JOIN checkpoints c ON c.log = e.log AND c.tree_size = (SELECT MIN(tree_size) FROM checkpoints "
        "WHERE log = e.log AND tree_size > e.leaf_index) WHERE e.leaf_index >= ?", (since_leaf,)
    ).fetchall()
    conn.close()
    lags = sorted(r[0] for r in rows)
    return statistics.quantiles(lags, n=100)[98] if len(lags) > 2 else 0.0


def tree_size(data: Path) -> int:
    conn = sqlite3.connect(data / "trailseal.db")
    size = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    conn.close()
    return int(size)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the writer process, multiprocessing's resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def rss_kb(pid: int) -> int:
    """Resident memory of the server: the API process and its writer process together."""
    total = 0
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds so far of each process of the server."""
    out = {}
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        out[member] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--clients", type=int, default=4, help="client processes for (b) [default 4]")
    parser.add_argument("--writer-thread", action="store_true",
                        help="run the server with its writers on a thread (one process) instead")
    parser.add_argument("--store", help="postgresql://...: run the scale-out figures (bench/scaleout.py) instead")
    parser.add_argument("--nats", help="with --store: also JetStream mode against this nats:// URL")
    args = parser.parse_args()
    if args.store:
        from bench.scaleout import run

        run(args.store, quick=args.quick, nats=args.nats)
        return
    total = 20_000 if args.quick else 100_000
    seconds = 3.0 if args.quick else 10.0

    seq_rate, plain_rate = bench_commit_path(total)
    print(f"(a) commit path          {seq_rate:>10,.0f} events/s")
    print(f"    plain executemany     {plain_rate:>10,.0f} rows/s   (same rows, WAL + synchronous=FULL)")
    print(f"    ratio                 {seq_rate / plain_rate:>10.2f}x  (target >= 0.5x)")

    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-e2e-"))
    try:
        data, port = tmp / "data", free_port()
        layout = ("--writer-thread",) if args.writer_thread else ()
        server = start_server(data, port, *layout)
        try:
            time.sleep(0.5)
            cpu_before = cpu_seconds(server.pid)
            full = run_load(port, clients=args.clients, seconds=seconds)
            cpu_after = cpu_seconds(server.pid)
            before = tree_size(data)
            half_rate = full["events_per_s"] / 2 / args.clients
            half = run_load(port, clients=args.clients, seconds=seconds, rate_per_client=half_rate)
            lag = checkpoint_lag_p99(data, before)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        per_event = {pid: (cpu_after[pid] - cpu_before.get(pid, 0.0)) / max(1, full["acked"]) * 1e6
                     for pid in cpu_after}
        print(f"(b) end to end, {args.clients} client processes x batches of 100 over HTTP"
              f"{' (writers on a thread)' if args.writer_thread else ''}")
        print(f"    full load             {full['events_per_s']:>10,.0f} events/s acknowledged "
              f"(p50 {full['p50_ms']:.1f} ms, p99 {full['p99_ms']:.1f} ms per batch)  (target >= 20,000)")
        print("    server CPU per event  " + ", ".join(
            f"{'API' if pid == server.pid else 'writer'} {us:.0f} µs" for pid, us in per_event.items() if us > 0.5))
        print(f"    half load             {half['events_per_s']:>10,.0f} events/s "
              f"(p50 {half['p50_ms']:.1f} ms, p99 {half['p99_ms']:.1f} ms)")
        print(f"    receipt -> checkpoint p99 {lag:>6.1f} ms at half load (target < 100 ms)")

        data2, port2 = tmp / "data2", free_port()
        server = start_server(data2, port2, "--queue-max-events", "2000", *layout)
        try:
            run_load(port2, clients=2, seconds=2)
            run_load(port2, clients=2, seconds=seconds)
            rss1 = rss_kb(server.pid)
            five = run_load(port2, clients=10, seconds=seconds)
            rss5 = rss_kb(server.pid)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        share = five["rejected_requests"] / max(1, five["rejected_requests"] + five["acked"] / 100)
        print("(c) memory under overload (queue bound 2,000 events)")
        print(f"    RSS at 1x load        {rss1 / 1024:>10.1f} MiB (API and writer processes)")
        print(f"    RSS at 5x load        {rss5 / 1024:>10.1f} MiB  ratio {rss5 / max(1, rss1):.2f} "
              f"(target within 1.20); {share:.0%} of requests answered 503")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
