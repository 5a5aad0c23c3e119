"""A SQLite store loaded once per session with realistic events plus hand-made awkward ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.query.corpus import realistic_events
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.query.scan import ScanSearch
from trailseal.query.sqlite_search import SQLiteSearch, for_store
from trailseal.sequencer.log import LogSequencer, Request
from trailseal.storage.sqlite import SQLiteStore

NOW = dt.datetime(2026, 11, 1, 6, 0, tzinfo=dt.UTC)  # the corpus runs from 00:00 to ~05:30
RECEIVED = "2026-11-01T06:00:00.000000Z"
LOG = "default"


def awkward_events() -> list[dict[str, Any]]:
    """Events whose values break naive escaping: SQL, GLOB, CSV, CEF, FTS syntax, unicode."""
    base = {"time": "2026-11-01T03:00:00.000000Z", "outcome": "success",
            "source": {"service": "edge", "environment": "prod"}}
    return [
        {**base, "id": "awk-sql-1", "actor": {"id": "x' OR '1'='1"}, "action": "db.table.select",
         "resource": {"type": "table", "id": "'; DROP TABLE entries; --"}},
        {**base, "id": "awk-glob-2", "actor": {"id": "carol@example.com"}, "action": "storage.object.get",
         "resource": {"type": "object", "id": "obj-[1]*?", "name": "report [draft]*?.pdf"}},
        {**base, "id": "awk-cef-3", "actor": {"id": "weird|actor\\name=x", "ip": "2001:db8::7"},
         "action": "org.settings.update", "resource": {"type": "setting", "id": "a=b|c\\d"},
         "reason": "line one\nline two\r\nwith = and | and \\ and \"quotes\"",
         "before": {"sso": {"enforced": False}, "domains": ["a.example"]},
         "after": {"sso": {"enforced": True}, "domains": ["a.example", "b.example"]}},
        {**base, "id": "awk-csv-4", "actor": {"id": "=HYPERLINK(\"http://evil\")"},
         "action": "support.customer.view", "resource": {"type": "customer", "id": "+1-555-0100"},
         "reason": "'quoted start, comma, \"double\"", "outcome": "denied"},
        {**base, "id": "awk-unicode-5", "actor": {"id": "zoë@exämple.com"}, "action": "auth.login",
         "resource": {"type": "session", "id": "sess-日本-1"}, "reason": "Überprüfung 🚀 NEAR(a b) AND OR",
         "outcome": "failure"},
        {**base, "id": "awk-meta-6", "actor": {"id": "svc-meta", "type": "service"},
         "action": "ci.pipeline.run", "resource": {"type": "pipeline", "id": "pl-1"},
         "metadata": {"attempt": 3, "ratio": 1.5, "flag": True, "code": "3", "nested": {"k-1": "v"},
                      "list": ["x", 1], "none": None}},
        {**base, "id": "awk-meta-7", "actor": {"id": "svc-meta", "type": "service"},
         "action": "ci.pipeline.run", "resource": {"type": "pipeline", "id": "pl-2"},
         "metadata": {"attempt": 1, "flag": False, "code": 3}},
    ]


@dataclass
class Loaded:
    """The shared store, its search, the reference search and the events as sent."""

    store: SQLiteStore
    search: SQLiteSearch
    reference: ScanSearch
    events: list[dict[str, Any]]
    now: dt.datetime
    keyring: Keyring


def load(store: SQLiteStore, events: Sequence[dict[str, Any]], keyring: Keyring,
         log: str = LOG, batch: int = 500) -> LogSequencer:
    """Sequence ``events`` into ``store`` in batches (each batch signs a checkpoint)."""
    store.ensure_log(log, f"test.example/{log}", RECEIVED)
    seq = LogSequencer(store, log, f"test.example/{log}", keyring, lambda: RECEIVED)
    prepared = [prepare(e, log=log, received_at=RECEIVED) for e in events]
    for start in range(0, len(prepared), batch):
        seq.commit([Request(prepared[start : start + batch])])
    return seq


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    events = realistic_events(4000, seed=7, mean_gap_ms=5000) + awkward_events()
    store = SQLiteStore(Path(tmp_path_factory.mktemp("query")) / "trailseal.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    search = for_store(store)
    load(store, events, keyring)
    yield Loaded(store, search, ScanSearch(store), events, NOW, keyring)
    store.close()
