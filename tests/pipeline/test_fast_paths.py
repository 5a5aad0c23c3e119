"""The pipeline's fast paths against the plain code they replace: same bytes, same errors.

Each fast path (compiled redaction, detector prefilters, the one-walk parse, the seal that reuses
the parsed envelope) keeps its reference form in the code; these tests drive both with generated
policies and events and require identical results.
"""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_event
from trailseal.core.errors import FormatError
from trailseal.pipeline import crypto, detectors
from trailseal.pipeline.crypto import Tokenizer
from trailseal.pipeline.redact import RedactionPolicy, Redactor

TOKENS = Tokenizer(b"t" * 32)
SUBJECT_KEY = b"s" * 32
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _FixedNonces:
    """Stands in for the ``secrets`` module in ``crypto`` so ciphertexts compare equal."""

    @staticmethod
    def token_bytes(n: int) -> bytes:
        return b"\x07" * n


# -- values ----------------------------------------------------------------------------------------

NAMES = [
    "email",
    "ssn",
    "note",
    "secret",
    "x",
    "0",
    "1",
    "a~b",
    "a/b",
    "password",
    "profile",
    "ip",
    "id",
]
TEXTS = [
    "",
    "plain words",
    "bob@example.com",
    "call +44 20 7946 0958",
    "4111-1111-1111-1111",
    "4111 1111 1111 1112",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig",
    "10.0.0.7",
    "fe80::1ff:fe23:4567:890a",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    "415-555-0142",
    "2026-11-28T10:15:30Z",
    "ticket INC-2231 by ops1@example.org",
    "ünïcödé 📎 4111111111111111",
    "1234567890123",
]
scalars = st.one_of(
    st.sampled_from(TEXTS),
    st.text(alphabet="0123456789 -+@.:abcAKIeyJ", max_size=40),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.sampled_from([4111111111111111, 10**12, True, None]),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=5)
    ),
    max_leaves=16,
)
payloads = st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6)

PATHS = [
    "/metadata/ssn",
    "/metadata/*/secret",
    "/metadata/**/password",
    "/after/email",
    "/after/**/email",
    "/before/*",
    "/**/secret",
    "/*/x",
    "/after/profile",
    "/metadata/0",
    "/after/*/*",
    "/metadata/a~0b",
    "/metadata/a~1b",
    "/actor/ip",
    "/actor/id",
    "/actor/user_agent",
    "/resource/name",
    "/reason",
    "/source/host",
    "/metadata",
    "/after/**",
    "/**/0/email",
    "/metadata/*",
    "/after/*",
    "/metadata/email",
]
rules = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.sampled_from(PATHS),
            "action": st.sampled_from(["drop", "mask", "tokenize", "encrypt"]),
            "subject": st.sampled_from(
                ["/actor/id", "/resource/id", "/metadata/email", "/nope", "/after/0"]
            ),
        }
    ),
    max_size=6,
)
FREE = [
    "/reason",
    "/actor/user_agent",
    "/resource/name",
    "/metadata/**",
    "/metadata/note",
    "/after/*",
    "/**/email",
    "/before/**/x",
    "/**",
]
detector_settings = st.dictionaries(
    st.sampled_from(detectors.KINDS),
    st.fixed_dictionaries(
        {
            "action": st.sampled_from(["mask", "tokenize", "drop", "off"]),
            "scope": st.sampled_from(["anywhere", "free_text"]),
        }
    ),
    max_size=4,
)


def _policy(data: Any) -> RedactionPolicy:
    try:
        return RedactionPolicy.from_json(data)
    except FormatError:
        return RedactionPolicy.from_json({**data, "rules": []})


@st.composite
def bodies(draw: Any) -> dict[str, Any]:
    event = make_event()
    event["id"] = "e-1"
    event["actor"] = {
        "id": draw(st.sampled_from(["alice@example.com", "4111111111111111"])),
        "ip": "203.0.113.7",
        "user_agent": draw(st.sampled_from(TEXTS[1:])),
    }
    event["resource"] = {
        "type": draw(st.sampled_from(["user", "bob@example.com"])),
        "id": "cust-42",
        "name": draw(st.sampled_from(TEXTS[1:])),
    }
    event["reason"] = draw(st.sampled_from(TEXTS[1:]))
    event["producer"] = {"id": "svc-1", "seq": 4111111111111111}
    for name in ("before", "after", "metadata"):
        if draw(st.booleans()):
            event[name] = draw(payloads)
        else:
            event.pop(name, None)
    return event


@SETTINGS
@given(
    bodies(),
    rules,
    st.lists(st.sampled_from(FREE), max_size=3, unique=True),
    detector_settings,
    st.booleans(),
)
def test_compiled_redaction_matches_the_reference_walk(
    body: dict[str, Any],
    rule_list: list[dict[str, str]],
    free: list[str],
    settings_: dict[str, Any],
    text: bool,
) -> None:
    policy = _policy({"rules": rule_list, "free_text": free, "detectors": settings_})
    redactor = Redactor(policy, TOKENS, lambda subject: ("k-" + subject[4:12], SUBJECT_KEY))
    import orjson

    serialized = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode() if text else None
    with mock.patch.object(crypto, "secrets", _FixedNonces):
        for _ in range(2):  # the second pass runs on compiled states and caches
            fast = redactor.apply(body, log="default", event_id="e-1", text=serialized)
            slow = redactor.apply_reference(body, log="default", event_id="e-1", text=serialized)
            assert orjson.dumps(fast) == orjson.dumps(slow)  # same members, same order
            assert fast == slow


def test_a_literal_rule_wins_over_an_earlier_wildcard_rule_as_before() -> None:
    policy = RedactionPolicy.from_json(
        {
            "rules": [
                {"path": "/after/*", "action": "mask"},
                {"path": "/after/email", "action": "drop"},
            ]
        }
    )
    redactor = Redactor(policy, TOKENS)
    body = make_event(after={"email": "a@b.co", "role": "admin"})
    for apply in (redactor.apply, redactor.apply_reference):
        assert apply(body, log="default", event_id="e-1")["after"] == {"role": "[masked]"}


def test_compiled_redaction_leaves_untouched_members_shared() -> None:
    body = make_event(metadata={"ticket": "T-1", "ssn": "078-05-1120"}, after={"role": "admin"})
    redactor = Redactor(
        RedactionPolicy.from_json(
            {"rules": [{"path": "/metadata/ssn", "action": "drop"}], "free_text": ["/reason"]}
        ),
        TOKENS,
    )
    out = redactor.apply(body, log="default", event_id="e-1")
    assert (
        out is not body and out["after"] is body["after"] and out["metadata"] == {"ticket": "T-1"}
    )
    assert body["metadata"]["ssn"] == "078-05-1120"  # the input is not changed


# -- detectors -------------------------------------------------------------------------------------

_REFERENCE_CARD_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12}")


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([*TEXTS, " ", "-", "--", "7", "12345", "x", "é", "\n"]), max_size=12
    ).map("".join)
)
def test_may_contain_matches_the_plain_checks(text: str) -> None:
    for kind in detectors.KINDS:
        plain = (
            _REFERENCE_CARD_RUN.search(text) is not None
            if kind == "card"
            else detectors._PREFILTERS[kind](text)
        )
        assert detectors.may_contain(text, [kind]) == plain, kind


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from([*TEXTS, " ", "-", "7", "12345", "x", "é", "@", ".", ":"]), max_size=10
    ).map("".join)
)
def test_find_matches_a_plain_regex_scan(text: str) -> None:
    expected: list[detectors.Hit] = []
    for kind in detectors.KINDS:
        for match in detectors._REGEXES[kind].finditer(text):
            if detectors._confirmed(kind, match.group()):
                expected.append(detectors.Hit(kind, match.start(), match.end(), match.group()))
    expected.sort(key=lambda h: (h.start, detectors._ORDER[h.kind], -h.end))
    hits: list[detectors.Hit] = []
    for hit in expected:
        if not hits or hit.start >= hits[-1].end:
            hits.append(hit)
    assert detectors.find(text, detectors.KINDS) == hits


@pytest.mark.parametrize("kinds", [detectors.KINDS, detectors.SECRETS, ("email", "phone")])
def test_find_results_do_not_depend_on_earlier_calls(kinds: tuple[str, ...]) -> None:
    text = "ops@example.com +44 20 7946 0958 4111-1111-1111-1111"
    assert detectors.find(text, kinds) == detectors.find(text, kinds)


# -- Event.revise ----------------------------------------------------------------------------------

REVISED_VALUES: dict[str, list[Any]] = {
    "actor": [
        {"id": "tok_abc"},
        {"id": "a", "ip": "203.0.113.0"},
        {"id": "a", "ip": "2001:DB8::1"},
        {"id": "a", "ip": "2001:db8::1"},
        {"id": "a", "ip": "not-an-ip"},
        {"id": ""},
        {"id": "a", "x": "y"},
        {"id": "a", "type": None},
        {"id": "a", "user_agent": "u" * 1025},
        {"type": "user"},
        {"id": 5},
    ],
    "resource": [
        {"type": "t", "id": "i"},
        {"type": "t", "id": "i", "name": "n" * 1024},
        {"type": "t"},
        {"type": "t", "id": "i", "name": "n" * 1025},
    ],
    "source": [{}, {"host": "h"}, {"host": "h" * 257}, {"region": None}, {"color": "red"}, "nope"],
    "reason": ["r", "r" * 4096, "r" * 4097, "", 7, None],
    "request_id": ["rq", "q" * 256, "q" * 257],
    "trace_id": ["t"],
    "span_id": ["s"],
    "received_at": [
        "2026-11-28T10:15:31.500000Z",
        "2026-11-28T10:15:31Z",
        "2026-11-28T12:15:31+02:00",
        "2026-13-01T00:00:00.000000Z",
        "yesterday",
        5,
    ],
    "log": ["default", "a/b", "", "x" * 129, 3],
    "schema": [
        {"id": "iam.*", "version": 1},
        {"id": "iam.*", "version": 0},
        {"id": "iam.*"},
        {"id": "", "version": 1},
        {"id": "s", "version": True},
        {"id": "s", "version": 2**53},
    ],
    "before": [{}, {"x": 1}, [1], "x"],
    "after": [{"y": [1, 2]}],
    "metadata": [{"_trailseal": {"node": "n"}}],
    "id": ["e-2"],
    "time": ["2026-11-28T10:15:30.123456Z"],
    "action": ["auth.login"],
    "outcome": ["failure"],
    "producer": [{"id": "p", "seq": 1}],
    "color": ["red"],
}


CHANGES = [(name, value) for name, pool in REVISED_VALUES.items() for value in pool]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(CHANGES), max_size=3),
    st.lists(
        st.sampled_from(["reason", "source", "before", "actor", "received_at", "schema"]),
        max_size=2,
    ),
    st.booleans(),
)
def test_revise_is_from_dict_or_declines(
    changes: list[tuple[str, Any]], removed: list[str], server: bool
) -> None:
    from trailseal.core.canonical import canonicalize
    from trailseal.core.errors import InvalidEvent
    from trailseal.core.event import Event

    raw = make_event(id="e-1", producer={"id": "p", "seq": 0})
    if server:
        raw.update(
            received_at="2026-11-28T10:15:31.500000Z",
            log="default",
            schema={"id": "iam.*", "version": 1},
        )
    event = Event.from_dict(raw, check_payloads=False)
    basis = event.to_dict()
    if not server:
        for name in ("received_at", "log", "schema"):
            basis.pop(name, None)
    data = dict(basis)
    for name, value in changes:
        data[name] = value
    for name in removed:
        data.pop(name, None)
    revised = event.revise(data, basis)
    try:
        expected: Event | None = Event.from_dict(data, check_payloads=False)
    except InvalidEvent:
        expected = None
    if revised is not None:
        assert revised == expected
        assert expected is not None and canonicalize(data) == canonicalize(expected.to_dict())


def test_revise_accepts_the_usual_changes() -> None:
    from trailseal.core.event import Event

    event = Event.from_dict(make_event(id="e-1"), check_payloads=False)
    basis = event.to_dict()
    data = {
        **basis,
        "actor": {**basis["actor"], "ip": "203.0.113.0"},
        "received_at": "2026-11-28T10:15:31.500000Z",
        "log": "default",
        "schema": {"id": "iam.*", "version": 1},
        "metadata": {"_trailseal": {"skew_ms": 5}},
    }
    revised = event.revise(data, basis)
    assert revised is not None and revised == Event.from_dict(data, check_payloads=False)
    assert (
        revised.actor is not event.actor and revised.resource is event.resource
    )  # unchanged: reused
    assert event.revise({**data, "reason": None}, basis) is None  # null: from_dict decides
    assert (
        event.revise({**data, "time": "2026-11-28T10:15:30.123456Z"}, basis) is None
    )  # structural: from_dict


# -- the whole stage list ------------------------------------------------------------------------------

raw_payloads = st.recursive(
    st.one_of(scalars, st.sampled_from([2**53 + 1, 2**60, 1e21, -0.0, "\ud800", "\U0001f4ce key"])),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)
        | st.tuples(inner)
    ),
    max_leaves=12,
)
plain_values = st.recursive(
    st.one_of(
        st.sampled_from(TEXTS), st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1), st.none()
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(NAMES), inner, max_size=4)
    ),
    max_leaves=10,
)
ENVELOPE_VALUES: dict[str, list[Any]] = {
    "reason": ["r" * 4090 + " bob@example.com", "4111 1111 1111 1111", "", None],
    "actor": [
        {"id": "alice@example.com", "ip": "2001:DB8::7", "user_agent": "AKIAIOSFODNN7EXAMPLE"},
        {"id": "4111111111111111", "type": "user"},
        {"id": "a", "ip": "nope"},
        [1],
    ],
    "resource": [{"type": "customer", "id": "cust-42", "name": "bob@example.com"}, {"type": "x"}],
    "source": [{"host": "h" * 250}, {"region": "eu"}, {}],
    "time": ["2026-11-28T12:15:30+02:00", "2026-11-28T10:15:30.123456Z", "garbage"],
    "id": ["e-1", "0190f3a2-7b1c-7d4e-9a2b-411111111111", "bad id"],
    "received_at": ["2026-11-28T10:15:31Z"],
    "log": ["other"],
    "schema": [{"id": "x", "version": 1}],
    "action": ["auth.login", "auth.mfa.challenge", "widget.spin", "trailseal.x", "Bad"],
    "request_id": [None, "rq"],
    "producer": [{"id": "p", "seq": 3}, {"id": "p", "seq": -1}],
    "extra": ["x"],
}
STAGE_RULES = [
    {"path": "/metadata/ssn", "action": "drop"},
    {"path": "/actor/ip", "action": "mask"},
    {"path": "/metadata/email", "action": "tokenize"},
    {"path": "/after/email", "action": "encrypt", "subject": "/resource/id"},
    {"path": "/actor/user_agent", "action": "encrypt"},
    {"path": "/source/host", "action": "encrypt"},
    {"path": "/resource/name", "action": "tokenize"},
    {"path": "/reason", "action": "encrypt"},
    {"path": "/before/**", "action": "drop"},
    {"path": "/metadata/*/secret", "action": "mask"},
]


@st.composite
def raw_events(draw: Any) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([[1], "event", None, {}]))
    event = make_event()
    for name, pool in ENVELOPE_VALUES.items():
        if draw(st.integers(0, 6)) == 0:
            value = draw(st.sampled_from(pool))
            if value is None:
                event.pop(name, None)
            else:
                event[name] = value
    for name in ("before", "after", "metadata"):
        choice = draw(st.integers(0, 5))
        if choice == 0:
            event.pop(name, None)
        elif choice == 1:  # anything, floats, tuples, lone surrogates, unsafe integers
            event[name] = draw(
                st.dictionaries(st.sampled_from([*NAMES, "_trailseal"]), raw_payloads, max_size=4)
            )
        elif choice == 2:  # plain JSON
            event[name] = draw(
                st.dictionaries(st.sampled_from([*NAMES, "_trailseal"]), plain_values, max_size=4)
            )
    return event


def _outcome(stages: Any, raws: list[Any], ctx: Any) -> Any:
    from trailseal.pipeline.prepare import BatchError
    from trailseal.pipeline.stages import run_stages

    fixed_id = "01922171-1083-7460-8013-114196693664"  # generated ids must compare equal (and look like a card)
    with (
        mock.patch.object(crypto, "secrets", _FixedNonces),
        mock.patch("trailseal.core.event.new_event_id", lambda: fixed_id),
    ):
        try:
            drafts = run_stages(raws, ctx, stages)
        except BatchError as exc:
            return [(i, type(e).__name__, e.field, e.detail) for i, e in exc.errors]
        except Exception as exc:  # LimitExceeded and the like: must match too
            return (type(exc).__name__, str(exc))
    out = []
    for d in drafts:
        p = d.prepared
        out.append(
            (
                d.event_id,
                d.content_hash,
                d.canonical,
                d.body,
                d.violations,
                d.schema,
                d.sampled_out,
                None if p is None else (p.event, p.body, p.leaf_hash, p.content_hash),
            )
        )
    return out


class _ReferenceRedactor(Redactor):
    def apply(
        self, body: Any, *, log: str, event_id: str, text: str | None = None
    ) -> dict[str, Any]:
        return self.apply_reference(body, log=log, event_id=event_id, text=text)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(raw_events(), min_size=1, max_size=3),
    st.sampled_from([2, 3, 4, 32]),
    st.sampled_from([700, 65_535]),
    st.integers(0, 2),
    st.lists(st.sampled_from(STAGE_RULES), max_size=4),
)
def test_stages_match_the_reference_stages(
    raws: list[Any], depth: int, size: int, mode: int, rule_list: list[dict[str, str]]
) -> None:
    from trailseal.pipeline.stages import (
        STAGES,
        STAGES_OFF,
        Context,
        Correlation,
        Tenant,
        enrich,
        parse_reference,
        redact,
        sample,
        seal_reference,
        validate,
    )
    from trailseal.pipeline.state import TenantPolicy
    from trailseal.schema.registry import MemorySchemaStore, SchemaRegistry

    registry = SchemaRegistry(MemorySchemaStore())
    policy = TenantPolicy(redaction=_policy({"rules": rule_list}))

    def make_tenant(cls: type[Redactor]) -> Tenant:
        return Tenant(
            "default",
            policy,
            TOKENS,
            cls(policy.redaction, TOKENS, lambda s: ("k-" + s[4:12], SUBJECT_KEY)),
            lambda action: registry.resolve("default", action),
        )

    def context(tenant: Tenant | None) -> Context:
        return Context(
            log="default",
            received_at="2026-11-28T10:15:31.500000Z",
            tenant=tenant,
            node="node-1",
            correlation=Correlation("rq-1", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
            static_source={"region": "eu-central-1"},
            max_depth=depth,
            max_event_bytes=size,
            internal=mode == 2,
        )

    if mode == 0:  # stages off
        fast = _outcome(STAGES_OFF, raws, context(None))
        slow = _outcome((parse_reference, enrich, seal_reference), raws, context(None))
    else:
        fast = _outcome(STAGES, raws, context(make_tenant(Redactor)))
        slow = _outcome(
            (parse_reference, validate, redact, enrich, sample, seal_reference),
            raws,
            context(make_tenant(_ReferenceRedactor)),
        )
    assert fast == slow


# -- producer counters -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.integers(0, 40), st.sampled_from([10_050, 25_000])), max_size=30
    ),
    st.lists(st.integers(0, 40), max_size=5),
)
def test_observe_all_is_observe_folded(seqs: list[int | None], earlier: list[int]) -> None:
    from trailseal.pipeline.producers import ProducerStats, observe, observe_all

    start = ProducerStats("p")
    for seq in earlier:
        start = observe(start, seq, "t0")
    expected = start
    for seq in seqs:
        expected = observe(expected, seq, "t1")
    assert observe_all(start, seqs, "t1") == expected


@pytest.mark.parametrize("key", [b"k" * 32, b"x" * 64, b"y" * 65, bytes(range(100))])
def test_tokenizer_mac_is_hmac_sha256(key: bytes) -> None:
    import base64
    import hmac

    tokens = Tokenizer(key)
    for data in (b"", b"abc", b"z" * 1000):
        assert tokens.content_hash(data) == hmac.digest(key, b"content\x00" + data, "sha256")
    digest = hmac.digest(key, "héllo".encode(), "sha256")[:16]
    assert tokens.token("héllo") == "tok_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
