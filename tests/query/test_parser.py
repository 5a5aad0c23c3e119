"""The query language: every documented example, the tree each construct builds, errors."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.query.ast import And, AnyOf, Compare, Exists, MatchAll, Not, Or, Pattern, Text
from trailseal.query.fields import FIELDS, lookup
from trailseal.query.parser import MAX_DEPTH, MAX_TERMS, QuerySyntaxError, parse
from trailseal.query.times import parse_duration, parse_time

DOCS = Path(__file__).resolve().parents[2] / "docs" / "query.md"
NOW = dt.datetime(2026, 11, 28, 14, 5, tzinfo=dt.UTC)


def documented_examples() -> list[str]:
    blocks = re.findall(r"```query\n(.*?)```", DOCS.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_docs_have_examples() -> None:
    assert len(documented_examples()) >= 30


@pytest.mark.parametrize("query", documented_examples())
def test_every_documented_example_parses(query: str) -> None:
    node = parse(query, now=NOW)
    assert not isinstance(node, MatchAll)


def eq(name: str, value: object) -> Compare:
    return Compare(lookup(name), "=", value)  # type: ignore[arg-type]


def test_fields_values_and_aliases() -> None:
    assert parse("actor.id:alice@example.com") == eq("actor.id", "alice@example.com")
    assert parse("actor:alice") == eq("actor.id", "alice")
    assert parse("service:deployer") == eq("source.service", "deployer")
    assert parse("env:prod") == eq("source.environment", "prod")
    assert parse("ip:10.0.0.1") == eq("actor.ip", "10.0.0.1")
    assert parse('resource.name:"quarterly report.pdf"') == eq("resource.name", "quarterly report.pdf")
    assert parse("actor.ip:2001:db8::7") == eq("actor.ip", "2001:db8::7")
    assert parse(r"resource.name:report\ 2026\*") == eq("resource.name", "report 2026*")
    assert parse(r'reason:"say \"hi\" \\ bye"') == eq("reason", 'say "hi" \\ bye')
    assert parse("leaf_index:>=10") == Compare(FIELDS["leaf_index"], ">=", 10)


def test_boolean_structure_and_precedence() -> None:
    a, b, c = eq("outcome", "a"), eq("outcome", "b"), eq("outcome", "c")
    assert parse("outcome:a outcome:b") == And((a, b))
    assert parse("outcome:a AND outcome:b") == And((a, b))
    assert parse("outcome:a OR outcome:b outcome:c") == Or((a, And((b, c))))
    assert parse("(outcome:a OR outcome:b) outcome:c") == And((Or((a, b)), c))
    assert parse("NOT outcome:a") == Not(a)
    assert parse("-outcome:a") == Not(a)
    assert parse("NOT NOT outcome:a") == a
    assert parse("outcome:a AND (outcome:b AND outcome:c)") == And((a, b, c))
    assert parse("") == MatchAll() and parse("   ") == MatchAll() and parse("*") == MatchAll()


def test_value_lists_wildcards_and_existence() -> None:
    action = FIELDS["action"]
    assert parse("action:(a.b OR c.d)") == AnyOf(action, ("a.b", "c.d"))
    assert parse("action:iam.role.*") == Pattern(action, ("iam.role.", "*"))
    assert parse("action:iam.role.*").is_prefix  # type: ignore[union-attr]
    assert parse("actor.id:*@example.com") == Pattern(FIELDS["actor.id"], ("*", "@example.com"))
    assert parse("actor.id:a?c") == Pattern(FIELDS["actor.id"], ("a", "?", "c"))
    assert parse("actor.id:a**c") == Pattern(FIELDS["actor.id"], ("a", "*", "c"))
    assert parse(r"actor.id:a\*c") == eq("actor.id", "a*c")
    assert parse('actor.id:"a*c"') == eq("actor.id", "a*c")
    assert parse("reason:*") == Exists(FIELDS["reason"])
    assert parse("action:(iam.* OR auth.login)") == Or(
        (eq("action", "auth.login"), Pattern(action, ("iam.", "*"))))


def test_json_values_keep_their_type() -> None:
    attempt = lookup("metadata.attempt")
    assert attempt.path == ("metadata", "attempt") and attempt.kind == "any"
    assert parse("metadata.attempt:3") == AnyOf(attempt, (3, "3"))
    assert parse('metadata.attempt:"3"') == Compare(attempt, "=", "3")
    assert parse("metadata.attempt:>2") == Compare(attempt, ">", 2)
    assert parse("metadata.ratio:1.5") == AnyOf(lookup("metadata.ratio"), (1.5, "1.5"))
    assert parse("metadata.flag:true") == AnyOf(lookup("metadata.flag"), (True, "true"))
    assert parse("before.sso.enforced:false") == AnyOf(lookup("before.sso.enforced"), (False, "false"))
    assert lookup("after.nested.k-1").path == ("after", "nested", "k-1")


def test_times_are_periods() -> None:
    time = FIELDS["time"]
    day = ("2026-11-28T00:00:00.000000Z", "2026-11-29T00:00:00.000000Z")
    assert parse("time:2026-11-28") == And((Compare(time, ">=", day[0]), Compare(time, "<", day[1])))
    assert parse("time:>2026-11-28") == Compare(time, ">=", day[1])
    assert parse("time:>=2026-11-28") == Compare(time, ">=", day[0])
    assert parse("time:<2026-11-28") == Compare(time, "<", day[0])
    assert parse("time:<=2026-11-28") == Compare(time, "<", day[1])
    assert parse("time:2026-11-28T10:15:30Z") == And((
        Compare(time, ">=", "2026-11-28T10:15:30.000000Z"), Compare(time, "<", "2026-11-28T10:15:31.000000Z")))
    assert parse("time:2026-11-28T12:15:30.5+02:00") == Compare(time, "=", "2026-11-28T10:15:30.500000Z")
    assert parse("time:>-2h", now=NOW) == Compare(time, ">", "2026-11-28T12:05:00.000000Z")
    assert parse("time:>=now-1h30m", now=NOW) == Compare(time, ">=", "2026-11-28T12:35:00.000000Z")
    assert parse("time:<now+1d", now=NOW) == Compare(time, "<", "2026-11-29T14:05:00.000000Z")
    assert parse("time:[2026-11-01 TO 2026-11-02}") == And((
        Compare(time, ">=", "2026-11-01T00:00:00.000000Z"), Compare(time, "<", "2026-11-02T00:00:00.000000Z")))
    assert parse("time:{2026-11-01 TO *]") == Compare(time, ">=", "2026-11-02T00:00:00.000000Z")
    assert parse("time:[* TO 2026-11-01]") == Compare(time, "<", "2026-11-02T00:00:00.000000Z")
    assert parse_duration("1h30m") == dt.timedelta(minutes=90)
    assert parse_duration("250ms") == dt.timedelta(milliseconds=250)
    assert parse_time("now", NOW).instant


def test_free_text() -> None:
    assert parse("deadlock") == Text("deadlock")
    assert parse("deploy*") == Text("deploy", prefix=True)
    assert parse('"break-glass"') == Text("break-glass")
    assert parse("INC-2231") == Text("INC-2231")
    assert parse('"http://internal:8080"') == Text("http://internal:8080")
    assert parse('"2001:db8::1"') == Text("2001:db8::1")  # text with a colon is quoted
    assert parse("deadlock outcome:failure") == And((Text("deadlock"), eq("outcome", "failure")))


ERRORS = [
    ("actor.id:(alice OR", 18, "expected a value after OR"),
    ("actor.id:(", 9, "missing ')'"),
    ("(outcome:a OR outcome:b", 0, "missing ')'"),
    ("outcome:a)", 9, "unexpected ')'"),
    ("outcome:", 8, "expected a value"),
    ("outcome: denied", 8, "expected a value"),
    ("actr.id:bob", 0, "did you mean actor.id"),
    ("http://x", 0, "quote it"),
    ("time:>yesterday", 6, "time 'yesterday'"),
    ("time:2026-11-28T10:00:00", 5, "add Z or an offset"),
    ("time:2026-13-01", 5, "month must be in 1..12"),
    ("time:a*", 5, "takes no wildcards"),
    ("leaf_index:abc", 11, "takes an integer"),
    ("producer.seq:>1.5", 14, "takes an integer"),
    ('reason:"unterminated', 7, "unterminated quoted string"),
    ("dead*lock", 4, "wildcards in free text only at the end"),
    ("outcome:a AND", 13, "expected a term"),
    ("AND outcome:a", 0, "expected a term before AND"),
    ("outcome:a OR OR outcome:b", 13, "expected a term before OR"),
    ("--", 1, "letters or digits"),
    ('""', 0, "letters or digits"),
    ("()", 1, "empty parentheses"),
    ("time:[2026-11-01 2026-11-02]", 17, "expected TO"),
    ("time:[2026-11-01 TO 2026-11-02", 5, "missing ']'"),
    ("metadata.:x", 0, "name a key"),
    ("metadata.a'b:1", 0, "must be 1..128 of"),
    ("metadata.a$b:1", 0, "must be 1..128 of"),
    ("2001:db8::1", 0, "quote it"),
    ("NOT", 0, "expected a term after NOT"),
]


@pytest.mark.parametrize(("query", "position", "fragment"), ERRORS)
def test_errors_point_at_the_culprit(query: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(query, now=NOW)
    assert caught.value.position == position, str(caught.value)
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(f"at position {position}")
    assert caught.value.caret().splitlines()[1] == " " * position + "^"


def test_limits() -> None:
    with pytest.raises(QuerySyntaxError, match="limit 4096"):
        parse("a" * 5000)
    with pytest.raises(QuerySyntaxError, match="nesting deeper"):
        parse("(" * (MAX_DEPTH + 1) + "a" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(QuerySyntaxError, match="more than 256 terms"):
        parse(" ".join(["a"] * (MAX_TERMS + 1)))
    parse("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*'abc:*?"()[]{}<>=-\\ .12', "OR", "AND", "NOT", "TO", "time:",
                                  "actor.id:", "metadata.x:", "-2h", "now", " "]), max_size=25).map("".join))
def test_any_input_parses_or_raises_a_syntax_error(text: str) -> None:
    try:
        parse(text, now=NOW)
    except QuerySyntaxError as exc:
        assert 0 <= exc.position <= len(text)
