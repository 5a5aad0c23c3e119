from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.storage.retention_conformance import RetentionStoreConformance
from trailseal.storage.memory import MemoryStore


class TestMemoryRetentionStore(RetentionStoreConformance):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        yield MemoryStore()
