"""Exports: NDJSON and CSV round trips, CEF escaping, OCSF required fields, real CloudTrail data."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.query.conftest import LOG, RECEIVED, Loaded, load
from trailseal.core.canonical import canonicalize
from trailseal.core.event import Event
from trailseal.core.hashing import leaf_hash
from trailseal.core.keys import Keyring
from trailseal.query.cef import escape_header, escape_value
from trailseal.query.export import CSV_COLUMNS, csv_event, export_chunks
from trailseal.query.ocsf import classify
from trailseal.query.parser import parse
from trailseal.query.search import iter_matches
from trailseal.query.sqlite_search import for_store
from trailseal.storage.base import LeafEntry
from trailseal.storage.sqlite import SQLiteStore


def export(loaded: Loaded, fmt: str, q: str = "") -> bytes:
    return b"".join(export_chunks(iter_matches(loaded.search, LOG, parse(q)), fmt))


def stored(loaded: Loaded) -> dict[str, LeafEntry]:
    return {e.event_id: e for e in loaded.store.iter_entries(LOG)}


# -- NDJSON and CSV ------------------------------------------------------------------------------
def test_ndjson_is_the_stored_bytes(loaded: Loaded) -> None:
    lines = export(loaded, "ndjson").splitlines()
    entries = stored(loaded)
    assert len(lines) == len(entries)
    for line in lines:
        event = orjson.loads(line)
        entry = entries[event["id"]]
        assert line == entry.body and leaf_hash(line) == entry.leaf_hash
        Event.from_dict(event)  # still a valid envelope


def test_csv_round_trips_every_event(loaded: Loaded) -> None:
    text = export(loaded, "csv").decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    entries = stored(loaded)
    assert len(rows) == len(entries) and tuple(rows[0]) == CSV_COLUMNS
    for row in rows:
        entry = entries[row["id"]]
        assert canonicalize(csv_event(row)) == entry.body, row["id"]
        assert int(row["leaf_index"]) == entry.leaf_index


def test_csv_defuses_spreadsheet_formulas(loaded: Loaded) -> None:
    rows = list(csv.DictReader(io.StringIO(export(loaded, "csv", "id:awk-csv-4").decode(), newline="")))
    assert rows[0]["actor.id"] == "'=HYPERLINK(\"http://evil\")"
    assert rows[0]["resource.id"] == "'+1-555-0100"
    assert rows[0]["reason"] == "''quoted start, comma, \"double\""
    assert csv_event(rows[0])["actor"]["id"] == "=HYPERLINK(\"http://evil\")"


def test_exports_stream_lazily_in_chunks() -> None:
    def entries() -> Iterator[LeafEntry]:
        for n in range(1000):
            yield LeafEntry("l", n, f"e{n}", b"\0" * 32, b"", b'{"action":"a.b","id":"e%d"}' % n,
                            "2026-11-01T00:00:00.000000Z", "", "a.b", "x", "t", "i")
        raise AssertionError("read past what was asked for")

    chunks = export_chunks(entries(), "ndjson", chunk=100)
    first = next(chunks)
    assert first.count(b"\n") == 100
    assert sum(c.count(b"\n") for c, _ in zip(chunks, range(8), strict=False)) == 800


def test_exports_read_raw_rows_and_match_the_entries_path(tmp_path: Path) -> None:
    """The fast path (four columns per match, no entry objects) writes exactly what the
    entry-by-entry path writes, pruned entries skipped, in every format."""
    from tests.query.conftest import awkward_events
    from tests.query.corpus import realistic_events

    store = SQLiteStore(tmp_path / "raw.db")
    search = for_store(store)
    events = realistic_events(600, seed=3) + awkward_events()
    load(store, events, Keyring.generate(f"test.example/{LOG}", RECEIVED), batch=200)
    with store._write_lock:  # prune one entry the way retention does (tombstone body)
        store._writer.execute("UPDATE entries SET body = ? WHERE log = ? AND leaf_index = 5",
                              (b"pruned:test", LOG))
    for fmt in ("ndjson", "csv", "cef", "ocsf"):
        matches = iter_matches(search, LOG, parse(""), batch=97)
        fast = b"".join(export_chunks(matches, fmt, chunk=50))
        assert matches.raw_pages() is None  # consumed as raw pages
        slow = b"".join(export_chunks(list(iter_matches(search, LOG, parse(""))), fmt))
        assert fast == slow, fmt
        if fmt in ("ndjson", "ocsf"):  # one line per event (CSV and CEF cells may hold breaks)
            assert fast.count(b"\n") == len(events) - 1, fmt
    started = iter_matches(search, LOG, parse(""))
    next(started)
    assert started.raw_pages() is None  # iteration began: entries only
    assert sum(1 for _ in started) == len(events) - 1
    store.close()


# -- CEF ---------------------------------------------------------------------------------------
def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """A strict reader of what we write: header fields split on unescaped pipes, extension on
    unescaped '=' (the key is the word before it), escapes undone."""
    header: list[str] = []
    field, i = "", 0
    while len(header) < 7:
        char = line[i]
        if char == "\\":
            field += line[i + 1]
            i += 2
            continue
        if char == "|":
            header.append(field)
            field = ""
        else:
            field += char
        i += 1
    rest = line[i:]
    pairs: dict[str, str] = {}
    key: str | None = None
    value, j = "", 0
    while j < len(rest):
        char = rest[j]
        if char == "\\":
            nxt = rest[j + 1]
            value += {"n": "\n", "r": "\r"}.get(nxt, nxt)
            j += 2
            continue
        if char == "=":
            head, _, new_key = value.rpartition(" ")
            if key is not None:
                pairs[key] = head
            key, value = new_key, ""
        else:
            value += char
        j += 1
    if key is not None:
        pairs[key] = value
    return header, pairs


@pytest.mark.parametrize(("raw", "header", "value"), [
    ("plain", "plain", "plain"),
    ("a|b", "a\\|b", "a|b"),
    ("back\\slash", "back\\\\slash", "back\\\\slash"),
    ("k=v", "k=v", "k\\=v"),
    ("two\nlines\r\n", "two lines  ", "two\\nlines\\r\\n"),
    ("\\|=", "\\\\\\|=", "\\\\|\\="),
    ("tab\there", "tab here", "tab here"),
    ("ünïcödé 日本 🚀", "ünïcödé 日本 🚀", "ünïcödé 日本 🚀"),
])
def test_cef_escaping(raw: str, header: str, value: str) -> None:
    assert escape_header(raw) == header
    assert escape_value(raw) == value


def test_cef_lines_parse_back_to_the_event(loaded: Loaded) -> None:
    lines = export(loaded, "cef").decode().splitlines()
    entries = stored(loaded)
    assert len(lines) == len(entries)
    for line in lines:
        header, ext = parse_cef(line)
        assert header[:4] == ["CEF:0", "trailseal", "trailseal", "0.1.0"] and len(header) == 7
        event = orjson.loads(entries[ext["externalId"]].body)
        assert header[4] == event["action"] and ext["act"] == event["action"]
        assert ext["suser"] == event["actor"]["id"]
        assert ext.get("reason") == event.get("reason")
        assert ext["cs4"] == event["resource"]["id"] and ext["cn1"] == str(entries[event["id"]].leaf_index)
        assert int(ext["rt"]) > 1_700_000_000_000
        assert "\n" not in line and "\r" not in line
    weird = next(parse_cef(line) for line in lines if "awk-cef-3" in line)
    assert weird[1]["suser"] == "weird|actor\\name=x" and weird[1]["cs4"] == "a=b|c\\d"
    assert weird[1]["reason"].startswith("line one\nline two\r\nwith = and | and \\")
    assert weird[1]["c6a2"] == "2001:db8::7" and "src" not in weird[1]


# -- OCSF --------------------------------------------------------------------------------------
# Required attributes of OCSF 1.1.0 (github.com/ocsf/ocsf-schema: events/base_event.json,
# events/application/api_activity.json, events/iam/account_change.json, events/iam/
# authentication.json; objects/metadata.json, product.json, api.json, actor.json, user.json,
# network_endpoint.json; constraints "at_least_one").
BASE_REQUIRED = ("activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid")
CLASS_REQUIRED = {6003: ("actor", "api", "src_endpoint"), 3001: ("user",), 3002: ("user",)}
CLASS_AT_LEAST_ONE = {3002: ("service", "dst_endpoint")}
ACTIVITIES = {6003: {1, 2, 3, 4, 99}, 3001: {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 99}, 3002: {1, 2, 3, 4, 5, 99}}
ENDPOINT_ONE_OF = ("ip", "uid", "name", "hostname", "svc_name", "instance_uid", "interface_uid", "interface_name")


def ocsf_problems(event: dict[str, Any]) -> list[str]:
    """Every way ``event`` misses the OCSF 1.1.0 requirements of its class (empty: valid)."""
    problems = [f"missing {name}" for name in BASE_REQUIRED if name not in event]
    if problems:
        return problems
    cls = event["class_uid"]
    problems += [f"missing {name}" for name in CLASS_REQUIRED.get(cls, ("?",)) if name not in event]
    if cls in CLASS_AT_LEAST_ONE and not any(k in event for k in CLASS_AT_LEAST_ONE[cls]):
        problems.append(f"needs one of {CLASS_AT_LEAST_ONE[cls]}")
    if event["category_uid"] != cls // 1000 or event["activity_id"] not in ACTIVITIES[cls]:
        problems.append("class/category/activity mismatch")
    if event["type_uid"] != cls * 100 + event["activity_id"]:
        problems.append("type_uid != class_uid * 100 + activity_id")
    if not isinstance(event["time"], int) or isinstance(event["time"], bool):
        problems.append("time is not epoch milliseconds")
    if event["severity_id"] not in (0, 1, 2, 3, 4, 5, 6, 99) or event.get("status_id", 0) not in (0, 1, 2, 99):
        problems.append("severity/status out of range")
    meta = event["metadata"]
    if "version" not in meta or not {"name", "vendor_name"} <= set(meta.get("product", {})):
        problems.append("metadata needs version and product.name/vendor_name")
    if "api" in event and "operation" not in event["api"]:
        problems.append("api.operation missing")
    if "actor" in event and not {"process", "user", "invoked_by", "session", "app_name", "app_uid"} & set(event["actor"]):
        problems.append("actor needs a user, process, session or app")
    for name in ("user",):
        if name in event and not {"account", "name", "uid"} & set(event[name]):
            problems.append(f"{name} needs account, name or uid")
    for name in ("src_endpoint", "dst_endpoint"):
        if name in event and not set(ENDPOINT_ONE_OF) & set(event[name]):
            problems.append(f"{name} needs one of {ENDPOINT_ONE_OF}")
    return problems


def test_ocsf_events_have_every_required_field(loaded: Loaded) -> None:
    lines = export(loaded, "ocsf").splitlines()
    seen: dict[int, int] = {}
    for line in lines:
        event = orjson.loads(line)
        assert ocsf_problems(event) == [], event
        seen[event["class_uid"]] = seen.get(event["class_uid"], 0) + 1
    assert set(seen) == {6003, 3001, 3002} and all(n > 20 for n in seen.values())


def test_ocsf_fields_carry_the_event(loaded: Loaded) -> None:
    lines = export(loaded, "ocsf", "id:awk-cef-3 OR id:awk-unicode-5").splitlines()
    change, login = (orjson.loads(line) for line in lines)
    assert change["class_uid"] == 6003 and change["api"]["operation"] == "org.settings.update"
    assert change["activity_id"] == 3 and change["src_endpoint"] == {"ip": "2001:db8::7"}
    assert change["time"] == 1793502000000 and change["metadata"]["uid"] == "awk-cef-3"
    assert change["unmapped"]["after"]["sso"] == {"enforced": True}
    assert login["class_uid"] == 3002 and login["type_uid"] == 300201 and login["status_id"] == 2
    assert login["user"]["uid"] == "zoë@exämple.com" and login["dst_endpoint"]["svc_name"] == "edge"
    assert ocsf_problems(change) == ocsf_problems(login) == []


@pytest.mark.parametrize(("action", "expected"), [
    ("iam.user.create", (3001, 1)), ("iam.user.enable", (3001, 2)), ("auth.password.change", (3001, 3)),
    ("auth.password.reset", (3001, 4)), ("iam.user.disable", (3001, 5)), ("iam.role.delete", (3001, 6)),
    ("iam.role.attach_policy", (3001, 7)), ("iam.role.detach_policy", (3001, 8)),
    ("account.lock", (3001, 9)), ("auth.mfa.enable", (3001, 10)), ("auth.mfa.disable", (3001, 11)),
    ("iam.role.update", (3001, 99)), ("auth.login", (3002, 1)), ("vpn.session.logout", (3002, 2)),
    ("sso.saml.assert", (3002, 99)), ("storage.bucket.create", (6003, 1)), ("secret.read", (6003, 2)),
    ("k8s.deployment.update", (6003, 3)), ("storage.object.delete", (6003, 4)),
    ("net.vpn.connect", (6003, 99)), ("iam.group.member.add", (6003, 1)),
    ("iam.create_user", (3001, 1)), ("iam.attach_role_policy", (3001, 7)),
    ("signin.console_login", (3002, 1)), ("sts.assume_role", (6003, 99)),
    ("ec2.describe_instances", (6003, 2)), ("iam.create_login_profile", (6003, 1)),
])
def test_ocsf_class_by_action(action: str, expected: tuple[int, int]) -> None:
    assert classify(action) == expected


# -- real CloudTrail records ---------------------------------------------------------------------
def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def from_cloudtrail(record: dict[str, Any]) -> dict[str, Any]:
    """A deliberately simple CloudTrail → envelope mapping (the adapters feature owns the real one)."""
    service = record["eventSource"].split(".")[0].replace("-", "_")
    who = record.get("userIdentity") or {}
    error = record.get("errorCode")
    outcome = "success" if not error else "denied" if "Denied" in error or "Unauthorized" in error else "failure"
    target = (record.get("resources") or [{}])[0].get("ARN") or json.dumps(record.get("requestParameters"))[:200]
    event: dict[str, Any] = {
        "id": record["eventID"], "time": record["eventTime"],
        "actor": {"id": who.get("arn") or who.get("principalId") or who.get("type", "unknown"),
                  "type": who.get("type", "unknown"), "user_agent": record["userAgent"][:1024]},
        "action": f"{service}.{_snake(record['eventName'])}",
        "resource": {"type": service, "id": target or "-"},
        "outcome": outcome, "source": {"service": record["eventSource"], "region": record["awsRegion"],
                                       "environment": "aws"},
        "metadata": {"source_ip": record["sourceIPAddress"], "account": record["recipientAccountId"],
                     "read_only": record["readOnly"], "request": record["requestParameters"] or {}},
    }
    if record.get("requestID"):
        event["request_id"] = record["requestID"]
    if record.get("errorMessage"):
        event["reason"] = record["errorMessage"]
    return event


def test_real_cloudtrail_records_export_cleanly(testdata: Path, tmp_path: Path) -> None:
    records = [r for f in sorted((testdata / "cloudtrail-stratus-red-team" / "detonation-logs").glob("*.json"))
               for r in json.loads(f.read_text())]
    assert len(records) == 310
    store = SQLiteStore(tmp_path / "ct.db")
    search = for_store(store)
    load(store, [from_cloudtrail(r) for r in records], Keyring.generate(f"test.example/{LOG}", RECEIVED))
    entries = list(iter_matches(search, LOG, parse("")))
    ocsf = [orjson.loads(line) for line in b"".join(export_chunks(entries, "ocsf")).splitlines()]
    cef = b"".join(export_chunks(entries, "cef")).decode().splitlines()
    assert len(ocsf) == len(cef) == 310
    for event in ocsf:
        assert ocsf_problems(event) == [], event
    for line in cef:
        header, ext = parse_cef(line)
        assert len(header) == 7 and ext["act"] == header[4]
    assert len({e["class_uid"] for e in ocsf}) >= 2
    denied = list(iter_matches(search, LOG, parse("outcome:denied AND source.environment:aws")))
    assert denied and all(orjson.loads(e.body)["outcome"] == "denied" for e in denied)
    store.close()
