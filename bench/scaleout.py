"""Scale-out benchmarks (PostgreSQL store, JetStream ingest); run through `bench/ingest.py --store`.

(a) Commit path on PostgreSQL: the sequencer (leaf indexes, tiles, root re-check inside the
    transaction, signed checkpoint, COPY into ``leaves`` + partitioned ``events``,
    ``synchronous_commit=on``) vs a plain ``COPY`` of the same rows into the same tables at the same
    durability, in batches of 2,000: events/s and the ratio.
(b) End to end: ``trailseal serve --store postgresql://...`` and client processes sending batches
    of 100 events over HTTP: acknowledged ("sequenced") events/s, against the plain COPY of (a),
    and the same load against the default SQLite store.
(c) JetStream mode (``--ingest nats://...``): "accepted" events/s (answered once JetStream stored
    them) and "sequenced" events/s (the same events committed to the log, until the stream drained).

Each run uses fresh schemas of the given database and drops them afterwards.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from tests.factories import make_event

from trailseal.core.ids import new_event_id
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.log import LogSequencer, Request, _leaf_entry
from trailseal.storage.postgres import PostgresStore
from trailseal.storage.postgres import store as pg

NOW = "2026-11-28T10:15:31.000000Z"
BATCH = 2000
LEAVES = "COPY leaves (log, leaf_index, event_id, content_hash, received_ts) FROM STDIN (FORMAT BINARY)"


def schema_url(base: str) -> str:
    """``base`` pointing at a fresh schema."""
    return f"{base}{'&' if '?' in base else '?'}schema=ts_bench_{uuid.uuid4().hex[:10]}"


def drop(url: str) -> None:
    store = PostgresStore(url, migrate=False)
    store.drop_schema()
    store.close()


def settle(base: str) -> None:
    """Start the next phase from a clean server: flush what the previous phase dirtied
    (``CHECKPOINT``), so its background writes do not land on this phase's commits."""
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def copy_rows(store: PostgresStore, entries: list[Any]) -> float:
    """Plain COPY of ``entries`` into ``leaves`` and ``events`` in batches; rows/s."""
    moment = dt.datetime.fromisoformat(NOW)
    store._ensure_partitions({pg._month(moment)[0]})
    started = time.perf_counter()
    for at in range(0, len(entries), BATCH):
        with store.connection() as conn, conn.transaction(), conn.cursor() as cur:
            with cur.copy(LEAVES) as copy:
                copy.set_types(["text", "int8", "text", "bytea", "timestamptz"])
                for e in entries[at : at + BATCH]:
                    copy.write_row((e.log, e.leaf_index, e.event_id, e.content_hash, moment))
            with cur.copy(pg._COPY_EVENTS) as copy:
                copy.set_types(pg._EVENT_TYPES)
                for e in entries[at : at + BATCH]:
                    copy.write_row((
                        e.log, e.leaf_index, e.event_id, e.leaf_hash, e.content_hash, e.body, e.time,
                        e.received_at, e.action, e.actor_id, e.resource_type, e.resource_id,
                        e.outcome, e.request_id, e.trace_id, e.source_service, moment,
                        pg._timestamp(e.time),
                    ))
    return len(entries) / (time.perf_counter() - started)


def bench_commit_path(base: str, total: int) -> tuple[float, float]:
    """(sequencer events/s, plain COPY rows/s) on PostgreSQL over the same prepared rows."""
    events = [prepare(make_event(), log="default", received_at=NOW) for _ in range(total)]
    seq_url, copy_url = schema_url(base), schema_url(base)
    try:
        store = PostgresStore(seq_url)
        store.ensure_log("default", "bench/default", NOW)
        seq = LogSequencer(store, "default", "bench/default", Keyring.generate("bench/default", NOW), lambda: NOW)
        started = time.perf_counter()
        for at in range(0, total, BATCH):
            seq.commit([Request(events[at : at + BATCH])])
        seq_rate = total / (time.perf_counter() - started)
        store.close()
        plain = PostgresStore(copy_url)
        copy_rate = copy_rows(plain, [_leaf_entry("default", i, item) for i, item in enumerate(events)])
        plain.close()
        return seq_rate, copy_rate
    finally:
        drop(seq_url)
        drop(copy_url)


# -- HTTP ----------------------------------------------------------------------------------------
def _client(port: int, seconds: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Send batches of 100 events with fresh ids; count acknowledged (200) or accepted (202).

    Ids are UUIDv7, as the SDK makes them (time-ordered: they append to the id index; random
    UUIDv4 ids halve the rate on PostgreSQL, each one dirtying a random index page)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    template = [{k: v for k, v in make_event().items() if k != "request_id"} for _ in range(100)]
    acked = rejected = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = orjson.dumps([{**event, "id": new_event_id()} for event in template])
        conn.request("POST", "/v1/events", body=body, headers={"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status in (200, 202):
            acked += 100
        else:
            rejected += 1
            time.sleep(0.05)
    out.put((acked, rejected))


def load(port: int, clients: int, seconds: float) -> tuple[float, int]:
    """(acknowledged events/s, total acknowledged) for ``clients`` processes over ``seconds``."""
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=_client, args=(port, seconds, out)) for _ in range(clients)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    acked = sum(a for a, _ in results)
    return acked / elapsed, acked


def bench_sqlite_http(seconds: float, clients: int) -> float:
    """The same load against the default SQLite store (same pipeline), for comparison."""
    from bench.ingest import free_port, start_server

    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-sqlite-"))
    port = free_port()
    server = start_server(tmp / "data", port)
    try:
        return load(port, clients, seconds)[0]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def bench_http(base: str, seconds: float, clients: int, *extra: str) -> dict[str, float]:
    """End-to-end rate against a PostgreSQL-backed server; with ``--ingest`` also the time until
    everything accepted was sequenced."""
    from bench.ingest import free_port, start_server

    url = schema_url(base)
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-pg-"))
    port = free_port()
    server = start_server(tmp / "data", port, "--store", url, *extra)
    try:
        started = time.perf_counter()
        rate, acked = load(port, clients, seconds)
        result = {"acked_per_s": rate, "acked": float(acked)}
        if "--ingest" in extra:
            store = PostgresStore(url, migrate=False)
            try:
                while store.tree_size("default") < acked:
                    time.sleep(0.05)
            finally:
                store.close()
            result["sequenced_per_s"] = acked / (time.perf_counter() - started)
        return result
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        drop(url)


def run(base: str, *, quick: bool, nats: str | None) -> None:
    """Print the scale-out figures."""
    total = 20_000 if quick else 60_000
    seconds = 4.0 if quick else 10.0
    seq_rate, copy_rate = bench_commit_path(base, total)
    print("(pg-a) commit path on PostgreSQL")
    print(f"    sequencer              {seq_rate:>10,.0f} events/s")
    print(f"    plain COPY             {copy_rate:>10,.0f} rows/s   (same rows and tables, synchronous_commit=on)")
    print(f"    ratio                  {seq_rate / copy_rate:>10.2f}x")
    settle(base)
    http = bench_http(base, seconds, 4)
    print("(pg-b) end to end, 4 client processes x batches of 100 over HTTP, PostgreSQL store")
    print(f"    acknowledged           {http['acked_per_s']:>10,.0f} events/s (sequenced receipts)  (target >= 15,000)")
    print(f"    vs plain COPY          {http['acked_per_s'] / copy_rate:>10.2f}x  (target >= 0.4x)")
    # Each commit waits on PostgreSQL's round trips and fsync: with 4 clients the node is
    # latency-bound (CPU idle); more concurrent producers make larger group commits.
    settle(base)
    wide = bench_http(base, seconds, 16)
    print("(pg-b) same with 16 client processes")
    print(f"    acknowledged           {wide['acked_per_s']:>10,.0f} events/s (sequenced receipts)  (target >= 15,000)")
    print(f"    vs plain COPY          {wide['acked_per_s'] / copy_rate:>10.2f}x  (target >= 0.4x)")
    sqlite_rate = bench_sqlite_http(seconds, 4)
    print(f"    SQLite, 4 clients      {sqlite_rate:>10,.0f} events/s  (PostgreSQL with 4 clients / SQLite "
          f"{http['acked_per_s'] / sqlite_rate:.2f}x)")
    if nats:
        import os

        from trailseal.sequencer.jetstream import JetStreamBus

        stream = f"TS_BENCH_{uuid.uuid4().hex[:8].upper()}"
        os.environ["TRAILSEAL_NATS_STREAM"] = stream  # inherited by the server process
        try:
            settle(base)
            bus = bench_http(base, seconds, 4, "--ingest", nats, "--queue-max-events", "200000")
        finally:
            cleanup = JetStreamBus(nats, stream)
            cleanup.start()
            cleanup.delete_stream()
            cleanup.close()
        print("(pg-c) JetStream ingest (--ingest), same load")
        print(f"    accepted               {bus['acked_per_s']:>10,.0f} events/s (answered once JetStream stored them)")
        print(f"    sequenced              {bus['sequenced_per_s']:>10,.0f} events/s (committed, until the stream drained)")
