"""Redaction rules, detectors and their defaults; tokens and subject encryption."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_event
from trailseal.core.errors import FormatError
from trailseal.pipeline import detectors
from trailseal.pipeline.crypto import Tokenizer, decrypt_field, parse_encrypted
from trailseal.pipeline.redact import RedactionPolicy, Redactor, path_matches

TOKENS = Tokenizer(b"t" * 32)
SUBJECT_KEY = b"s" * 32


def redactor(policy: dict[str, Any] | None = None) -> Redactor:
    return Redactor(RedactionPolicy.from_json(policy or {}), TOKENS, lambda subject: ("k-" + subject[4:12], SUBJECT_KEY))


def apply(event: dict[str, Any], policy: dict[str, Any] | None = None) -> dict[str, Any]:
    return redactor(policy).apply(event, log="default", event_id="e-1")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig_-abc", "jwt"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA\n-----END OPENSSH PRIVATE KEY-----", "private_key"),
        ("4111-1111-1111-1111", "card"),
        ("Alice.Smith+tag@Example.co.uk", "email"),
        ("+1 (415) 555-0142", "phone"),
        ("415-555-0142", "phone"),
        ("192.168.10.200", "ipv4"),
        ("fe80::1ff:fe23:4567:890a", "ipv6"),
    ],
)
def test_each_detector_finds_its_kind(text: str, kind: str) -> None:
    hits = detectors.find(f"before {text} after", detectors.KINDS)
    assert [(h.kind, h.text) for h in hits] == [(kind, text)]


def test_detectors_leave_ordinary_text_alone() -> None:
    ordinary = ("2026-11-28T10:15:30.123456Z", "4bf92f3577b34da6a3ce929d0e0e4736", "v1.23.4", "10:15:30",
                "4111 1111 1111 1112", "build-812 took 1234567 ms", "INC-2231", "1.2.3")
    for text in ordinary:
        assert detectors.find(text, detectors.KINDS) == [], text
    assert detectors.luhn_ok("79927398713") and not detectors.luhn_ok("79927398710")


def test_defaults_mask_secrets_anywhere_and_tokenize_contacts_in_free_text() -> None:
    event = make_event(reason="ping bob@Example.com or +44 20 7946 0958", actor={"id": "alice@example.com",
                       "user_agent": "curl AKIAIOSFODNN7EXAMPLE"},
                       after={"role": "admin", "note": "card 4111 1111 1111 1111", "contact": "carol@example.com"})
    out = apply(event)
    assert out["reason"] == f"ping [email:{TOKENS.token('bob@example.com')}] or [phone:{TOKENS.token('+442079460958')}]"
    assert out["actor"]["user_agent"] == "curl [REDACTED:aws_access_key]"
    assert out["actor"]["id"] == "alice@example.com"  # not free text: kept (add a rule to tokenize it)
    assert out["after"]["note"] == "card [REDACTED:card]"
    assert out["after"]["contact"] == "carol@example.com"  # before/after are structured, not free text
    assert out["metadata"]["approved_by"] == f"[email:{TOKENS.token('bob@example.com')}]"  # same token: joinable
    assert out["time"] == event["time"] and out["trace_id"] == event["trace_id"]
    assert event["reason"].startswith("ping bob@")  # the input is not changed


def test_repeated_strings_are_redacted_the_same_every_time() -> None:
    """The redactor remembers each scanned string's outcome: a repeat must come out exactly as the
    first (redacted, dropped or kept), never as the plaintext."""
    redactor = Redactor(RedactionPolicy.from_json({"detectors": {"aws_access_key": {"action": "drop"}}}), TOKENS)
    event = make_event(reason="ping bob@example.com", metadata={"key": "AKIAIOSFODNN7EXAMPLE", "note": "routine"})
    first = redactor.apply(event, log="default", event_id="e1")
    for _ in range(3):
        again = redactor.apply(make_event(**{k: event[k] for k in ("reason", "metadata")}), log="default", event_id="e2")
        assert again["reason"] == first["reason"] == f"ping [email:{TOKENS.token('bob@example.com')}]"
        assert "key" not in again["metadata"] and again["metadata"]["note"] == "routine"


def test_tenant_can_change_detectors() -> None:
    event = make_event(reason="from 10.0.0.7 by bob@example.com", metadata={"n": "AKIAIOSFODNN7EXAMPLE"})
    out = apply(event, {"detectors": {"ipv4": "mask", "email": {"action": "off"}, "aws_access_key": {"action": "drop"}}})
    assert out["reason"] == "from [REDACTED:ipv4] by bob@example.com"
    assert "n" not in out["metadata"]


def test_rules_drop_mask_tokenize_encrypt() -> None:
    policy = {"rules": [
        {"path": "/metadata/ssn", "action": "drop"},
        {"path": "/actor/ip", "action": "mask"},
        {"path": "/actor/id", "action": "tokenize"},
        {"path": "/after/**/email", "action": "encrypt", "subject": "/resource/id"},
        {"path": "/before/*", "action": "mask"},
    ]}
    event = make_event(metadata={"ssn": "078-05-1120", "ticket": "T-1"}, resource={"type": "user", "id": "cust-42"},
                       after={"profile": {"email": "dana@example.com"}}, before={"role": "viewer", "groups": ["a"]})
    out = apply(event, policy)
    assert "ssn" not in out["metadata"] and out["metadata"]["ticket"] == "T-1"
    assert out["actor"]["ip"] == "203.0.113.0"
    assert out["actor"]["id"] == TOKENS.token("alice@example.com")
    assert out["before"] == {"role": "[masked]", "groups": "[masked]"}
    sealed = out["after"]["profile"]["email"]
    key_id, blob = parse_encrypted(sealed)  # type: ignore[misc]
    assert key_id == "k-" + TOKENS.token("cust-42")[4:12]
    assert decrypt_field(SUBJECT_KEY, blob, log="default", event_id="e-1", pointer="/after/profile/email") == "dana@example.com"
    with pytest.raises(FormatError):  # bound to its place: moving the ciphertext breaks it
        decrypt_field(SUBJECT_KEY, blob, log="default", event_id="e-2", pointer="/after/profile/email")
    no_subject = apply(make_event(after={"email": "x@y.z"}), {"rules": [{"path": "/after/email", "action": "encrypt", "subject": "/nope"}]})
    assert no_subject["after"]["email"] == "[masked]"  # never stored in plaintext


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ({"path": "/time", "action": "mask"}, "/time"),
        ({"path": "/*", "action": "drop"}, "must stay"),
        ({"path": "/**", "action": "mask"}, "must stay"),
        ({"path": "/actor/id", "action": "drop"}, "required"),
        ({"path": "/metadata", "action": "mask"}, "object"),
        ({"path": "/actor/ip", "action": "tokenize"}, "IP"),
        ({"path": "after/x", "action": "drop"}, "JSON pointer"),
        ({"path": "/after/x", "action": "shred"}, "action"),
    ],
)
def test_policy_refuses_rules_that_would_break_the_envelope(rule: dict[str, str], needle: str) -> None:
    with pytest.raises(FormatError, match=needle):
        RedactionPolicy.from_json({"rules": [rule]})


def test_path_patterns_and_policy_round_trip() -> None:
    assert path_matches("/after/**/email", "/after/email") and path_matches("/after/**/email", "/after/a/b/email")
    assert path_matches("/metadata/*/token", "/metadata/x/token") and not path_matches("/metadata/*/token", "/metadata/token")
    assert not path_matches("/after/email", "/after/email/x")
    policy = RedactionPolicy.from_json({"rules": [{"path": "/after/email", "action": "encrypt"}], "free_text": ["/reason"]})
    assert RedactionPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(FormatError):
        RedactionPolicy.from_json({"detectors": {"dna": "mask"}})
