"""Pipeline benchmark (the `pipeline` issue). Run: `.venv/bin/python bench/pipeline.py [--quick]`.

Ingest events/s through the pipeline and the sequencer's commit path (SQLite, WAL,
``synchronous=FULL``), in requests of 100 events, with every stage on — a realistic rule set:
20 schemas (the 9 built-ins + 11 registered), 10 redaction rules (drop, mask, tokenize, encrypt
for a subject), detectors on 3 free-text fields, producer tracking — against the same run with the
stages off (parse, server fields, seal). Prints both rates and their ratio (target >= 0.7), and
the CPU time per event spent in ``Pipeline.process`` (the stages) on each side. Each run opens a
fresh store and pipeline; the tenant's schemas are compiled before the clock starts, as a running
server does once.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from tests.factories import make_event  # noqa: E402

from trailseal.cli.serve import tune_gc  # noqa: E402
from trailseal.core.keys import Keyring  # noqa: E402
from trailseal.pipeline.service import open_pipeline  # noqa: E402
from trailseal.sequencer.log import LogSequencer, Request  # noqa: E402
from trailseal.storage.sqlite import SQLiteStore  # noqa: E402

NOW = "2026-11-28T10:15:31.000000Z"
EXTRA_SCHEMAS = [
    "payments.refund.*", "payments.charge.*", "storage.bucket.*", "network.firewall.*", "vault.secret.*",
    "ci.pipeline.*", "support.ticket.*", "crm.contact.*", "feature.flag.*", "db.schema.*", "queue.topic.*",
]
RULES = [
    {"path": "/metadata/ssn", "action": "drop"},
    {"path": "/metadata/card_token", "action": "drop"},
    {"path": "/actor/ip", "action": "mask"},
    {"path": "/metadata/customer_email", "action": "tokenize"},
    {"path": "/metadata/phone", "action": "tokenize"},
    {"path": "/after/email", "action": "encrypt", "subject": "/resource/id"},
    {"path": "/after/address", "action": "encrypt", "subject": "/resource/id"},
    {"path": "/before/password", "action": "drop"},
    {"path": "/after/password", "action": "drop"},
    {"path": "/metadata/*/secret", "action": "mask"},
]
POLICY: dict[str, Any] = {
    "redaction": {"rules": RULES, "free_text": ["/reason", "/actor/user_agent", "/metadata/note"]},
}


def events(total: int) -> list[dict[str, Any]]:
    """A mix over the 20 schema keys; a quarter carry PII in rule fields or free text."""
    actions = ["iam.role.update", "auth.login", "deploy.rollout.start", "data.export", "k8s.pods.create",
               "config.update", "billing.plan.change", "approval.grant", "resource.tag.add"]
    actions += [key[:-1] + "update" for key in EXTRA_SCHEMAS]
    out = []
    for n in range(total):
        event = make_event(action=actions[n % len(actions)], producer={"id": f"svc-{n % 7}", "seq": n // 7})
        event["metadata"] = {"ticket": f"INC-{n}", "note": "rotated per runbook", "attempt": 1}
        if n % 4 == 0:
            event["metadata"].update({"customer_email": f"c{n}@example.com", "ssn": "078-05-1120"})
            event["after"] = {"role": "admin", "email": f"user{n}@example.org"}
            event["resource"] = {"type": "customer", "id": f"customer-{n % 200}"}  # returning subjects
            event["reason"] = f"requested by ops{n}@example.com, call +44 20 7946 0{n % 1000:03d}"
        out.append(event)
    return out


def run(stages_on: bool, raws: list[dict[str, Any]], batch: int = 100) -> tuple[float, float]:
    """(events/s end to end, CPU µs per event in ``Pipeline.process``)."""
    tmp = Path(tempfile.mkdtemp(prefix="ts-bench-pipeline-"))
    try:
        store = SQLiteStore(tmp / "trailseal.db")
        store.ensure_log("default", "bench/default", NOW)
        pipeline = open_pipeline(store, tmp, None, enabled=stages_on, node="bench-1")
        if stages_on:
            pipeline.set_policy("default", POLICY)
            for key in EXTRA_SCHEMAS:
                pipeline.registry.register("default", key, {"type": "object", "properties": {
                    "metadata": {"type": "object", "properties": {"ticket": {"type": "string", "maxLength": 64},
                                                                  "attempt": {"type": "integer", "minimum": 0}}}}})
            assert len(pipeline.registry.versions("default")) == 20
            # A running server compiles its tenants' schemas once; do it before the clock starts.
            pipeline.registry.resolve("default", "bench.warm.up")
        seq = LogSequencer(store, "default", "bench/default", Keyring.generate("bench/default", NOW), lambda: NOW)
        stages = 0.0
        started = time.perf_counter()
        for start in range(0, len(raws), batch):
            context = pipeline.context("default", NOW)
            cpu = time.process_time()
            outcome = pipeline.process(raws[start : start + batch], context)
            stages += time.process_time() - cpu
            seq.commit([Request(outcome.prepared)])
            pipeline.committed(outcome, NOW)
        rate = len(raws) / (time.perf_counter() - started)
        assert store.tree_size("default") == len(raws)
        pipeline.close()
        store.close()
        return rate, stages / len(raws) * 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    args = parser.parse_args()
    total = 4_000 if args.quick else 20_000
    raws = events(total)
    run(True, raws[:1000])  # warm up (imports, regexes, schema compilation)
    # The garbage collector as `trailseal serve` runs it (gc.freeze() after start-up, generation-0
    # threshold 20,000). Freezing also takes the bench's own 20,000 held request events out of
    # every collection: a server holds one request at a time, and collections walking the
    # harness's events would be charged to whichever side allocates more.
    tune_gc()
    rounds = 1 if args.quick else 5
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for _ in range(rounds):  # alternate, so drift on a shared machine hits both sides alike
        for stages_on in (True, False):
            results[stages_on].append(run(stages_on, raws))
    on, on_us = max(results[True])
    off, off_us = max(results[False])
    print(f"pipeline: {total} events in requests of 100, SQLite WAL + synchronous=FULL, best of {rounds}"
          " (alternated), the server's GC settings")
    print(f"  stages on  (20 schemas, 10 rules, detectors on 3 free-text fields): {on:10,.0f} events/s"
          f"  (stages {on_us:5.1f} µs CPU/event)")
    print(f"  stages off (parse, server fields, seal):                            {off:10,.0f} events/s"
          f"  (stages {off_us:5.1f} µs CPU/event)")
    print(f"  ratio on/off: {on / off:.2f}  (target >= 0.70)")


if __name__ == "__main__":
    main()
