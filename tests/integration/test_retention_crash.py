"""kill -9 in the middle of ``trailseal retention apply``, then a rerun: a consistent end state.

The run is slowed down (small segments and batches, a pause between them) so the test can kill
the real subprocess once during archiving and once during pruning. After each kill no event is
pruned without being archived; the rerun resumes the same run and ends exactly where an
uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, TRAILSEAL, run_cli
from tests.retention.conftest import Year, expected_pruned, shared_year

SLOW = {"TRAILSEAL_RETENTION_PAUSE_MS": "120", "TRAILSEAL_RETENTION_SEGMENT_LEAVES": "128",
        "TRAILSEAL_RETENTION_PRUNE_BATCH": "40"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Year:
    return shared_year(tmp_path_factory)


@pytest.fixture
def data(pristine: Year, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine.data, copy)
    return copy


def db(data: Path) -> sqlite3.Connection:
    return sqlite3.connect(data / "trailseal.db", isolation_level=None)


def count(data: Path, sql: str) -> int:
    try:
        return int(db(data).execute(sql).fetchone()[0] or 0)
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def start_apply(data: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, **SLOW)
    return subprocess.Popen([*TRAILSEAL, "retention", "apply", "--data", str(data), "--log", "default"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def kill_when(proc: subprocess.Popen[bytes], ready: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"apply finished before the kill: {proc.stdout.read()!r}"  # type: ignore[union-attr]
        if ready():  # type: ignore[operator]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the run never reached the kill point")


def assert_consistent(data: Path) -> None:
    """No event pruned without a prune record inside a recorded segment that verifies."""
    conn = db(data)
    end = int(conn.execute("SELECT COALESCE(MAX(end_index), 0) FROM retention_segments "
                           "WHERE log = 'default'").fetchone()[0])
    tombstones = {i for (i,) in conn.execute(
        "SELECT leaf_index FROM entries WHERE log = 'default' AND substr(body, 1, 1) = x'00'")}
    records = {i for (i,) in conn.execute(
        "SELECT leaf_index FROM retention_pruned WHERE log = 'default' AND state = 'pruned'")}
    assert tombstones == records
    assert all(i < end for i in tombstones), "an event was pruned without being archived"
    if end:
        done = run_cli("archive", "verify", "--data", str(data), "--log", "default", "--format", "json")
        report = json.loads(done.stdout)
        recorded = {s for (s,) in conn.execute("SELECT segment_id FROM retention_segments")}
        good = {s["segment"] for s in report["segments"] if s["ok"]}
        assert recorded <= good, report


def rerun_and_check(data: Path) -> None:
    # Default settings (no pause, another segment size): a segment the killed run sealed but did
    # not record is adopted, never overlapped.
    done = run_cli("retention", "apply", "--data", str(data), "--log", "default", "--format", "json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)["runs"][0]
    assert run["resumed"] == 1 and run["state"] == "done"
    assert_consistent(data)
    conn = db(data)
    pruned = {e for (e,) in conn.execute(
        "SELECT event_id FROM entries WHERE log = 'default' AND substr(body, 1, 1) = x'00'")}
    assert pruned == expected_pruned("default")
    runs = conn.execute("SELECT run_id, state, recorded FROM retention_runs").fetchall()
    assert runs == [(run["run_id"], "done", 1)]
    # exactly one audit event for the run, however many times it was started
    bodies = [json.loads(b) for (b,) in conn.execute("SELECT body FROM entries WHERE log = '_system'")]
    assert [b["id"] for b in bodies if b["action"] == "retention.run"] == [f"retention-run-{run['run_id']}"]
    check = run_cli("verify", "--data", str(data), "--log", "default")
    assert check.returncode == 0, check.stderr


def test_kill_during_archiving(data: Path) -> None:
    proc = start_apply(data)
    archive = data / "archive" / "default"
    kill_when(proc, lambda: len(list(archive.glob("*.manifest"))) >= 3 if archive.is_dir() else False)
    assert count(data, "SELECT COUNT(*) FROM retention_pruned") == 0
    assert count(data, "SELECT COUNT(*) FROM retention_runs WHERE state = 'running'") == 1
    assert_consistent(data)
    rerun_and_check(data)


def test_kill_during_pruning(data: Path) -> None:
    proc = start_apply(data)
    kill_when(proc, lambda: count(data, "SELECT COUNT(*) FROM retention_pruned") >= 80)
    pruned = count(data, "SELECT COUNT(*) FROM retention_pruned")
    assert 0 < pruned < len(expected_pruned("default"))
    assert_consistent(data)
    rerun_and_check(data)
