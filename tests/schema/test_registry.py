"""Schema registry: patterns, violations, compatibility by counter-example, built-ins."""

from __future__ import annotations

import pytest

from tests.factories import make_event
from trailseal.cli.demo import demo_events
from trailseal.core.errors import FormatError, NotFoundError
from trailseal.schema.compat import (
    IncompatibleSchema,
    candidates,
    find_counter_example,
    regex_examples,
)
from trailseal.schema.patterns import best_match, check_pattern, matches
from trailseal.schema.registry import MemorySchemaStore, SchemaRegistry, load_builtins
from trailseal.schema.validator import CompiledSchema

ROLE_V1 = {"type": "object", "properties": {"after": {"type": "object", "properties": {
    "role": {"type": "string", "maxLength": 20}}}}}


def test_patterns_most_specific_wins() -> None:
    assert matches("iam.role.*", "iam.role.update") and not matches("iam.role.*", "iam.role")
    assert matches("*", "x") and matches("auth.login", "auth.login") and not matches("auth.login", "auth.logins")
    assert best_match(["*", "iam.*", "iam.role.*", "iam.role.update"], "iam.role.update") == "iam.role.update"
    assert best_match(["*", "iam.*", "iam.role.*"], "iam.role.grant") == "iam.role.*"
    assert best_match(["iam.*"], "auth.login") is None
    for bad in ("IAM.*", "iam.*.x", "", "iam..x", "a" * 200):
        with pytest.raises(FormatError):
            check_pattern(bad)


def test_violations_name_pointer_rule_and_value() -> None:
    schema = CompiledSchema({"type": "object", "required": ["outcome"], "additionalProperties": False,
                             "properties": {"outcome": {"enum": ["success"]}, "after": {"type": "object", "properties": {
                                 "n": {"type": "integer", "minimum": 1}}}}})
    found = {(v.pointer, v.rule): v.value for v in schema.violations({"after": {"n": 0}, "extra": 1})}
    assert found == {("/outcome", "required"): None, ("/extra", "additionalProperties"): 1,
                     ("/after/n", "minimum"): 0}
    with pytest.raises(FormatError, match="not a valid JSON Schema"):
        CompiledSchema({"type": "no-such-type"})


def test_regex_examples_match_their_pattern() -> None:
    import re

    for pattern in (r"^[a-z]+-[0-9]{2,4}$", r"^(foo|bar)\.baz", r"^[A-Z]{3}$", r"\d+x?", r"^v[0-9]+\.[0-9]+$"):
        found = regex_examples(pattern)
        assert found and all(re.search(pattern, text) for text in found), pattern


@pytest.mark.parametrize(
    ("new", "pointer", "rule"),
    [
        ({**ROLE_V1, "required": ["outcome"]}, "/outcome", "required"),
        ({"type": "object", "properties": {"after": {"type": "object", "properties": {"role": {"type": "string", "maxLength": 10}}}}},
         "/after/role", "maxLength"),
        ({"type": "object", "properties": {"after": {"type": "object", "properties": {"role": {"enum": ["admin", "viewer"]}}}}},
         "/after/role", "enum"),
        ({"type": "object", "properties": {"after": {"type": "object", "properties": {"role": {"type": "integer"}}}}},
         "/after/role", "type"),
        ({"type": "object", "properties": {"after": {"type": "object", "additionalProperties": False,
                                                     "properties": {"role": {"type": "string"}}}}},
         "/after/x_extra", "additionalProperties"),
        ({"type": "object", "properties": {"after": {"type": "object", "properties": {"role": {"type": "string", "pattern": "^r-"}}}}},
         "/after/role", "pattern"),
    ],
)
def test_backward_breaks_are_found_with_a_counter_example(new: dict, pointer: str, rule: str) -> None:  # type: ignore[type-arg]
    example = find_counter_example("iam.*", ROLE_V1, new, "backward")
    assert example is not None
    assert CompiledSchema(ROLE_V1).is_valid(example.instance) and not CompiledSchema(new).is_valid(example.instance)
    assert (example.violations[0].pointer, example.violations[0].rule) == (pointer, rule)
    assert example.instance["action"].startswith("iam.")  # a real envelope of the key


def test_widening_is_backward_compatible_and_forward_is_checked() -> None:
    wider = {"type": "object", "properties": {"after": {"type": "object", "properties": {"role": {"type": "string", "maxLength": 64}}}}}
    assert find_counter_example("iam.*", ROLE_V1, wider, "backward") is None
    forward = find_counter_example("iam.*", ROLE_V1, wider, "forward")
    assert forward is not None and forward.direction == "forward"
    assert find_counter_example("iam.*", ROLE_V1, wider, "full") is not None
    assert find_counter_example("iam.*", ROLE_V1, {"not": {}}, "none") is None
    integer = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 10}}}}}
    narrower = {"type": "object", "properties": {"metadata": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}}}}
    example = find_counter_example("x.*", integer, narrower)
    assert example is not None and example.instance["metadata"]["n"] == 10
    assert len(candidates(integer, narrower)) < 4000


def test_builtins_accept_the_events_tests_bench_and_demo_send() -> None:
    registry = SchemaRegistry(MemorySchemaStore())
    keys = {s.key for s in registry.builtins}
    assert {"auth.*", "iam.*", "deploy.*", "approval.*", "config.*", "data.*", "k8s.*", "billing.*", "resource.tag.*"} <= keys
    for event in [make_event(), *demo_events(300)]:
        resolved = registry.resolve("default", event["action"])
        assert resolved is not None, event["action"]
        assert resolved[1].violations(event) == [], event["action"]
    assert len(load_builtins()) == len(keys)


def test_registry_versions_and_refusal() -> None:
    registry = SchemaRegistry(MemorySchemaStore())
    first = registry.register("t1", "billing.invoice.*", ROLE_V1, created_at="2026-01-01T00:00:00Z")
    assert first.version == 1
    widened = {"type": "object", "properties": {"after": {"type": "object"}}}
    assert registry.register("t1", "billing.invoice.*", widened).version == 2
    with pytest.raises(IncompatibleSchema) as caught:
        registry.register("t1", "billing.invoice.*", {**widened, "required": ["reason"]})
    assert caught.value.counter_example.violations[0].pointer == "/reason"
    assert registry.resolve("t1", "billing.invoice.issue")[0].version == 2  # type: ignore[index]
    assert registry.resolve("t2", "billing.invoice.issue")[0].key == "billing.*"  # type: ignore[index]  # tenants apart
    # a built-in key continues at version 2 and is checked against the built-in
    with pytest.raises(IncompatibleSchema):
        registry.register("t1", "auth.*", {"type": "object", "required": ["reason"]})
    assert registry.register("t1", "auth.*", {"type": "object"}).version == 2
    assert [s.version for s in registry.versions("t1", "auth.*")] == [1, 2]
    with pytest.raises(NotFoundError):
        registry.get("t1", "nope.*")
