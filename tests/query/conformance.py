"""The ``SearchStore`` conformance suite: a backend's test subclasses ``SearchConformance``.

A subclass provides a ``store`` fixture (an empty ``Store``) and ``make_search(store)``; this
suite loads the same events into it and holds its search to the reference semantics
(:mod:`trailseal.query.scan`) on the documented examples and a set of queries whose values occur
in the data, in both orders and across pages — so SQLite, memory and PostgreSQL answer alike.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tests.query.conftest import LOG, RECEIVED, awkward_events, load
from tests.query.corpus import realistic_events
from tests.query.test_parser import documented_examples
from trailseal.core.keys import Keyring
from trailseal.query.parser import parse
from trailseal.query.scan import ScanSearch
from trailseal.query.search import SearchStore, iter_matches, position_of
from trailseal.storage.base import Store

NOW = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)


def queries(events: list[dict[str, Any]]) -> list[str]:
    """Documented examples plus queries that select something in ``events``."""
    actor = collections.Counter(e["actor"]["id"] for e in events).most_common(1)[0][0]
    story = events[50]
    return [*documented_examples(), f"actor.id:{actor}", "action:auth.*", "action:iam.*",
            f"request_id:{story['request_id']}", f"trace_id:{story['trace_id']}",
            "outcome:(denied OR failure) NOT deadlock", "time:>-30m", "metadata.ticket:*",
            "before.role:viewer", "rollback*", '"bad password"', "id:awk-*", "leaf_index:<100",
            "metadata.attempt:>1", "ÜBERPRÜFUNG", 'actor.id:"x\' OR \'1\'=\'1"', ""]


class SearchConformance:
    """Subclass with a ``store`` fixture and ``make_search``."""

    def make_search(self, store: Store) -> SearchStore:
        raise NotImplementedError

    @pytest.fixture
    def loaded(self, store: Store) -> Iterator[tuple[SearchStore, ScanSearch, list[dict[str, Any]]]]:
        events = realistic_events(700, seed=13, mean_gap_ms=8000) + awkward_events()
        search = self.make_search(store)
        load(store, events, Keyring.generate(f"test.example/{LOG}", RECEIVED), batch=128)
        yield search, ScanSearch(store), events
        search.close()

    def test_results_match_the_reference(self, loaded: tuple[SearchStore, ScanSearch, list[dict[str, Any]]]) -> None:
        search, reference, events = loaded
        for q in queries(events):
            node = parse(q, now=NOW)
            for order in ("newest", "oldest"):
                got = [e.leaf_index for e in search.search(LOG, node, order=order, limit=10_000)]  # type: ignore[arg-type]
                want = [e.leaf_index for e in reference.search(LOG, node, order=order, limit=10_000)]  # type: ignore[arg-type]
                assert got == want, (q, order)

    def test_pages_by_keyset(self, loaded: tuple[SearchStore, ScanSearch, list[dict[str, Any]]]) -> None:
        search, reference, _ = loaded
        node = parse("outcome:success time:<2026-11-01T01:00:00Z", now=NOW)
        paged = [e.leaf_index for e in iter_matches(search, LOG, node, order="newest", batch=33)]
        assert paged == [e.leaf_index for e in reference.search(LOG, node, limit=10_000)]
        first = search.search(LOG, node, limit=5)
        rest = search.search(LOG, node, limit=10_000, after=position_of(first[-1]))
        assert [e.leaf_index for e in first + rest] == paged

    def test_unknown_logs_are_empty(self, loaded: tuple[SearchStore, ScanSearch, list[dict[str, Any]]]) -> None:
        search, _, _ = loaded
        assert search.search("no-such-log", parse("")) == []
