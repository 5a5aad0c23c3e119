"""Incident timelines: selection, correlation tree, diffs, gaps, and both renderings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.query.conftest import LOG, RECEIVED, Loaded, load
from trailseal.core.errors import FormatError
from trailseal.core.keys import Keyring
from trailseal.query.render import render_markdown, render_text
from trailseal.query.sqlite_search import SQLiteSearch, for_store
from trailseal.query.timeline import Change, build_timeline, diff
from trailseal.storage.sqlite import SQLiteStore

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def ev(ident: str, minute: float, action: str, service: str, producer: str, seq: int, **extra: Any) -> dict[str, Any]:
    moment = dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    event = {
        "id": ident, "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": {"id": extra.pop("actor", "alice@example.com")}, "action": action,
        "resource": {"type": "thing", "id": f"{ident}-target"}, "outcome": extra.pop("outcome", "success"),
        "source": {"service": service, "environment": "prod"},
        "producer": {"id": producer, "seq": seq},
    }
    event.update(extra)
    return event


INCIDENT = [
    ev("e1", 0.00, "auth.login", "identity", "idp@1", 1, request_id="R1", trace_id="T1", span_id="s1"),
    ev("e2", 0.02, "payment.refund.create", "payments", "pay@1", 1, request_id="R1", trace_id="T1",
       span_id="s2", metadata={"parent_span_id": "s1"}, outcome="denied", reason="limit | exceeded"),
    ev("e3", 0.03, "ledger.entry.create", "ledger", "led@1", 1, request_id="R1", trace_id="T1",
       span_id="s3", metadata={"parent_span_id": "s2"}),
    ev("e4", 0.08, "iam.role.update", "iam", "iam@1", 1, request_id="R2", trace_id="T1",
       before={"role": "viewer", "groups": ["eng"], "sso": {"enforced": False}},
       after={"role": "admin", "groups": ["eng", "admins"], "sso": {"enforced": True}, "mfa": True}),
    ev("e5", 0.10, "iam.role.update", "iam", "iam@1", 2, request_id="R2", metadata={"parent_event_id": "e4"},
       before={"role": "admin", "note": "x"}, after={"role": "admin"}, actor="ops|bot"),
    ev("e6", 30, "deploy.rollout.start", "deployer", "dep@1", 1, request_id="R3"),
    ev("e7", 31, "deploy.rollout.finish", "deployer", "dep@1", 4, request_id="R3"),
    ev("e8", 32, "deploy.config.update", "deployer", "dep@1", 5, span_id="loop-a",
       metadata={"parent_span_id": "loop-b"}),
    ev("e9", 33, "deploy.config.update", "deployer", "dep@1", 6, span_id="loop-b",
       metadata={"parent_span_id": "loop-a"}),
    ev("e10", 300, "auth.login", "identity", "idp@1", 2),
]


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteSearch]:
    store = SQLiteStore(Path(tmp_path_factory.mktemp("timeline")) / "t.db")
    load(store, INCIDENT, Keyring.generate(f"test.example/{LOG}", RECEIVED))
    yield for_store(store)
    store.close()


def ids(timeline: Any) -> list[str]:
    return [e.id for e in timeline.events]


def test_a_request_widens_to_its_traces_and_forms_a_tree(search: SQLiteSearch) -> None:
    tl = build_timeline(search, LOG, request_id="R1", now=NOW)
    assert ids(tl) == ["e1", "e2", "e3", "e4", "e5"]
    parents = {e.id: e.parent for e in tl.events}
    index = {e.id: e.leaf_index for e in tl.events}
    assert parents == {"e1": None, "e2": index["e1"], "e3": index["e2"], "e4": index["e1"], "e5": index["e4"]}
    assert [e.depth for e in tl.events] == [0, 1, 2, 1, 2]
    assert list(tl.services()) == ["identity", "payments", "ledger", "iam"]
    assert build_timeline(search, LOG, trace_id="T1", now=NOW).to_json()["events"] == tl.to_json()["events"]
    assert tl.gaps == [] and not tl.truncated


def test_around_a_time_with_windows_and_a_query(search: SQLiteSearch) -> None:
    tl = build_timeline(search, LOG, around="2026-11-28T10:00:03Z", window="1m", now=NOW)
    assert ids(tl) == ["e1", "e2", "e3", "e4", "e5"]
    assert ids(build_timeline(search, LOG, around="2026-11-28T10:31:00Z", before="31m", after="0s",
                              q="service:iam OR action:deploy.*", now=NOW)) == ["e4", "e5", "e6", "e7"]
    assert ids(build_timeline(search, LOG, around="-2h", window="1m", now=NOW)) == ["e1", "e2", "e3", "e4", "e5"]
    cut = build_timeline(search, LOG, around="2026-11-28T10:00:03Z", window="1m", limit=2, now=NOW)
    assert cut.truncated and len(cut.events) == 2


def test_sequence_gaps_and_cycles(search: SQLiteSearch) -> None:
    tl = build_timeline(search, LOG, around="2026-11-28T10:31:00Z", window="5m", now=NOW)
    assert ids(tl) == ["e6", "e7", "e8", "e9"]
    assert [g.to_json() for g in tl.gaps] == [{
        "producer": "dep@1", "after_seq": 1, "before_seq": 4, "missing": 2,
        "after_time": "2026-11-28T10:30:00.000000Z", "before_time": "2026-11-28T10:31:00.000000Z"}]
    roots = [e.id for e in tl.events if e.parent is None]
    assert "e6" in roots and len(roots) >= 2  # the e8 <-> e9 span cycle was cut


def test_changes_are_a_key_by_key_diff(search: SQLiteSearch) -> None:
    tl = build_timeline(search, LOG, request_id="R2", now=NOW)
    e4 = next(e for e in tl.events if e.id == "e4")
    assert e4.changes == [
        Change("groups", "changed", ["eng"], ["eng", "admins"]),
        Change("mfa", "added", None, True),
        Change("role", "changed", "viewer", "admin"),
        Change("sso.enforced", "changed", False, True),
    ]
    assert diff({"a": 1}, {"a": 1.0}) == [Change("a", "changed", 1, 1.0)]
    assert diff(None, None) == [] and diff({"x": {}}, {}) == [Change("x", "removed", {}, None)]


def test_renderings(search: SQLiteSearch) -> None:
    tl = build_timeline(search, LOG, request_id="R1", now=NOW)
    text = render_text(tl)
    assert "Timeline of request_id R1 in log default" in text and "5 events · 4 services" in text
    assert '- role: "viewer"' in text and '+ role: "admin"' in text and "!denied" in text
    assert "├─ 10:00:01.200 payments payment.refund.create (denied)" in text
    markdown = render_markdown(tl)
    assert markdown.startswith("## Timeline: request_id R1\n")
    assert "| 10:00:01.200 | payments | `payment.refund.create` | alice@example.com | thing:e2-target | **denied** | R1 |" in markdown
    assert "```diff\n- groups: [\"eng\"]\n+ groups: [\"eng\",\"admins\"]" in markdown
    assert "ops\\|bot" in markdown  # table cells escape pipes
    gaps = render_markdown(build_timeline(search, LOG, around="2026-11-28T10:31:00Z", window="5m", now=NOW))
    assert "sequence jumps from 1 to 4 (2 missing)" in gaps


def test_selection_is_validated(search: SQLiteSearch) -> None:
    with pytest.raises(FormatError, match="exactly one"):
        build_timeline(search, LOG)
    with pytest.raises(FormatError, match="exactly one"):
        build_timeline(search, LOG, request_id="R1", trace_id="T1")
    with pytest.raises(FormatError, match="duration"):
        build_timeline(search, LOG, around="now", window="2 hours")
    with pytest.raises(FormatError, match="limit"):
        build_timeline(search, LOG, request_id="R1", limit=0)


def test_a_timeline_over_realistic_data(loaded: Loaded) -> None:
    story = next(e for e in loaded.events if "parent_span_id" in e.get("metadata", {}))
    tl = build_timeline(loaded.search, LOG, request_id=story["request_id"], now=loaded.now)
    assert story["id"] in ids(tl)
    assert all(e.trace_id == story["trace_id"] or e.request_id == story["request_id"] for e in tl.events)
    assert any(e.parent is not None for e in tl.events)
    window = build_timeline(loaded.search, LOG, around="2026-11-01T02:00:00Z", window="20m", now=loaded.now)
    assert len(window.events) > 300 and window.to_json()["count"] == len(window.events)
    render_markdown(window)
    render_text(window)
