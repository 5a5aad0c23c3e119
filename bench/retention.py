"""Retention benchmark (the `retention` issue). Run: `.venv/bin/python bench/retention.py [--events N]`.

Loads N events (default 1,000,000) spread evenly over 365 days of ``received_at`` into a SQLite
store through the real sequencer (tiles, signed checkpoints), sets a 30-day default policy, and
times one retention run of the log, phase by phase:

* plan — scan the log and decide (policy, holds, horizon);
* archive — seal segments (read rows, RFC 8785 bytes as NDJSON, zstd, manifest with leaf hashes
  and range proof, Ed25519 signature, fsync'd files);
* prune — tombstone bodies, clear query columns, write prune records, in batches.

Baselines measured in the same run on the same bytes: plain zstd compression of the archived
NDJSON as one frame (throughput and size), and the store before/after (``VACUUM``ed) against the
archive's size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import orjson  # noqa: E402
import zstandard  # noqa: E402

from trailseal.core.hashing import leaf_hash  # noqa: E402
from trailseal.core.keys import Keyring  # noqa: E402
from trailseal.retention.archive import SealOptions  # noqa: E402
from trailseal.retention.service import Retention, RetentionConfig  # noqa: E402
from trailseal.retention.targets import LocalTarget  # noqa: E402
from trailseal.sequencer.log import LogSequencer, Request  # noqa: E402
from trailseal.sequencer.types import Prepared  # noqa: E402
from trailseal.storage.retention import RunRecord  # noqa: E402
from trailseal.storage.sqlite import SQLiteStore  # noqa: E402

LOG = "bench"
ORIGIN = "bench.example/bench"
START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
ACTIONS = ("auth.login", "auth.logout", "iam.role.update", "deploy.rollout.start",
           "deploy.rollout.finish", "storage.object.read", "billing.invoice.create")
SERVICES = ("identity", "deployer", "storage", "billing", "search", "checkout")


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(count: int, seed: int = 7):  # type: ignore[no-untyped-def]
    """Prepared-like items with realistic, varied RFC 8785 bodies (sorted keys, no spaces)."""
    rng = random.Random(seed)
    step = dt.timedelta(days=365) / count
    for n in range(count):
        received = stamp(START + step * n)
        actor = f"user{rng.randint(1, 5000)}@example.com"
        action = rng.choice(ACTIONS)
        service = rng.choice(SERVICES)
        body = {
            "action": action,
            "actor": {"id": actor, "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                      "type": "user"},
            "id": f"ev-{n:09d}", "log": LOG,
            "metadata": {"attempt": rng.randint(1, 3), "ticket": f"T-{rng.randint(1000, 99999)}"},
            "outcome": rng.choice(("success", "success", "success", "failure", "denied")),
            "received_at": received,
            "request_id": f"req-{rng.getrandbits(48):012x}",
            "resource": {"id": f"{service}-{rng.randint(1, 20000)}", "type": service},
            "source": {"environment": "prod", "region": "eu-west-1", "service": service},
            "time": received,
            "trace_id": f"{rng.getrandbits(128):032x}",
        }
        raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        event = SimpleNamespace(
            id=body["id"], time=received, received_at=received, action=action,
            actor=SimpleNamespace(id=actor), resource=SimpleNamespace(type=service, id=body["resource"]["id"]),
            outcome=body["outcome"], request_id=body["request_id"], trace_id=body["trace_id"],
            source=SimpleNamespace(service=service),
        )
        yield Prepared(event=event, body=raw, leaf_hash=leaf_hash(raw),  # type: ignore[arg-type]
                       content_hash=hashlib.sha256(raw).digest()), received


def load(store: SQLiteStore, keyring: Keyring, count: int, batch: int = 20_000) -> str:
    """Sequence ``count`` events in batches; return the last received_at."""
    store.ensure_log(LOG, ORIGIN, stamp(START))
    now = [stamp(START)]
    seq = LogSequencer(store, LOG, ORIGIN, keyring, lambda: now[0])
    pending = []
    for item, received in events(count):
        pending.append(item)
        if len(pending) == batch:
            now[0] = received
            seq.commit([Request(pending)])
            pending = []
    if pending:
        now[0] = received
        seq.commit([Request(pending)])
    return now[0]


def compact(store: SQLiteStore) -> None:
    """VACUUM, then fold the WAL back (VACUUM in WAL mode writes the whole file to the WAL)."""
    store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store._writer.execute("VACUUM")
    store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep-days", type=int, default=30)
    parser.add_argument("--level", type=int, default=6, help="zstd level (archive and baseline)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trailseal-bench-retention-"))
    try:
        run(work, args.events, args.keep_days, args.level)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, count: int, keep_days: int, level: int) -> None:
    path = work / "trailseal.db"
    store = SQLiteStore(path)
    keyring = Keyring.generate(ORIGIN, stamp(START))
    t = time.perf_counter()
    last = load(store, keyring, count)
    print(f"loaded {count:,} events over 365 days in {time.perf_counter() - t:.1f}s")
    compact(store)
    before = db_bytes(path)

    target = LocalTarget(work / "archive")
    config = RetentionConfig(segment_leaves=65_536, prune_batch=20_000,
                             seal=SealOptions(zstd_level=level))
    retention = Retention(store, keyring_for=lambda _log: keyring, target=target,
                          clock=lambda: last, config=config)
    retention.set_policy("*", "*", keep_days, actor="bench")

    t = time.perf_counter()
    plan = retention.plan(LOG)
    t_plan = time.perf_counter() - t
    run_record = RunRecord("bench-run", LOG, last, plan.horizon, "bench")
    retention.ext.put_run(run_record)
    t = time.perf_counter()
    run_record = retention._archive(plan, run_record)
    t_archive = time.perf_counter() - t
    archived = retention.ext.archived_end(LOG)
    t = time.perf_counter()
    run_record = retention._prune(plan, run_record)
    t_prune = time.perf_counter() - t
    pruned = run_record.pruned
    t = time.perf_counter()
    compact(store)
    t_vacuum = time.perf_counter() - t
    after = db_bytes(path)
    archive_bytes = sum(p.stat().st_size for p in (work / "archive").rglob("*") if p.is_file())
    data_bytes = sum(s.stored_bytes for s in retention.segments(LOG))
    raw_bytes = sum(s.raw_bytes for s in retention.segments(LOG))

    # Baseline: the same NDJSON bytes, zstd-compressed in one frame at the same level.
    ndjson = b"".join(item.body + b"\n" for item, _ in events(archived))
    assert len(ndjson) == raw_bytes
    t = time.perf_counter()
    baseline = zstandard.ZstdCompressor(level=level).compress(ndjson)
    t_zstd = time.perf_counter() - t
    store.close()

    def rate(n: int, seconds: float) -> str:
        return f"{n / seconds:,.0f} events/s"

    total = t_plan + t_archive + t_prune
    print(f"policy: keep {keep_days} days -> {pruned:,} of {count:,} events pruned, "
          f"{archived:,} archived in {len(retention.segments(LOG))} segments (zstd level {level})")
    print(f"plan     {t_plan:6.1f}s  {rate(count, t_plan)} scanned")
    print(f"archive  {t_archive:6.1f}s  {rate(archived, t_archive)}")
    print(f"prune    {t_prune:6.1f}s  {rate(pruned, t_prune)}")
    print(f"run      {total:6.1f}s  {rate(pruned, total)} archived+pruned end to end")
    print(f"baseline zstd of the same bytes: {t_zstd:.1f}s  {rate(archived, t_zstd)}; "
          f"archive throughput / baseline = {t_zstd / t_archive:.2f}x")
    print(f"store    before {before / 1e6:,.0f} MB, after prune + VACUUM ({t_vacuum:.1f}s) "
          f"{after / 1e6:,.0f} MB ({after / before:.2f}x)")
    print(f"archive  {archive_bytes / 1e6:,.1f} MB on disk ({data_bytes / 1e6:,.1f} MB data, "
          f"{(archive_bytes - data_bytes) / 1e6:,.1f} MB manifests) for {raw_bytes / 1e6:,.0f} MB "
          f"of NDJSON: {raw_bytes / data_bytes:.1f}:1")
    print(f"baseline one-frame zstd: {len(baseline) / 1e6:,.1f} MB; archive data / baseline = "
          f"{data_bytes / len(baseline):.2f}x, archive incl. manifests / baseline = "
          f"{archive_bytes / len(baseline):.2f}x")


if __name__ == "__main__":
    main()
