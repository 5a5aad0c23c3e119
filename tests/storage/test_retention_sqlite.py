from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.retention_conformance import RetentionStoreConformance
from trailseal.storage.sqlite import SQLiteStore
from trailseal.storage.sqlite.retention import MIGRATIONS


class TestSQLiteRetentionStore(RetentionStoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "t.db")
        yield store
        store.close()


def test_own_migration_component(tmp_path: Path) -> None:
    from trailseal.storage.retention import retention_store

    store = SQLiteStore(tmp_path / "t.db")
    retention_store(store)
    version = sqlite3.connect(tmp_path / "t.db").execute(
        "SELECT MAX(version) FROM schema_migrations WHERE component = 'retention'").fetchone()[0]
    assert version == len(MIGRATIONS)
    store.close()
