from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage.conformance import StoreConformance
from trailseal.storage.memory import MemoryStore


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        store = MemoryStore()
        yield store
        store.close()
