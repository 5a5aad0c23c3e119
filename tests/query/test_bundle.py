"""Evidence bundles: they verify offline; any changed byte of an event, proof or checkpoint fails
and names the event; pruning the live store does not touch them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.query.conftest import LOG, RECEIVED, Loaded, awkward_events, load
from tests.query.corpus import realistic_events
from tests.query.test_search import prune
from trailseal.core.keys import Keyring
from trailseal.core.note import format_verifier_key
from trailseal.query.bundle import write_bundle
from trailseal.query.parser import parse
from trailseal.query.sqlite_search import for_store
from trailseal.storage.sqlite import SQLiteStore
from trailseal.verify.bundle import BundleReport, verify_bundle


def keys(keyring: Keyring) -> list[str]:
    return [format_verifier_key(k.verifier) for k in keyring.keys]


def make_bundle(store: SQLiteStore, keyring: Keyring, q: str, **options: int) -> bytes:
    return b"".join(write_bundle(store, for_store(store), LOG, parse(q), q=q,
                                 verifier_keys=keys(keyring), created_at=RECEIVED, **options))


def test_a_bundle_verifies_and_reports_every_event(loaded: Loaded) -> None:
    data = make_bundle(loaded.store, loaded.keyring, "outcome:denied action:auth.*")
    report = verify_bundle(data)
    assert report.ok, report.to_json()
    assert report.keys == "bundle" and report.tree_size == loaded.store.tree_size(LOG)
    wanted = sorted(e.leaf_index for e in loaded.search.search(LOG, parse("outcome:denied action:auth.*"), limit=10_000))
    assert sorted(e.leaf_index for e in report.events) == wanted and len(wanted) > 5
    assert all(e.ok and e.event_id for e in report.events)
    # The checkpoints that first covered the events come with consistency proofs.
    assert len(report.checkpoints) > 1 and all(c.ok for c in report.checkpoints)
    assert verify_bundle(data, loaded.keyring.verifiers()).ok  # pinned keys


def test_wrong_keys_truncation_and_emptiness_fail(loaded: Loaded) -> None:
    data = make_bundle(loaded.store, loaded.keyring, "id:awk-*")
    other = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    report = verify_bundle(data, other.verifiers())
    assert not report.ok and not any(e.ok for e in report.events) and len(report.events) == 7
    assert all(e.event_id and e.event_id.startswith("awk-") for e in report.events)
    lines = data.splitlines(keepends=True)
    assert not verify_bundle(b"".join(lines[:-2])).ok  # an event and the trailer cut off
    assert "trailer" in " ".join(verify_bundle(b"".join(lines[:-1])).problems)
    assert not verify_bundle(b"").ok and not verify_bundle(b"{}\n").ok
    empty = make_bundle(loaded.store, loaded.keyring, "id:no-such-event")
    assert not verify_bundle(empty).ok and "no events" in verify_bundle(empty).problems[-1]


def _failing(report: BundleReport) -> set[tuple[int | None, str | None]]:
    return {(e.leaf_index, e.event_id) for e in report.events if not e.ok}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[int, tuple[int, str]]]:
    """A 2-event bundle with an earlier checkpoint, and which event each line carries."""
    store = SQLiteStore(Path(tmp_path_factory.mktemp("bundle")) / "t.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    events = awkward_events()
    load(store, events[:3], keyring, batch=2)  # checkpoints at sizes 2 and 3
    load(store, events[3:], keyring)
    data = make_bundle(store, keyring, "id:awk-sql-1 OR id:awk-unicode-5")
    store.close()
    owners: dict[int, tuple[int, str]] = {}
    for number, line in enumerate(data.split(b"\n")):
        if line.startswith(b'{"event":'):
            record = orjson.loads(line)
            owners[number] = (record["leaf_index"], record["event"]["id"])
    return data, owners


def test_every_changed_byte_of_an_event_or_proof_fails_naming_it(small: tuple[bytes, dict[int, tuple[int, str]]]) -> None:
    data, owners = small
    assert verify_bundle(data).ok and len(owners) == 2
    lines = data.split(b"\n")
    offset = 0
    flips = 0
    for number, line in enumerate(lines):
        if number in owners:
            for at in range(len(line)):
                for mask in (0x01, 0x20):
                    tampered = bytearray(data)
                    tampered[offset + at] ^= mask
                    report = verify_bundle(bytes(tampered))
                    assert not report.ok, (number, at, mask)
                    failing = _failing(report)
                    leaf, ident = owners[number]
                    assert any(f[0] == leaf or f[1] == ident for f in failing), (number, at, failing)
                    flips += 1
        offset += len(line) + 1
    assert flips > 2000


def test_every_changed_byte_of_a_checkpoint_fails_the_events_it_covers(small: tuple[bytes, dict[int, tuple[int, str]]]) -> None:
    data, owners = small
    lines = data.split(b"\n")
    offset = 0
    checked = 0
    for line in lines:
        if line.startswith(b'{"checkpoint":'):
            size = orjson.loads(line)["tree_size"]
            covered = {owner for owner in owners.values() if owner[0] < size}
            for at in range(0, len(line)):
                tampered = bytearray(data)
                tampered[offset + at] ^= 0x01
                report = verify_bundle(bytes(tampered))
                assert not report.ok, (size, at)
                failing = _failing(report)
                # the events this checkpoint vouches for are named (the main one: all of them)
                assert covered <= failing or not failing.isdisjoint(covered), (size, at, failing)
                checked += 1
        offset += len(line) + 1
    assert checked > 300


def test_header_changes_fail_or_touch_only_informational_fields(small: tuple[bytes, dict[int, tuple[int, str]]]) -> None:
    data, _ = small
    header = data.split(b"\n")[0]
    informational = orjson.loads(header)
    spans = [(header.index(orjson.dumps(informational[k])), len(orjson.dumps(informational[k])))
             for k in ("created_at", "query")]
    for at in range(len(header)):
        tampered = bytearray(data)
        tampered[at] ^= 0x01
        report = verify_bundle(bytes(tampered))
        inside = any(start < at < start + size - 1 for start, size in spans)
        assert inside or not report.ok, at


def test_bundles_survive_pruning_and_carry_pruned_leaves(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    load(store, realistic_events(300, seed=11), keyring, batch=64)
    before = make_bundle(store, keyring, "leaf_index:[10 TO 30]")
    assert verify_bundle(before).ok
    prune(store, list(range(0, 25)))
    assert verify_bundle(before, keyring.verifiers()).ok  # exported bytes do not depend on the store
    after = make_bundle(store, keyring, "leaf_index:[10 TO 30]")
    report = verify_bundle(after, keyring.verifiers())
    assert report.ok and len(report.events) == 21
    assert [e.pruned for e in report.events].count(True) == 15
    assert all("pruned" in e.detail for e in report.events if e.pruned)
    store.close()


def test_bundles_only_hold_events_under_their_checkpoint(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    load(store, realistic_events(100, seed=5), keyring)
    chunks = write_bundle(store, for_store(store), LOG, parse(""), q="", verifier_keys=keys(keyring),
                          created_at=RECEIVED, limit=1000)
    head = [next(chunks), next(chunks)]
    load(store, realistic_events(50, seed=6), keyring)  # ingest continues mid-export
    report = verify_bundle(b"".join(head) + b"".join(chunks))
    assert report.ok and report.tree_size == 100 and len(report.events) == 100
    store.close()
