"""The SQLite search against the reference evaluator; injection attempts; pagination; indexing."""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.query.conftest import LOG, RECEIVED, Loaded, awkward_events, load
from tests.query.corpus import realistic_events
from tests.query.test_parser import documented_examples
from trailseal.core.errors import FormatError
from trailseal.core.keys import Keyring
from trailseal.query.ast import Node
from trailseal.query.parser import parse
from trailseal.query.scan import ScanSearch, _Row, matches
from trailseal.query.search import iter_matches, position_of, search_page
from trailseal.query.sqlite_search import SQLiteSearch, for_store
from trailseal.storage.base import PruneMark
from trailseal.storage.sqlite import SQLiteStore


class Oracle:
    """The reference semantics over pre-parsed rows (fast enough for property tests)."""

    def __init__(self, loaded: Loaded) -> None:
        self.rows = [_Row(e) for e in loaded.store.iter_entries(LOG)]

    def find(self, node: Node) -> list[int]:
        hits = [r.entry for r in self.rows if matches(node, r)]
        hits.sort(key=position_of, reverse=True)
        return [e.leaf_index for e in hits]


@pytest.fixture(scope="module")
def oracle(loaded: Loaded) -> Oracle:
    return Oracle(loaded)


def sql_hits(loaded: Loaded, node: Node) -> list[int]:
    return [e.leaf_index for e in loaded.search.search(LOG, node, limit=100_000)]


def corpus_queries(loaded: Loaded) -> list[str]:
    """Queries whose values occur in the corpus (top actors, a request, a trace, ...)."""
    events = loaded.events
    actors = collections.Counter(e["actor"]["id"] for e in events).most_common()
    with_parent = next(e for e in events if "parent_span_id" in e.get("metadata", {}))
    story = events[100]
    return [
        f"actor.id:{actors[0][0]}", f"actor.id:{actors[-1][0]}", f"actor:{actors[3][0]} outcome:success",
        "action:auth.login", "action:iam.*", "action:iam.role.*", "action:k8s.*.update",
        "action:(iam.user.create OR iam.user.delete OR kms.key.rotate)",
        "outcome:denied", "outcome:(denied OR failure) NOT source.environment:prod",
        "resource.type:bucket AND action:storage.bucket.*", "resource.type:role -outcome:success",
        f"request_id:{story['request_id']}", f"trace_id:{story['trace_id']}",
        f"span_id:{with_parent['span_id']}", f"metadata.parent_span_id:{with_parent['metadata']['parent_span_id']}",
        f"resource.id:{story['resource']['id']}", f"producer.id:{story['producer']['id']}",
        f"producer.id:{story['producer']['id']} AND producer.seq:[5 TO 40]",
        "metadata.namespace:kube-system", "metadata.ticket:*", "NOT metadata.ticket:*",
        "metadata.ticket:INC-1*", "before.role:viewer AND after.role:admin", "after.replicas:>=6",
        "before.enabled:true", "before.revision:>30 OR after.revision:<3",
        "time:>-2h", "time:[2026-11-01T01:00:00Z TO 2026-11-01T01:30:00Z}", "time:<-5h",
        "received_at:2026-11-01", "leaf_index:[100 TO 120]", "leaf_index:>3990",
        "deadlock", '"break-glass"', "rollback*", "INC", '"ticket SUP"', "token* outcome:failure",
        "deadlock OR outcome:unknown", "NOT deadlock action:k8s.*", "source.region:eu-*",
        "actor.ip:10.* OR actor.ip:2001*", "actor.type:service AND source.environment:(staging OR dev)",
        "actor.user_agent:kubectl*", "source.host:*-3", "reason:*", "reason:bad\\ password",
        "metadata.attempt:3", 'metadata.code:"3"', "metadata.code:3", "metadata.attempt:>1",
        "metadata.ratio:1.5", "metadata.flag:true", "metadata.flag:false", "metadata.nested.k-1:v",
        "metadata.none:*", "metadata.list:*", "before.sso.enforced:false", "after.domains:*",
        "ÜBERPRÜFUNG", "zoe", "日本", "near", "resource.id:obj-\\[1\\]\\*\\?", "resource.id:obj-[*",
        'resource.name:"report [draft]*?.pdf"', "resource.name:report*", "actor.id:weird|actor*",
        "id:awk-sql-1", "id:awk-*", "schema.id:*", "*",
    ]


def test_sql_matches_the_reference_on_corpus_queries(loaded: Loaded, oracle: Oracle) -> None:
    checked = 0
    for q in corpus_queries(loaded):
        node = parse(q, now=loaded.now)
        assert sql_hits(loaded, node) == oracle.find(node), q
        checked += bool(oracle.find(node))
    assert checked >= 55  # most of them really select something


@pytest.mark.parametrize("q", documented_examples())
def test_sql_matches_the_reference_on_documented_examples(loaded: Loaded, oracle: Oracle, q: str) -> None:
    node = parse(q, now=loaded.now)
    assert sql_hits(loaded, node) == oracle.find(node)


def _term_strategy(loaded: Loaded) -> st.SearchStrategy[str]:
    events = loaded.events[:400]
    values = {
        "actor.id": sorted({e["actor"]["id"] for e in events}),
        "action": sorted({e["action"] for e in events}),
        "outcome": ["success", "failure", "denied", "unknown"],
        "resource.type": sorted({e["resource"]["type"] for e in events}),
        "source.service": sorted({e["source"]["service"] for e in events}),
        "source.environment": ["prod", "staging", "dev"],
        "request_id": sorted({e["request_id"] for e in events})[:30],
        "metadata.namespace": ["default", "payments", "kube-system"],
    }
    field_terms = st.sampled_from(sorted(values)).flatmap(
        lambda f: st.sampled_from(values[f]).map(lambda v: f'{f}:"{v}"'))
    wild = st.sampled_from(["action:iam.*", "action:*.update", "actor.id:svc-*", "metadata.ticket:*",
                            "before.role:*", "time:>-3h", "time:<2026-11-01T02:00:00Z", "leaf_index:<2000"])
    words = st.sampled_from(["deadlock", "rollback*", '"bad password"', "token", "INC", "req"])
    return st.one_of(field_terms, wild, words)


def test_sql_matches_the_reference_on_random_queries(loaded: Loaded, oracle: Oracle) -> None:
    terms = _term_strategy(loaded)
    query = st.recursive(
        terms,
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda p: f"({p[0]} {p[1]})"),
            st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
            inner.map(lambda q: f"NOT {q}"),
        ),
        max_leaves=5,
    )

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(query)
    def check(q: str) -> None:
        node = parse(q, now=loaded.now)
        assert sql_hits(loaded, node) == oracle.find(node), q

    check()


# -- injection -------------------------------------------------------------------------------
HOSTILE = [
    "actor.id:\"x' OR '1'='1\"",
    "resource.id:\"'; DROP TABLE entries; --\"",
    "actor.id:x'); DELETE FROM entries; --",
    "outcome:\"denied' UNION SELECT * FROM checkpoints --\"",
    "metadata.x:\"1) OR (1=1\"",
    'reason:"\\" OR 1=1 --"',
    '"NEAR(a b)" OR "* AND OR NOT"',
    '"a"" OR ""b"',
    "x' OR 1=1 --*",
    'resource.id:"obj-[1]*?"',
    "action:%",
    "action:_",
    "time:>\"2026-11-01T00:00:00Z' OR 'a'='a\"",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_values_are_only_ever_parameters(loaded: Loaded, oracle: Oracle, q: str) -> None:
    try:
        node = parse(q, now=loaded.now)
    except FormatError:
        return  # refused by the parser: nothing reached SQL
    sql, _driver = loaded.search.plan(LOG, node, "newest", 10)
    assert sql.sql.count("?") == len(sql.params)
    for value in [*re.findall(r'"((?:[^"\\]|\\.)*)"', q), q]:
        if len(value) > 3:
            assert value not in sql.sql
    assert sql_hits(loaded, node) == oracle.find(node)


def test_injection_attempts_find_exactly_their_literal_event(loaded: Loaded) -> None:
    def ids(q: str) -> list[str]:
        return [e.event_id for e in loaded.search.search(LOG, parse(q), limit=100)]

    assert ids("actor.id:\"x' OR '1'='1\"") == ["awk-sql-1"]
    assert ids("resource.id:\"'; DROP TABLE entries; --\"") == ["awk-sql-1"]
    assert ids('resource.id:"obj-[1]*?"') == ["awk-glob-2"]
    assert ids("resource.id:obj-\\[1\\]\\*\\?") == ["awk-glob-2"]
    assert ids("action:%") == [] and ids("actor.id:_") == []
    assert ids('"NEAR(a b) AND OR"') == ["awk-unicode-5"]
    assert loaded.store.tree_size(LOG) == len(loaded.events)  # nothing dropped or deleted


# -- pagination ------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_keyset_pages_cover_every_match_once(loaded: Loaded, order: str) -> None:
    q = "outcome:success action:auth.*"
    everything = [e.leaf_index for e in loaded.search.search(LOG, parse(q), order=order, limit=100_000)]  # type: ignore[arg-type]
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = search_page(loaded.search, LOG, q, limit=37, cursor=cursor, order=order, now=loaded.now)  # type: ignore[arg-type]
        seen += [e.leaf_index for e in page.entries]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everything and len(set(seen)) == len(seen) and pages > 10


def test_cursors_are_bound_to_their_query(loaded: Loaded) -> None:
    page = search_page(loaded.search, LOG, "outcome:success", limit=5, now=loaded.now)
    assert page.next_cursor
    with pytest.raises(FormatError, match="another query"):
        search_page(loaded.search, LOG, "outcome:denied", limit=5, cursor=page.next_cursor)
    with pytest.raises(FormatError, match="another query"):
        search_page(loaded.search, LOG, "outcome:success", limit=5, cursor=page.next_cursor, order="oldest")
    with pytest.raises(FormatError, match="malformed"):
        search_page(loaded.search, LOG, "outcome:success", limit=5, cursor="not-a-cursor")
    with pytest.raises(FormatError, match="limit"):
        search_page(loaded.search, LOG, "", limit=0)


def test_relative_times_keep_their_clock_across_pages(loaded: Loaded) -> None:
    first = search_page(loaded.search, LOG, "time:>-1h", limit=10, now=loaded.now)
    assert first.next_cursor
    # Hours later, the next page still means "the hour before the first page".
    second = search_page(loaded.search, LOG, "time:>-1h", limit=10, cursor=first.next_cursor)
    assert second.entries and all(e.time > "2026-11-01T05:00:00" for e in second.entries)
    assert second.now == first.now


def test_pages_stay_stable_while_events_arrive(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    events = realistic_events(600, seed=3, mean_gap_ms=2000)
    seq = load(store, events[:400], keyring)
    search = for_store(store)
    seen: list[int] = []
    cursor: str | None = None
    extra = iter(events[400:])
    while True:
        page = search_page(search, LOG, "outcome:success", limit=50, cursor=cursor, order="oldest")
        seen += [e.leaf_index for e in page.entries]
        from trailseal.pipeline.prepare import prepare
        from trailseal.sequencer.log import Request

        batch = [prepare(e, log=LOG, received_at=RECEIVED) for e in [next(extra, None)] * 1 if e]
        if batch:
            seq.commit([Request(batch)])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen))
    positions = [position_of(store.get_entry(LOG, i)) for i in seen]  # type: ignore[arg-type]
    assert positions == sorted(positions)
    store.close()


# -- indexing --------------------------------------------------------------------------------
def test_full_text_is_written_with_the_batch_and_caught_up_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    events = awkward_events()
    plain = SQLiteStore(path)  # a writer without the search's hook
    load(plain, events[:3], keyring)
    store = SQLiteStore(path)
    search = for_store(store)  # catches up at start
    assert [e.event_id for e in search.search(LOG, parse("DROP"))] == ["awk-sql-1"]
    seq = load(store, [], keyring)
    from trailseal.pipeline.prepare import prepare
    from trailseal.sequencer.log import Request

    seq.commit([Request([prepare(events[3], log=LOG, received_at=RECEIVED)])])
    assert [e.event_id for e in search.search(LOG, parse("HYPERLINK"))] == ["awk-csv-4"]  # hook
    seq2 = sequencer_for(plain, keyring)
    seq2.commit([Request([prepare(events[4], log=LOG, received_at=RECEIVED)])])  # no hook
    assert [e.event_id for e in search.search(LOG, parse("überprüfung"))] == ["awk-unicode-5"]
    assert search.search("nope", parse("x")) == []
    assert for_store(store) is search
    plain.close()
    store.close()


def test_migration_2_rebuilds_the_full_text_without_its_size_table(tmp_path: Path) -> None:
    from trailseal.query.sqlite_search import MIGRATIONS, _hook

    path = tmp_path / "t.db"
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    events = realistic_events(300, seed=5) + awkward_events()
    old = SQLiteStore(path)  # the schema as migration 1 left it, indexed by the hook
    old.apply_migrations("query", MIGRATIONS[:1])
    old.add_append_hook(_hook)
    load(old, events, keyring)
    old.close()
    store = SQLiteStore(path)
    search = SQLiteSearch(store)
    names = {row[0] for row in store._reader.execute("SELECT name FROM sqlite_master")}
    assert "q_entries_actor" in names and "q_text_docsize" not in names
    assert store._reader.execute("SELECT indexed_end FROM q_logs").fetchone()[0] == len(events)
    actor = collections.Counter(e["actor"]["id"] for e in events).most_common(2)[1][0]
    for q in (f"actor.id:{actor}", "DROP", "überprüfung", "deadlock"):
        got = [e.leaf_index for e in search.search(LOG, parse(q), limit=1000)]
        want = [e.leaf_index for e in ScanSearch(store).search(LOG, parse(q), limit=1000)]
        assert got == want and got, q
    store.close()


def sequencer_for(store: SQLiteStore, keyring: Keyring) -> Any:
    from trailseal.sequencer.log import LogSequencer

    return LogSequencer(store, LOG, f"test.example/{LOG}", keyring, lambda: RECEIVED)


def prune(store: SQLiteStore, leaf_indexes: list[int]) -> None:
    """What retention does to a pruned leaf (storage/sqlite/retention.py): tombstone, cleared columns."""
    mark = PruneMark("90d", "2026-11-30T00:00:00.000000Z", "seg-1")
    with store._write_lock:
        store._writer.executemany(
            "UPDATE entries SET body = ?, action = '', actor_id = '', resource_type = '', "
            "resource_id = '', outcome = NULL, request_id = NULL, trace_id = NULL, "
            "source_service = NULL WHERE log = ? AND leaf_index = ?",
            [(mark.tombstone(), LOG, i) for i in leaf_indexes])


def test_pruned_payloads_are_not_found_by_their_content(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    keyring = Keyring.generate(f"test.example/{LOG}", RECEIVED)
    load(store, awkward_events(), keyring)
    search: SQLiteSearch = for_store(store)
    assert len(search.search(LOG, parse("svc-meta"))) == 2
    prune(store, [5])
    assert [e.event_id for e in search.search(LOG, parse("svc-meta"))] == ["awk-meta-7"]
    assert [e.event_id for e in search.search(LOG, parse("metadata.attempt:*"))] == ["awk-meta-7"]
    assert search.search(LOG, parse("actor.id:svc-meta")) == search.search(LOG, parse("id:awk-meta-7"))
    kept = search.search(LOG, parse("id:awk-meta-6"))
    assert [e.pruned is not None for e in kept] == [True]  # found by what is kept: id, time, index
    every = list(iter_matches(search, LOG, parse("time:2026-11-01")))
    assert len(every) == 7 and sum(e.pruned is not None for e in every) == 1
    store.close()


# -- planning --------------------------------------------------------------------------------
def test_the_planner_picks_a_driver_by_measured_selectivity(loaded: Loaded) -> None:
    def driver(q: str) -> tuple[str, str | None]:
        _sql, chosen = loaded.search.plan(LOG, parse(q, now=loaded.now))
        return chosen.kind, chosen.index

    story = loaded.events[100]
    top_actor = collections.Counter(e["actor"]["id"] for e in loaded.events).most_common(1)[0][0]
    assert driver(f"request_id:{story['request_id']}") == ("text", None)
    assert driver("deadlock outcome:failure") == ("text", None)
    assert driver(f"actor.id:{top_actor}") == ("ordered", "q_entries_actor")
    assert driver("action:auth.login outcome:denied") == ("ordered", "q_entries_action")
    assert driver("action:kms.key.rot*") == ("index", "q_entries_action")
    assert driver("outcome:denied action:auth.*") == ("ordered", "q_entries_time")
    assert driver("id:awk-sql-1") == ("index", "entries_event_id")
    assert driver("leaf_index:[100 TO 120]") == ("index", loaded.search.primary_key)
    assert driver("time:[2026-11-01T02:00:00Z TO 2026-11-01T02:05:00Z]") == ("index", "q_entries_time")
    assert driver("source.environment:prod") == ("ordered", "q_entries_time")


def test_a_common_token_value_is_paged_in_time_order_not_through_its_words(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    search = for_store(store)
    events = realistic_events(3000, seed=11)
    for n, event in enumerate(events):  # one resource in 3 events of 5, the others once each
        event["resource"] = {"type": "cluster", "id": "prod-cluster-0" if n % 5 < 3 else f"node-{n}"}
    for n in (10, 1500, 2990):
        events[n]["resource"] = {"type": "cluster", "id": "rare.one"}
    load(store, events, Keyring.generate(f"test.example/{LOG}", RECEIVED))

    def plan(q: str) -> tuple[str, str | None]:
        _sql, chosen = search.plan(LOG, parse(q))
        return chosen.kind, chosen.index

    assert plan("resource.id:prod-cluster-0") == ("ordered", "q_entries_time")
    assert plan("resource.id:rare.one") == ("text", None)
    # The common value adds nothing to a MATCH but cost: only the rare one's words drive.
    _driver, phrases = search.driver(LOG, search._log_id(LOG) or 0,
                                     parse("resource.id:prod-cluster-0 AND resource.id:rare.one"))
    assert len(phrases) == 1 and "rare" in phrases[0]
    reference = ScanSearch(store)
    for q in ("resource.id:prod-cluster-0", "resource.id:rare.one",
              "resource.id:prod-cluster-0 AND outcome:success"):
        for order in ("newest", "oldest"):
            got = [e.leaf_index for e in search.search(LOG, parse(q), order=order, limit=5000)]  # type: ignore[arg-type]
            want = [e.leaf_index for e in reference.search(LOG, parse(q), order=order, limit=5000)]  # type: ignore[arg-type]
            assert got == want, (q, order)
    store.close()


def test_cursors_start_the_index_range_at_the_keyset(loaded: Loaded) -> None:
    q = "time:[2026-11-01T01:00:00Z TO 2026-11-01T04:00:00Z] outcome:success"
    node = parse(q, now=loaded.now)
    for order in ("oldest", "newest"):
        first = loaded.search.search(LOG, node, order=order, limit=20)  # type: ignore[arg-type]
        sql, _driver = loaded.search.plan(LOG, node, order, 20, position_of(first[-1]))  # type: ignore[arg-type]
        plan = " ".join(row[3] for row in loaded.store._reader.execute("EXPLAIN QUERY PLAN " + sql.sql, sql.params))
        assert "(time,leaf_index)" in plan, plan
        pages, after = [], None
        while True:
            page = loaded.search.search(LOG, node, order=order, limit=97, after=after)  # type: ignore[arg-type]
            pages += page
            if len(page) < 97:
                break
            after = position_of(page[-1])
        assert [e.leaf_index for e in pages] == [e.leaf_index for e in loaded.search.search(LOG, node, order=order, limit=10_000)]  # type: ignore[arg-type]
