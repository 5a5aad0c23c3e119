"""Query benchmarks (the `query` issue). Run: `.venv/bin/python bench/query.py [--events N]`.

1. Load N realistic events (default 10,000,000; tests/query/corpus.py: skewed actors and
   actions, 36 services, correlated requests/traces) into SQLite through the real write path
   (LogSequencer.commit: leaf indexes, tiles, root re-check, signed checkpoint, WAL, the
   query indexes and the full-text append hook) — as a bulk load: batches of 10,000 and
   synchronous=OFF (crash safety is not what is measured here). Events
   are generated and canonicalized in a worker process; the first 2,000 are checked to be
   byte-identical to what the ingest pipeline (prepare) stores.
2. p50/p95 of 12 fixed queries, each run --reps times with varying parameters (first page of 50,
   newest first, through SQLiteSearch as the API runs it; the timeline through build_timeline).
3. Export rate: NDJSON, CSV and OCSF of a ~--export-events selection, through iter_matches +
   export_chunks (what GET /v1/export streams: it reads raw leaf rows, not entries), written to
   a null sink.
4. Ingest with the query indexes on vs off: the same --ratio-events prepared events committed
   into fresh stores with and without the query component, interleaved --rounds times; the
   median ratio. Also the ratio for the whole in-process ingest path (prepare + commit), and
   with --scale-ratio N the commit rate on the loaded store (indexes at full size) against a
   copy of it without the query indexes. All index work is inside the commits measured (the
   full-text rows are written by the append hook in the commit transaction).

Use --db PATH to keep the loaded database and --reuse to skip loading when it is there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.query.corpus import Generator  # noqa: E402

from trailseal.core.canonical import canonicalize  # noqa: E402
from trailseal.core.hashing import leaf_hash  # noqa: E402
from trailseal.core.keys import Keyring  # noqa: E402
from trailseal.pipeline.prepare import prepare  # noqa: E402
from trailseal.query import search_for  # noqa: E402
from trailseal.query.export import export_chunks  # noqa: E402
from trailseal.query.parser import parse  # noqa: E402
from trailseal.query.search import iter_matches  # noqa: E402
from trailseal.query.timeline import build_timeline  # noqa: E402
from trailseal.sequencer.log import LogSequencer, Request  # noqa: E402
from trailseal.sequencer.types import Prepared  # noqa: E402
from trailseal.storage.sqlite import SQLiteStore  # noqa: E402

LOG = "default"
ORIGIN = "bench.example/default"
SIGNED_AT = "2026-12-01T00:00:00.000000Z"
CHUNK = 10_000


# -- generation (worker process) ----------------------------------------------------------------
def _received(time_text: str, rng: random.Random) -> str:
    moment = dt.datetime.fromisoformat(time_text[:-1]) + dt.timedelta(milliseconds=rng.uniform(20, 400))
    return moment.isoformat(timespec="microseconds") + "Z"


def fast_prepare(event: dict[str, Any], received_at: str) -> tuple[Any, ...]:
    """What prepare() stores, without re-validating generator output (checked against it)."""
    content = hashlib.sha256(canonicalize(event)).digest()
    full = dict(event)
    full["received_at"] = received_at
    full["log"] = LOG
    body = canonicalize(full)
    actor, resource, source = event["actor"], event["resource"], event.get("source") or {}
    return (event["id"], event["time"], received_at, event["action"], actor["id"], resource["type"],
            resource["id"], event.get("outcome"), event.get("request_id"), event.get("trace_id"),
            source.get("service"), body, leaf_hash(body), content)


def produce(total: int, seed: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    rng = random.Random(seed + 1)
    made = 0
    stream = iter(Generator(seed))
    while made < total:
        size = min(CHUNK, total - made)
        out.put([fast_prepare(e, _received(e["time"], rng)) for e in (next(stream) for _ in range(size))])
        made += size
    out.put(None)


def prepared(row: tuple[Any, ...]) -> Prepared:
    (ident, when, received, action, actor, rtype, rid, outcome, req, trace, service,
     body, leaf, content) = row
    event = SimpleNamespace(
        id=ident, time=when, received_at=received, action=action, outcome=outcome,
        request_id=req, trace_id=trace, actor=SimpleNamespace(id=actor),
        resource=SimpleNamespace(type=rtype, id=rid),
        source=SimpleNamespace(service=service) if service else None)
    return Prepared(event, body, leaf, content)  # type: ignore[arg-type]


def check_fast_path(seed: int) -> None:
    rng = random.Random(seed + 1)
    for event in (e for _, e in zip(range(2000), Generator(seed), strict=False)):
        received = _received(event["time"], rng)
        row = fast_prepare(event, received)
        real = prepare(event, log=LOG, received_at=received)
        assert (row[-3], row[-2], row[-1]) == (real.body, real.leaf_hash, real.content_hash), event["id"]


# -- loading ------------------------------------------------------------------------------------
def open_sequencer(path: Path, indexed: bool) -> tuple[SQLiteStore, LogSequencer]:
    store = SQLiteStore(path)
    if indexed:
        search_for(store)
    store.ensure_log(LOG, ORIGIN, SIGNED_AT)
    keyring = Keyring.generate(ORIGIN, SIGNED_AT)
    return store, LogSequencer(store, LOG, ORIGIN, keyring, lambda: SIGNED_AT)


def load(path: Path, total: int, seed: int, batch: int = 10_000) -> list[tuple[int, float]]:
    """Load ``total`` events; returns (events so far, events/s over the last million).

    A bulk load, not the ingest measurement: batches of 10,000, ``synchronous=OFF`` and a 256 MB
    page cache on the writer (the ingest comparison below keeps the production settings).
    """
    store, seq = open_sequencer(path, indexed=True)
    store._writer.execute("PRAGMA synchronous=OFF")
    store._writer.execute("PRAGMA cache_size=-262144")
    queue: mp.Queue = mp.Queue(maxsize=8)  # type: ignore[type-arg]
    worker = mp.Process(target=produce, args=(total, seed, queue), daemon=True)
    worker.start()
    done, marks = 0, []
    started = last = time.perf_counter()
    last_done = 0
    while (rows := queue.get()) is not None:
        items = [prepared(r) for r in rows]
        for start in range(0, len(items), batch):
            seq.commit([Request(items[start : start + batch])])
        done += len(items)
        if done - last_done >= 1_000_000 or done == total:
            now = time.perf_counter()
            marks.append((done, (done - last_done) / (now - last)))
            print(f"  loaded {done:>10,} events  {marks[-1][1]:>8,.0f} ev/s (last span)  "
                  f"{done / (now - started):>8,.0f} ev/s overall", flush=True)
            last, last_done = now, done
    worker.join()
    store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return marks


# -- queries ------------------------------------------------------------------------------------
def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def query_suite(store: SQLiteStore, reps: int, seed: int) -> list[tuple[str, str, float, float, float]]:
    search = search_for(store)
    rng = random.Random(seed)
    first = store.get_entry(LOG, 0)
    size = store.tree_size(LOG)
    last = store.get_entry(LOG, size - 1)
    assert first is not None and last is not None
    start = dt.datetime.fromisoformat(first.time[:-1]).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(last.time[:-1]).replace(tzinfo=dt.UTC)
    sample = [store.get_entry(LOG, rng.randrange(size)) for _ in range(400)]
    entries = [e for e in sample if e is not None]
    actors = [e.actor_id for e in entries]
    request_ids = [e.request_id for e in entries if e.request_id]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.actor_id] = counts.get(e.actor_id, 0) + 1
    heavy = sorted(counts, key=counts.__getitem__, reverse=True)[:5]
    actions = ["iam.role.update", "k8s.pod.delete", "secret.write", "storage.object.delete",
               "auth.mfa.challenge", "deploy.rollout.start", "payment.refund.create"]

    def hour() -> str:
        span = (end - start).total_seconds() - 3600
        at = start + dt.timedelta(seconds=rng.uniform(0, max(span, 1)))
        return f"time:[{at:%Y-%m-%dT%H:%M:%SZ} TO {at + dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}}}"

    suite: list[tuple[str, str, Callable[[], str]]] = [
        ("indexed", "actor.id:<heavy actor>", lambda: f"actor.id:{rng.choice(heavy)}"),
        ("indexed", "actor.id:<any actor>", lambda: f"actor.id:{rng.choice(actors)}"),
        ("indexed", "action:<action>", lambda: f"action:{rng.choice(actions)}"),
        ("wildcard", "action:iam.role.*", lambda: "action:iam.role.*"),
        ("indexed", "outcome:denied AND action:auth.*", lambda: "outcome:denied AND action:auth.*"),
        ("wildcard", "resource.type:bucket AND action:storage.bucket.*",
         lambda: "resource.type:bucket AND action:storage.bucket.*"),
        ("time", "time:[<t> TO <t+1h>}", hour),
        ("time", "time:>-2h AND outcome:failure", lambda: "time:>-2h AND outcome:failure"),
        ("indexed", "request_id:<id>", lambda: f"request_id:{rng.choice(request_ids)}"),
        ("full text", "deadlock", lambda: "deadlock"),
        ("full text", '"break-glass" AND source.environment:prod',
         lambda: '"break-glass" AND source.environment:prod'),
        ("timeline", "timeline --request-id <id>", lambda: "timeline"),
    ]
    results = []
    for kind, label, make in suite:
        samples, rows = [], 0
        for _ in range(reps):
            q = make()
            began = time.perf_counter()
            if q == "timeline":
                tl = build_timeline(search, LOG, request_id=rng.choice(request_ids), now=end)
                rows += len(tl.events)
            else:
                rows += len(search.search(LOG, parse(q, now=end), limit=50))
            samples.append((time.perf_counter() - began) * 1000)
        p50, p95 = _percentiles(samples)
        results.append((kind, label, p50, p95, rows / reps))
    return results


def export_rates(store: SQLiteStore, target: int) -> dict[str, tuple[int, float]]:
    search = search_for(store)
    first = store.get_entry(LOG, 0)
    assert first is not None
    size = store.tree_size(LOG)
    last = store.get_entry(LOG, min(size - 1, target))
    assert last is not None
    q = f"time:[{first.time} TO {last.time}]"
    out: dict[str, tuple[int, float]] = {}
    for fmt in ("ndjson", "csv", "ocsf"):
        events = 0
        began = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            for chunk in export_chunks(iter_matches(search, LOG, parse(q)), fmt):
                sink.write(chunk)
                events += chunk.count(b"\n")
        events -= fmt == "csv"  # the header line
        out[fmt] = (events, events / (time.perf_counter() - began))
    return out


# -- ingest with and without the query indexes --------------------------------------------------
def ingest_ratio(total: int, rounds: int, seed: int, workdir: Path) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    events = [e for _, e in zip(range(total), Generator(seed + 99), strict=False)]
    rows = [fast_prepare(e, _received(e["time"], rng)) for e in events]
    items = [prepared(r) for r in rows]
    # A server holds one batch, not 200,000 prepared events: keep the cyclic GC from walking
    # them on every collection the commits trigger (that cost grows with what this harness
    # holds, and falls mostly on the side that allocates more: indexes on).
    gc.collect()
    gc.freeze()
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(rounds):
        for indexed in ((False, True) if round_ % 2 == 0 else (True, False)):
            path = workdir / f"ratio-{indexed}-{round_}.db"
            store, seq = open_sequencer(path, indexed)
            began = time.perf_counter()
            for start in range(0, len(items), 2000):
                seq.commit([Request(items[start : start + 2000])])
            rates[indexed].append(total / (time.perf_counter() - began))
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
    # the whole in-process path: validate + canonicalize + hash (prepare) + commit
    sample = events[: min(total, 50_000)]
    full: dict[bool, float] = {}
    for indexed in (False, True):
        path = workdir / f"full-{indexed}.db"
        store, seq = open_sequencer(path, indexed)
        began = time.perf_counter()
        for start in range(0, len(sample), 2000):
            batch = [prepare(e, log=LOG, received_at=SIGNED_AT) for e in sample[start : start + 2000]]
            seq.commit([Request(batch)])
        full[indexed] = len(sample) / (time.perf_counter() - began)
        store.close()
    gc.unfreeze()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    return {"off": off, "on": on, "ratio": on / off, "rounds": rates,
            "full_off": full[False], "full_on": full[True], "full_ratio": full[True] / full[False]}


def scale_ratio(db: Path, total: int, seed: int, rounds: int) -> dict[str, Any]:
    """Commit rate of ``total`` more events on the loaded store, with its query indexes and on
    a copy without them (indexes dropped): the write cost where the indexes are big."""
    import sqlite3

    bare = db.with_name(db.stem + "-noindex.db")
    shutil.copyfile(db, bare)
    conn = sqlite3.connect(bare, isolation_level=None)
    conn.execute("PRAGMA secure_delete=OFF")  # dropping must not zero gigabytes of pages
    for statement in ("DROP INDEX q_entries_time", "DROP INDEX q_entries_action",
                      "DROP TABLE q_text", "DROP TABLE q_logs",
                      "DELETE FROM schema_migrations WHERE component = 'query'"):
        conn.execute(statement)
    conn.close()
    rng = random.Random(seed + 7)
    events = [e for _, e in zip(range(total * rounds * 2), Generator(seed + 1234, start=dt.datetime(2026, 12, 5, tzinfo=dt.UTC)), strict=False)]
    items = [prepared(fast_prepare(e, _received(e["time"], rng))) for e in events]
    gc.collect()
    gc.freeze()  # as in ingest_ratio
    rates: dict[bool, list[float]] = {False: [], True: []}
    try:
        done = 0
        for round_ in range(rounds):
            for indexed in ((True, False) if round_ % 2 == 0 else (False, True)):
                store = SQLiteStore(db if indexed else bare)
                if indexed:
                    search_for(store)
                keyring = Keyring.generate(ORIGIN, SIGNED_AT)
                # each store continues its own log; events are fresh for both (ids unique)
                seq = LogSequencer(store, LOG, ORIGIN, keyring, lambda: SIGNED_AT)
                batch = items[done : done + total]
                done += total
                began = time.perf_counter()
                for start in range(0, len(batch), 2000):
                    seq.commit([Request(batch[start : start + 2000])])
                rates[indexed].append(total / (time.perf_counter() - began))
                store.close()
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(bare) + suffix).unlink(missing_ok=True)
    gc.unfreeze()
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    return {"off": off, "on": on, "ratio": on / off, "rounds": rates}


def iter_report(stats: dict[str, Any]) -> Iterator[str]:
    yield f"ingest (commit path, {stats['events']:,} events x {stats['rounds_n']} rounds, median):"
    yield (f"  indexes off {stats['ratio']['off']:>9,.0f} ev/s   on {stats['ratio']['on']:>9,.0f} ev/s"
           f"   ratio {stats['ratio']['ratio']:.2f}  (target >= 0.70)")
    yield ("  rounds (ev/s): off " + ", ".join(f"{r:,.0f}" for r in stats["ratio"]["rounds"][False])
           + "; on " + ", ".join(f"{r:,.0f}" for r in stats["ratio"]["rounds"][True]))
    yield (f"  whole in-process path (prepare + commit): off {stats['ratio']['full_off']:,.0f}  "
           f"on {stats['ratio']['full_on']:,.0f}  ratio {stats['ratio']['full_ratio']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--db", type=Path, help="database file to load (kept); default: a temp dir")
    parser.add_argument("--reuse", action="store_true", help="skip loading if --db already holds the events")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--export-events", type=int, default=1_000_000)
    parser.add_argument("--ratio-events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--scale-ratio", type=int, default=0, metavar="N",
                        help="also commit N more events per round on the loaded store with its "
                             "indexes and on a copy without them (needs the disk for a copy)")
    parser.add_argument("--only-ratio", action="store_true", help="skip the queries and exports")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="ts-query-bench-"))
    db = args.db or workdir / "trailseal.db"
    try:
        print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
              f"SQLite {__import__('sqlite3').sqlite_version}", flush=True)
        check_fast_path(args.seed)
        if args.reuse and db.exists() and SQLiteStore(db).tree_size(LOG) >= args.events:
            print(f"reusing {db}")
        else:
            if db.exists():
                raise SystemExit(f"{db} exists; remove it or pass --reuse")
            print(f"loading {args.events:,} events into {db}", flush=True)
            began = time.perf_counter()
            load(db, args.events, args.seed)
            print(f"  load took {time.perf_counter() - began:,.0f} s; database "
                  f"{db.stat().st_size / 1e9:.2f} GB", flush=True)
        if not args.only_ratio:
            store = SQLiteStore(db)
            size = store.tree_size(LOG)
            print(f"\nqueries on {size:,} events (first page of 50, newest first; {args.reps} runs each, ms):")
            print(f"  {'kind':<10} {'query':<52} {'p50':>8} {'p95':>8} {'rows':>7}")
            for kind, label, p50, p95, rows in query_suite(store, args.reps, args.seed):
                print(f"  {kind:<10} {label:<52} {p50:>8.1f} {p95:>8.1f} {rows:>7.0f}", flush=True)
            print(f"\nexport of the first ~{args.export_events:,} events by time:")
            for fmt, (events, rate) in export_rates(store, args.export_events).items():
                print(f"  {fmt:<7} {events:>10,} events  {rate:>9,.0f} ev/s  (target >= 50,000)", flush=True)
            store.close()
        if args.scale_ratio:
            at = scale_ratio(db, args.scale_ratio, args.seed, args.rounds)
            print(f"\ningest on the loaded store ({args.scale_ratio:,} more events x {args.rounds} "
                  f"rounds, batches of 2,000, synchronous=FULL, median):")
            print(f"  indexes off {at['off']:>9,.0f} ev/s   on {at['on']:>9,.0f} ev/s   "
                  f"ratio {at['ratio']:.2f}", flush=True)
        if not args.skip_ratio:
            ratio = ingest_ratio(args.ratio_events, args.rounds, args.seed, workdir)
            print()
            for line in iter_report({"events": args.ratio_events, "rounds_n": args.rounds, "ratio": ratio}):
                print(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
