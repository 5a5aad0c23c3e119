from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.conformance import LOG, ORIGIN, StoreConformance, append_leaves
from trailseal.storage.sqlite import SQLiteStore
from trailseal.storage.sqlite.migrations import MIGRATIONS


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "t.db")
        yield store
        store.close()


def test_durability_pragmas(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    conn = sqlite3.connect(tmp_path / "t.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: check the store's own writer.
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_migrations_are_numbered_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    store.ensure_log(LOG, ORIGIN, "t")
    append_leaves(store, LOG, 3)
    store.close()
    again = SQLiteStore(path)  # re-opening applies nothing new and keeps the data
    assert again.migrate() == len(MIGRATIONS)
    assert again.tree_size(LOG) == 3
    version = sqlite3.connect(path).execute(
        "SELECT MAX(version) FROM schema_migrations WHERE component = 'core'"
    ).fetchone()[0]
    assert version == len(MIGRATIONS)
    again.close()


def test_data_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    store.ensure_log(LOG, ORIGIN, "t")
    record = append_leaves(store, LOG, 300)
    store.close()
    reopened = SQLiteStore(path)
    assert reopened.latest_checkpoint(LOG) == record
    assert reopened.tree_size(LOG) == 300
    reopened.close()


def _open_and_close(path: str) -> None:
    SQLiteStore(path).close()


def test_concurrent_first_opens_migrate_once(tmp_path: Path) -> None:
    import multiprocessing

    path = str(tmp_path / "new.db")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_and_close, args=(path,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    rows = sqlite3.connect(path).execute("SELECT component, version FROM schema_migrations").fetchall()
    assert sorted(rows) == [("core", n) for n in range(1, len(MIGRATIONS) + 1)]


def test_checkpoints_run_in_the_background_not_in_commits(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteStore(path)
    store.ensure_log(LOG, ORIGIN, "2026-11-28T10:00:00Z")
    store.checkpoint_in_background(interval=0.05)
    assert store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    empty = path.stat().st_size
    for _ in range(30):  # well past SQLite's 1,000-page automatic checkpoint
        append_leaves(store, LOG, 200)
    # The writer never checkpoints, so only the background thread can have copied the WAL's
    # pages into the database file.
    deadline = time.monotonic() + 10
    while path.stat().st_size < empty + 1_000_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size >= empty + 1_000_000
    assert store.tree_size(LOG) == 6000
    store.close()
    assert SQLiteStore(path).tree_size(LOG) == 6000
