"""Each pipeline stage alone, then the whole list."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import make_event
from trailseal.core.canonical import canonicalize
from trailseal.core.errors import InvalidEvent, LimitExceeded
from trailseal.core.hashing import leaf_hash
from trailseal.pipeline.crypto import Tokenizer
from trailseal.pipeline.prepare import BatchError, content_hash
from trailseal.pipeline.redact import RedactionPolicy, Redactor
from trailseal.pipeline.sampling import SamplingPolicy, SamplingRule
from trailseal.pipeline.stages import (
    STAGES,
    STAGES_OFF,
    Context,
    Correlation,
    Draft,
    Tenant,
    enrich,
    parse,
    redact,
    run_stages,
    sample,
    seal,
    validate,
)
from trailseal.pipeline.state import TenantPolicy
from trailseal.schema.registry import MemorySchemaStore, SchemaRegistry

NOW = "2026-11-28T10:15:31.500000Z"
KEY = b"k" * 32


def tenant(policy: TenantPolicy | None = None) -> Tenant:
    policy = policy or TenantPolicy()
    registry = SchemaRegistry(MemorySchemaStore())
    tokenizer = Tokenizer(KEY)
    keys: dict[str, tuple[str, bytes]] = {}

    def subject_key(subject: str) -> tuple[str, bytes]:
        return keys.setdefault(subject, ("k" + subject[4:14].replace("-", "x"), b"s" * 32))

    return Tenant("default", policy, tokenizer, Redactor(policy.redaction, tokenizer, subject_key),
                  lambda action: registry.resolve("default", action))


def context(**overrides: Any) -> Context:
    base: dict[str, Any] = {"log": "default", "received_at": NOW, "tenant": tenant(), "node": "node-1"}
    base.update(overrides)
    return Context(**base)


def parsed(event: dict[str, Any], ctx: Context | None = None) -> tuple[Draft, Context]:
    ctx = ctx or context()
    draft = Draft(0, event)
    parse(draft, ctx)
    return draft, ctx


def test_stage_list_is_visible_and_ordered() -> None:
    assert [s.__name__ for s in STAGES] == ["parse", "validate", "redact", "enrich", "sample", "seal"]  # type: ignore[attr-defined]
    assert [s.__name__ for s in STAGES_OFF] == ["parse", "enrich", "seal"]  # type: ignore[attr-defined]


def test_parse_checks_the_envelope_and_hashes_the_producer_content() -> None:
    event = make_event(id="evt-1")
    draft, ctx = parsed(event)
    assert draft.event is not None and draft.event.id == "evt-1"
    assert "received_at" not in draft.body
    assert len(draft.content_hash) == 32 and draft.content_hash == parsed(dict(event))[0].content_hash
    assert draft.content_hash != content_hash(draft.event)  # keyed: no dictionary attack on PII
    off, _ = parsed(event, context(tenant=None))
    assert off.content_hash == content_hash(off.event)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="actor"):
        parsed({**event, "actor": {}})
    with pytest.raises(InvalidEvent, match="reserved"):
        parsed({**event, "metadata": {"_trailseal": {"node": "x"}}})
    with pytest.raises(LimitExceeded):
        parse(Draft(0, event, size=10**6), ctx)


def test_validate_uses_the_most_specific_schema_and_collects_violations() -> None:
    draft, ctx = parsed(make_event())
    validate(draft, ctx)
    assert draft.schema is not None and (draft.schema.id, draft.schema.version) == ("iam.*", 1)
    assert not draft.quarantined
    bad, ctx = parsed(make_event(action="auth.mfa.challenge", metadata={"mfa_method": "pigeon"}))
    validate(bad, ctx)
    assert [(v.pointer, v.rule, v.value) for v in bad.violations] == [("/metadata/mfa_method", "enum", "pigeon")]
    unknown, ctx = parsed(make_event(action="widget.spin"))
    validate(unknown, ctx)
    assert not unknown.quarantined and unknown.schema is None  # accepted unvalidated by default
    strict = context(tenant=tenant(TenantPolicy(unknown_action="quarantine")))
    unknown, _ = parsed(make_event(action="widget.spin"), strict)
    validate(unknown, strict)
    assert unknown.violations[0].rule == "unknown-action"
    forged, ctx = parsed(make_event(action="trailseal.subject.forget"))
    validate(forged, ctx)
    assert forged.violations[0].rule == "reserved"


def test_redact_rewrites_the_body_and_the_quoted_values() -> None:
    policy = TenantPolicy(redaction=RedactionPolicy.from_json({"rules": [{"path": "/metadata/mfa_method", "action": "tokenize"}]}))
    ctx = context(tenant=tenant(policy))
    draft, _ = parsed(make_event(action="auth.login", metadata={"mfa_method": "secret-pigeon"}), ctx)
    validate(draft, ctx)
    redact(draft, ctx)
    token = draft.body["metadata"]["mfa_method"]
    assert token.startswith("tok_") and draft.violations[0].value == token
    assert "secret-pigeon" not in draft.violations[0].detail
    assert draft.original["metadata"]["mfa_method"] == "secret-pigeon"  # kept only for the sealed copy


def test_enrich_adds_server_fields_context_correlation_and_skew() -> None:
    ctx = context(correlation=Correlation.from_headers("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "rq-9"),
                  static_source={"region": "eu-central-1", "environment": "staging"})
    event = make_event(time="2026-11-28T10:15:30.000000Z")
    for name in ("request_id", "trace_id"):
        event.pop(name)
    event["source"] = {"service": "identity", "environment": "prod"}
    draft, _ = parsed(event, ctx)
    validate(draft, ctx)
    enrich(draft, ctx)
    body = draft.body
    assert (body["received_at"], body["log"], body["schema"]) == (NOW, "default", {"id": "iam.*", "version": 1})
    assert (body["request_id"], body["trace_id"], body["span_id"]) == ("rq-9", "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert body["source"] == {"service": "identity", "environment": "prod", "region": "eu-central-1"}  # producer's value wins
    assert body["metadata"]["_trailseal"] == {"skew_ms": 1500, "node": "node-1"}
    kept, _ = parsed(make_event(request_id="mine"), ctx)
    enrich(kept, ctx)
    assert kept.body["request_id"] == "mine"
    assert Correlation.from_headers("garbage", None) == Correlation()
    assert Correlation.from_headers("00-" + "0" * 32 + "-b7ad6b7169203331-01", " ").trace_id is None


def test_sample_is_deterministic_and_spares_critical_actions() -> None:
    policy = TenantPolicy(sampling=SamplingPolicy(critical=("k8s.secrets.*",), rules=(SamplingRule("k8s.*", 0.25),)))
    ctx = context(tenant=tenant(policy))
    kept = 0
    for n in range(400):
        draft, _ = parsed(make_event(id=f"e-{n}", action="k8s.pods.get"), ctx)
        sample(draft, ctx)
        again, _ = parsed(make_event(id=f"e-{n}", action="k8s.pods.get"), ctx)
        sample(again, ctx)
        assert draft.sampled_out == again.sampled_out and draft.sample_rule is not None
        kept += not draft.sampled_out
    assert 60 < kept < 140
    for action in ("k8s.secrets.get", "iam.role.update", "trailseal.sampling.summary"):
        draft, _ = parsed(make_event(action=action), ctx)
        sample(draft, ctx)
        assert not draft.sampled_out and draft.sample_rule is None


def test_seal_hashes_what_is_stored() -> None:
    ctx = context()
    draft, _ = parsed(make_event(reason="card 4111 1111 1111 1111 on file"), ctx)
    for stage in (validate, redact, enrich, sample, seal):
        stage(draft, ctx)
    assert draft.prepared is not None
    assert draft.prepared.body == canonicalize(draft.body)
    assert draft.prepared.leaf_hash == leaf_hash(draft.prepared.body)
    assert b"4111" not in draft.prepared.body and b"[REDACTED:card]" in draft.prepared.body
    quarantined = Draft(0, {}, violations=[object()])  # type: ignore[list-item]
    seal(quarantined, ctx)
    assert quarantined.prepared is None


def test_run_stages_is_all_or_nothing_for_malformed_input() -> None:
    ctx = context()
    drafts = run_stages([make_event(), make_event(action="auth.login", metadata={"mfa_method": "x"})], ctx)
    assert drafts[0].prepared is not None and drafts[1].quarantined and drafts[1].prepared is None
    with pytest.raises(BatchError) as caught:
        run_stages([make_event(), {**make_event(), "time": "yesterday"}, [1]], ctx)
    assert [i for i, _ in caught.value.errors] == [1, 2]
    off = run_stages([make_event(reason="AKIAIOSFODNN7EXAMPLE")], context(tenant=None), STAGES_OFF)
    assert off[0].prepared is not None and b"AKIAIOSFODNN7EXAMPLE" in off[0].prepared.body  # stages off
