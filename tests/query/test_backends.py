"""The search conformance suite on each backend (PostgreSQL adds its own subclass)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.query.conformance import SearchConformance
from trailseal.query import search_for
from trailseal.query.scan import ScanSearch
from trailseal.query.search import SearchStore
from trailseal.query.sqlite_search import SQLiteSearch
from trailseal.storage.base import Store
from trailseal.storage.memory import MemoryStore
from trailseal.storage.sqlite import SQLiteStore


class TestSQLiteSearch(SearchConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = SQLiteStore(tmp_path / "trailseal.db")
        yield store
        store.close()

    def make_search(self, store: Store) -> SearchStore:
        search = search_for(store)
        assert isinstance(search, SQLiteSearch)
        return search


class TestMemorySearch(SearchConformance):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        yield MemoryStore()

    def make_search(self, store: Store) -> SearchStore:
        search = search_for(store)
        assert isinstance(search, ScanSearch)
        return search
