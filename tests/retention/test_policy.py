"""Policy resolution, durations, hold selectors."""

from __future__ import annotations

import pytest

from trailseal.core.errors import FormatError
from trailseal.retention.holds import HoldMatcher, describe, in_force, normalize_selector
from trailseal.retention.policy import PolicySet, cutoff, format_keep, parse_keep
from trailseal.storage.base import LeafEntry
from trailseal.storage.memory import MemoryStore
from trailseal.storage.retention import HoldRecord, PolicyRecord


@pytest.mark.parametrize(("text", "days"), [("90d", 90), ("12w", 84), ("6m", 180), ("7y", 2555),
                                            ("30", 30), ("forever", None)])
def test_parse_and_format_keep(text: str, days: int | None) -> None:
    assert parse_keep(text) == days
    assert parse_keep(format_keep(days)) == days


@pytest.mark.parametrize("bad", ["", "0d", "-1d", "3x", "1.5y", "d"])
def test_bad_keep(bad: str) -> None:
    with pytest.raises(FormatError, match="keep"):
        parse_keep(bad)


def policy(name: str, log: str, action: str, days: int | None) -> PolicyRecord:
    return PolicyRecord(name, log, action, days, "t", "t")


POLICIES = PolicySet([
    policy("global", "*", "*", 365), policy("global-iam", "*", "iam.*", 2555),
    policy("auth", "default", "auth.*", 90), policy("mfa", "default", "auth.mfa.*", 180),
    policy("login", "default", "auth.login", 30), policy("acme", "acme", "*", 60),
    policy("sys", "_system", "*", 3650),
])


@pytest.mark.parametrize(("log", "action", "name"), [
    ("default", "auth.login", "login"),           # exact action beats any glob
    ("default", "auth.logout", "auth"),
    ("default", "auth.mfa.enroll", "mfa"),        # longer literal prefix wins
    ("default", "iam.role.update", "global-iam"),
    ("default", "deploy.rollout.start", "global"),
    ("acme", "iam.role.update", "acme"),          # the log's own policy beats any '*' one
    ("other", "anything", "global"),
    ("_system", "retention.run", "sys"),          # '*' policies never reach system logs
    ("_audit", "x.y", None),
])
def test_most_specific_policy_wins(log: str, action: str, name: str | None) -> None:
    found = POLICIES.resolve(log, action)
    assert (found.name if found else None) == name


def test_cutoff_is_comparable_as_text() -> None:
    assert cutoff("2025-12-31T12:00:00.000000Z", 90) == "2025-10-02T12:00:00.000000Z"


def test_selectors_are_validated_and_normalized() -> None:
    assert normalize_selector({"kind": "time_range", "from": "2025-03-01T01:00:00+01:00"}) == {
        "kind": "time_range", "from": "2025-03-01T00:00:00.000000Z"}
    assert normalize_selector({"kind": "event_ids", "ids": ["b", "a", "b"]})["ids"] == ["a", "b"]
    for bad in ({"kind": "nope"}, {"kind": "time_range"}, {"kind": "event_ids", "ids": []},
                {"kind": "tenant", "extra": 1}, {"kind": "query", "q": " "},
                {"kind": "time_range", "from": "2025-04-01T00:00:00Z", "to": "2025-03-01T00:00:00Z"}):
        with pytest.raises(FormatError):
            normalize_selector(bad)
    assert describe({"kind": "tenant"}) == "every event of the log"


def entry(leaf_index: int, time: str, event_id: str = "e") -> LeafEntry:
    return LeafEntry("default", leaf_index, event_id, b"h" * 32, b"c" * 32, b"{}", time, time,
                     "auth.login", "alice", "account", "alice")


def hold(hold_id: str, selector: dict, **extra: object) -> HoldRecord:  # type: ignore[type-arg]
    return HoldRecord(hold_id, "default", "CASE", "legal", normalize_selector(selector),
                      "2025-01-01T00:00:00Z", "t", **extra)  # type: ignore[arg-type]


def test_hold_matching_and_expiry() -> None:
    holds = [
        hold("range", {"kind": "time_range", "from": "2025-03-01T00:00:00Z", "to": "2025-04-01T00:00:00Z"}),
        hold("ids", {"kind": "event_ids", "ids": ["e7"]}),
        hold("lapsed", {"kind": "tenant"}, expires_at="2025-06-01T00:00:00.000000Z"),
        hold("released", {"kind": "tenant"}, released_at="2025-02-01T00:00:00Z"),
        hold("query", {"kind": "query", "q": "actor.id:alice"}),
    ]
    assert in_force(holds[2], "2025-05-31T00:00:00.000000Z")
    assert not in_force(holds[2], "2025-06-01T00:00:00.000000Z")
    matcher = HoldMatcher.build(MemoryStore(), "default", holds, "2025-12-31T00:00:00.000000Z", 10,
                                lambda store, log, q, start, end: [3])
    assert matcher.covering(entry(1, "2025-03-15T00:00:00.000000Z")) == ["range"]
    assert matcher.covering(entry(2, "2025-04-01T00:00:00.000000Z")) == []  # half open
    assert matcher.covering(entry(3, "2025-01-01T00:00:00.000000Z")) == ["query"]
    assert matcher.covering(entry(4, "2025-01-01T00:00:00.000000Z", "e7")) == ["ids"]
    # No query engine: the query hold holds everything (fail safe) and says so.
    blind = HoldMatcher.build(MemoryStore(), "default", holds, "2025-12-31T00:00:00.000000Z", 10, None)
    assert blind.covering(entry(5, "2025-01-01T00:00:00.000000Z")) == ["query"]
    assert blind.warnings
