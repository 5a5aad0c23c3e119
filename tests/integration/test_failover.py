"""Three ``trailseal serve`` nodes on one PostgreSQL under load; kill -9 the sequencer repeatedly.

After every takeover the new sequencer must continue the same tree: every acknowledged event is
stored exactly once at the leaf index its receipt gave, leaves are contiguous, every checkpoint a
client ever saw (and every stored one) has the root of that prefix of the one leaf sequence — so
each is consistent with every earlier one — and ``trailseal verify`` passes.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

from tests.integration.conftest import run_cli
from tests.integration.scaleout import Load, leader_of, node, pg_url, start_all, stop_all  # noqa: F401
from trailseal.core.checkpoint import open_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.keys import parse_public_json
from trailseal.core.note import VerifierSet
from trailseal.storage.postgres import PostgresStore


def test_kill9_the_sequencer_repeatedly(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    data = tmp_path / "data"  # shared: the nodes share the signing keys
    nodes = [node(data, pg_url) for _ in range(3)]
    start_all(nodes)
    kills = 0
    restarts: list[threading.Thread] = []
    try:
        with Load([n.url for n in nodes], clients=4) as load:
            time.sleep(1.5)
            for _ in range(3):
                if len(nodes) - sum(t.is_alive() for t in restarts) < 2:
                    for thread in restarts:  # a ready survivor must remain to take over
                        thread.join()
                victim, epoch = leader_of(nodes, pg_url)
                before = len(load.acked)
                victim.kill9()
                kills += 1
                started = time.monotonic()
                successor, _ = leader_of(nodes, pg_url, timeout=10, after_epoch=epoch)
                takeover = time.monotonic() - started
                assert successor is not victim and takeover < 5, f"takeover took {takeover:.1f}s"
                restarts.append(threading.Thread(target=victim.start))  # rejoins as a follower
                restarts[-1].start()
                time.sleep(1.5)
                assert len(load.acked) > before, "the cluster acknowledged events after the kill"
            time.sleep(1)
        assert load.errors == []
        acked = dict(load.acked)
        seen_checkpoints = set(load.checkpoints)
    finally:
        for thread in restarts:
            thread.join()
        stop_all(nodes)
    assert kills == 3 and len(acked) > 500

    store = PostgresStore(pg_url, migrate=False)
    try:
        with store.connection() as conn:
            rows = conn.execute("SELECT event_id, leaf_index FROM leaves WHERE log = 'default'").fetchall()
        stored = dict(rows)
        assert len(stored) == len(rows), "an event id is stored twice"
        assert sorted(stored.values()) == list(range(len(rows))), "leaf indexes are not contiguous"
        wrong = [i for i, r in acked.items() if stored.get(i) != r["leaf_index"]]
        assert wrong == [], f"{len(wrong)} acknowledged events lost or moved, e.g. {wrong[:3]}"

        verifiers = VerifierSet(list(parse_public_json((data / "keys" / "default.pub.json").read_text())))
        roots: dict[int, bytes] = {}
        for note in seen_checkpoints | {r.note.decode() for r in store.iter_checkpoints("default")}:
            checkpoint, _ = open_checkpoint(note.encode(), verifiers)
            assert roots.setdefault(checkpoint.tree_size, checkpoint.root_hash) == checkpoint.root_hash, \
                f"two different roots signed for tree size {checkpoint.tree_size}: a fork"
        tree = CompactRange()
        for entry in store.iter_entries("default"):
            tree.append(entry.leaf_hash)
            expected = roots.get(tree.end)
            assert expected is None or expected == tree.root_hash(), \
                f"checkpoint at size {tree.end} is not a prefix of the log"
        assert max(roots) == tree.end
    finally:
        store.close()

    verified = run_cli("verify", "--store", pg_url, "--data", str(data), "--format", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["leaves_checked"] == len(rows)
    assert base64.b64decode(next(iter(acked.values()))["leaf_hash"])
