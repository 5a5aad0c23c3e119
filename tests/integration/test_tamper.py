"""Invariant 4: direct edits to the SQLite file are found, with the exact position.

A log of 600 events is sequenced in batches of 100 (so there are checkpoints at 100, 200, ...),
copied, edited one way per test, and checked with the real ``trailseal verify`` command.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.factories import make_event
from tests.integration.conftest import run_cli
from trailseal.core.canonical import canonicalize, loads
from trailseal.core.checkpoint import Checkpoint, sign_checkpoint
from trailseal.core.compact import CompactRange
from trailseal.core.hashing import leaf_hash
from trailseal.core.keys import Keyring
from trailseal.core.tiles import TILE_HEIGHT, TILE_WIDTH
from trailseal.pipeline.prepare import prepare
from trailseal.server.runtime import Runtime, utc_now
from trailseal.server.settings import Settings


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    runtime = Runtime(Settings(data_dir=data, server_name="test.example"))
    for _ in range(6):
        batch = [prepare(make_event(), log="default", received_at=utc_now()) for _ in range(100)]
        runtime.sequencer.submit_sync("default", batch)
    runtime.close()
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "trailseal.db", isolation_level=None)


def verify(data: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = run_cli("verify", "--data", str(data), "--format", "json", *extra)
    return done.returncode, json.loads(done.stdout)


def kinds(report: dict) -> set[str]:  # type: ignore[type-arg]
    return {f["kind"] for f in report["findings"]}


def test_pristine_log_verifies(data: Path) -> None:
    code, report = verify(data)
    assert code == 0 and report["ok"] and report["leaves_checked"] == 600
    assert report["checkpoints_checked"] == 6


def test_one_byte_of_a_payload(data: Path) -> None:
    conn = db(data)
    body = bytes(conn.execute("SELECT body FROM entries WHERE leaf_index = 123").fetchone()[0])
    at = body.index(b"alice")
    conn.execute("UPDATE entries SET body = ? WHERE leaf_index = 123", (body[:at] + b"A" + body[at + 1 :],))
    code, report = verify(data)
    assert code == 1 and report["first_bad_leaf"] == 123
    assert "leaf-mismatch" in kinds(report)


def test_deleted_middle_row(data: Path) -> None:
    db(data).execute("DELETE FROM entries WHERE leaf_index = 250")
    code, report = verify(data)
    assert code == 1 and report["first_bad_leaf"] == 250
    assert "missing" in kinds(report)


def test_swapped_rows(data: Path) -> None:
    conn = db(data)
    cols = "event_id, leaf_hash, content_hash, body"
    a = conn.execute(f"SELECT {cols} FROM entries WHERE leaf_index = 10").fetchone()
    b = conn.execute(f"SELECT {cols} FROM entries WHERE leaf_index = 20").fetchone()
    conn.execute("UPDATE entries SET event_id = 'tmp' WHERE leaf_index = 20")
    conn.execute("UPDATE entries SET event_id=?, leaf_hash=?, content_hash=?, body=? WHERE leaf_index = 10", b)
    conn.execute("UPDATE entries SET event_id=?, leaf_hash=?, content_hash=?, body=? WHERE leaf_index = 20", a)
    code, report = verify(data)
    assert code == 1 and report["first_bad_leaf"] == 10


def test_dropped_tail_is_found_against_remaining_checkpoints(data: Path) -> None:
    db(data).execute("DELETE FROM entries WHERE leaf_index >= 550")
    code, report = verify(data)
    assert code == 1 and report["first_bad_leaf"] == 550


def test_dropped_tail_with_its_checkpoints_needs_a_trusted_checkpoint(data: Path, tmp_path: Path) -> None:
    conn = db(data)
    trusted = tmp_path / "trusted.txt"
    trusted.write_bytes(bytes(conn.execute("SELECT note FROM checkpoints WHERE tree_size = 600").fetchone()[0]))
    conn.execute("DELETE FROM entries WHERE leaf_index >= 500")
    conn.execute("DELETE FROM checkpoints WHERE tree_size > 500")
    assert verify(data)[0] == 0, "without outside knowledge a clean cut looks like a shorter log"
    code, report = verify(data, "--trusted-checkpoint", str(trusted))
    assert code == 1 and report["first_bad_leaf"] == 500
    assert "truncated" in kinds(report)


def _rewrite_tiles(conn: sqlite3.Connection) -> None:
    """Recompute every stored tile from the leaf hashes column, as a careful attacker would."""
    leaves = [bytes(h) for (h,) in conn.execute("SELECT leaf_hash FROM entries ORDER BY leaf_index")]
    tiles: dict[tuple[int, int], bytearray] = {}

    def visit(level: int, index: int, digest: bytes) -> None:
        if level % TILE_HEIGHT == 0:
            tiles.setdefault((level // TILE_HEIGHT, index // TILE_WIDTH), bytearray()).extend(digest)

    CompactRange().extend(leaves, visit)
    conn.execute("DELETE FROM tiles")
    for (level, index), blob in tiles.items():
        conn.execute("INSERT INTO tiles VALUES ('default', ?, ?, ?)", (level, index, bytes(blob)))


def test_edited_row_with_recomputed_leaf_hash_and_tiles(data: Path) -> None:
    conn = db(data)
    body = loads(bytes(conn.execute("SELECT body FROM entries WHERE leaf_index = 321").fetchone()[0]))
    body["outcome"] = "failure"
    new = canonicalize(body)
    conn.execute("UPDATE entries SET body = ?, leaf_hash = ? WHERE leaf_index = 321", (new, leaf_hash(new)))
    _rewrite_tiles(conn)
    code, report = verify(data)
    assert code == 1
    ranges = [f["leaf_range"] for f in report["findings"] if f["kind"] == "root-mismatch"]
    assert ranges[0] == [300, 400], "the smallest signed range containing leaf 321"
    assert report["first_bad_leaf"] == 300


def test_replaced_checkpoint(data: Path) -> None:
    conn = db(data)
    row = conn.execute("SELECT tree_size, root_hash FROM checkpoints WHERE tree_size = 400").fetchone()
    forger = Keyring.generate("test.example/default", "2026-01-01T00:00:00Z")
    forged = sign_checkpoint(Checkpoint("test.example/default", row[0], bytes(row[1])), forger.signer)
    conn.execute("UPDATE checkpoints SET note = ? WHERE tree_size = 400", (forged,))
    code, report = verify(data)
    assert code == 1 and "bad-checkpoint" in kinds(report)
    assert any("400" in f["detail"] for f in report["findings"])


def test_checkpoint_with_altered_root(data: Path) -> None:
    conn = db(data)
    note = bytes(conn.execute("SELECT note FROM checkpoints WHERE tree_size = 200").fetchone()[0])
    lines = note.split(b"\n")
    lines[2] = lines[2][:-4] + (b"AAA=" if lines[2][-4:] != b"AAA=" else b"BBB=")
    conn.execute("UPDATE checkpoints SET note = ? WHERE tree_size = 200", (b"\n".join(lines),))
    code, report = verify(data)
    assert code == 1 and "bad-checkpoint" in kinds(report)
