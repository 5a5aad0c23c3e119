"""Compatibility between two versions of a schema, decided by searching for a counter-example.

=========  ====================================================================================
mode       a new version is accepted when ...
=========  ====================================================================================
backward   it accepts every event the previous version accepted (the default)
forward    the previous version accepts every event the new one accepts
full       both
none       always (no check)
=========  ====================================================================================

Method. Deciding inclusion between two JSON Schemas is intractable in general, so the check looks
for a counter-example instead: :func:`candidates` walks *both* documents and builds boundary
instances — every ``enum`` member and ``const``; each declared property absent and present with each
of its own candidates; an undeclared extra property; strings at ``minLength``/``maxLength`` and one
past them, matching each ``pattern`` (a string built from the regular expression), in each known
``format``; numbers at, inside and just outside ``minimum``/``maximum``/``exclusive*``; arrays at
their item-count bounds; each ``anyOf``/``oneOf`` branch and ``if``/``then``/``else`` arm; local
``$ref``. Each candidate is also completed into a full event envelope (required envelope fields
filled in, action under the registration key). A candidate that is a valid envelope and that the
accepting side validates but the other side refuses is a counter-example; the first one found is
reported with the violations.

Limits. The search is sound (a reported counter-example is real) but not complete: it can miss an
incompatibility that only shows in the interior of a numeric range, in a regular expression's
non-minimal strings, in a combination of two or more properties, or under ``dependentSchemas``,
``patternProperties``, ``unevaluated*`` and remote ``$ref``. Registering with ``none`` skips it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from re import _parser as sre_parse  # type: ignore[attr-defined]  # the parser behind re
from typing import Any

import orjson

from trailseal.core.errors import ConflictError, InvalidEvent
from trailseal.core.event import Event
from trailseal.schema.validator import CompiledSchema, Violation

__all__ = ["MODES", "CounterExample", "IncompatibleSchema", "candidates", "find_counter_example"]
__all__ += ["regex_examples"]

MODES = ("backward", "forward", "full", "none")
"""Compatibility modes a registration may ask for."""

_MAX_CANDIDATES = 4000
_MAX_DEPTH = 6
_PER_PROPERTY = 12
_FORMATS: dict[str, list[str]] = {
    "email": ["alice@example.com"],
    "idn-email": ["alice@example.com"],
    "date-time": ["2024-05-01T12:00:00Z"],
    "date": ["2024-05-01"],
    "time": ["12:00:00Z"],
    "ipv4": ["192.0.2.1"],
    "ipv6": ["2001:db8::1"],
    "uri": ["https://example.com/a"],
    "uri-reference": ["/a"],
    "hostname": ["example.com"],
    "uuid": ["01890a5d-ac96-774b-bcce-b302099a8057"],
    "duration": ["PT1M"],
}
_ANY: list[Any] = [None, True, 0, 1.5, "a", [], {}]


@dataclass(frozen=True)
class CounterExample:
    """An event one version accepts and the other refuses; ``violations`` from the refusing one."""

    direction: str  # "backward": old accepts, new refuses; "forward": new accepts, old refuses
    instance: Any
    violations: tuple[Violation, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "direction": self.direction,
            "event": self.instance,
            "violations": [v.to_json() for v in self.violations],
        }


class IncompatibleSchema(ConflictError):
    """A new schema version breaks the registration's compatibility rule; carries the example."""

    def __init__(self, message: str, counter_example: CounterExample) -> None:
        super().__init__(message)
        self.counter_example = counter_example


# -- candidate generation ------------------------------------------------------------------------
def _key(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(value).encode()


def _dedupe(values: list[Any], limit: int = _MAX_CANDIDATES) -> list[Any]:
    seen: set[bytes] = set()
    out: list[Any] = []
    for value in values:
        key = _key(value)
        if key not in seen:
            seen.add(key)
            out.append(value)
            if len(out) >= limit:
                break
    return out


def _resolve(root: Any, ref: str) -> Any:
    """A local ``#/...`` reference inside ``root``; anything else resolves to ``{}``."""
    if not ref.startswith("#"):
        return {}
    node = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def regex_examples(pattern: str, limit: int = 4) -> list[str]:
    """Strings that contain a match of ``pattern`` (JSON Schema patterns are unanchored)."""
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return []
    out: list[str] = []
    for stretch in (False, True):
        for branch in range(limit):
            try:
                text = _emit(parsed, branch, stretch)
            except (_Unsupported, RecursionError):
                break
            if text is not None and re.search(pattern, text):
                out.append(text)
    return _dedupe(out, limit)


class _Unsupported(Exception):
    pass


def _char_in(items: Any) -> str:
    negate = False
    options: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            options.append(chr(arg))
        elif name == "RANGE":
            options.append(chr(arg[0]))
        elif name == "CATEGORY":
            options.append(_category(str(arg)))
    if negate:
        for candidate in "aZ0_ -.":
            if candidate not in options:
                return candidate
        raise _Unsupported
    if not options:
        raise _Unsupported
    return options[0]


def _category(name: str) -> str:
    if "NOT_DIGIT" in name or "NOT_SPACE" in name:
        return "a"
    if "NOT_WORD" in name:
        return "-"
    if "DIGIT" in name:
        return "0"
    if "SPACE" in name:
        return " "
    return "a"


def _emit(parsed: Any, branch: int, stretch: bool) -> str | None:
    """One string for the parsed regex: ``branch`` picks alternatives, ``stretch`` repeats once more."""
    parts: list[str] = []
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            parts.append(chr(arg))
        elif name == "NOT_LITERAL":
            parts.append("a" if arg != ord("a") else "b")
        elif name == "ANY":
            parts.append("a")
        elif name == "IN":
            parts.append(_char_in(arg))
        elif name == "CATEGORY":
            parts.append(_category(str(arg)))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            count = low + 1 if stretch and (high is sre_parse.MAXREPEAT or high > low) else low
            count = min(count, 64)
            inner = _emit(sub, branch, stretch)
            if inner is None:
                return None
            parts.append(inner * count)
        elif name == "SUBPATTERN":
            inner = _emit(arg[-1], branch, stretch)
            if inner is None:
                return None
            parts.append(inner)
        elif name == "BRANCH":
            options = arg[1]
            inner = _emit(options[min(branch, len(options) - 1)], branch, stretch)
            if inner is None:
                return None
            parts.append(inner)
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue
        else:
            raise _Unsupported
    return "".join(parts)


def _types(schema: Mapping[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [t for t in declared if isinstance(t, str)]
    inferred: list[str] = []
    if any(k in schema for k in ("properties", "required", "additionalProperties", "minProperties")):
        inferred.append("object")
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems", "contains")):
        inferred.append("array")
    if any(k in schema for k in ("minLength", "maxLength", "pattern", "format")):
        inferred.append("string")
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        inferred.append("number")
    return inferred


def _merged(schema: Mapping[str, Any], extra: Any) -> dict[str, Any]:
    """``schema`` with another subschema's object keywords folded in (for generation only)."""
    out = dict(schema)
    if isinstance(extra, Mapping):
        for name, value in extra.items():
            if name == "properties" and isinstance(value, Mapping):
                out["properties"] = {**out.get("properties", {}), **value}
            elif name == "required" and isinstance(value, list):
                out["required"] = [*out.get("required", []), *value]
            elif name not in out:
                out[name] = value
    return out


def _examples(schema: Any, root: Any, depth: int) -> list[Any]:
    if schema is True or schema == {}:
        return list(_ANY)
    if not isinstance(schema, Mapping):
        return []
    if depth > _MAX_DEPTH:
        return [None, "a", 0, {}, []]
    out: list[Any] = []
    if "$ref" in schema and isinstance(schema["$ref"], str):
        target = _resolve(root, schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        out += _examples(_merged(rest, target), root, depth + 1)
        return _dedupe(out)
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    for keyword in ("anyOf", "oneOf"):
        for branch in schema.get(keyword) or []:
            out += _examples(_merged(_without(schema, keyword), branch), root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        folded = _without(schema, "allOf")
        for part in schema["allOf"]:
            folded = _merged(folded, part)
        out += _examples(folded, root, depth + 1)
    if "if" in schema:
        base = _without(schema, "if", "then", "else")
        for arm in ("then", "else"):
            if arm in schema:
                out += _examples(_merged(base, schema[arm]), root, depth + 1)
    plain = _without(schema, "anyOf", "oneOf", "allOf", "if", "then", "else")
    types = _types(plain) or ["null", "boolean", "integer", "number", "string", "array", "object"]
    for kind in types:
        out += _typed(kind, plain, root, depth)
    return _dedupe(out)


def _without(schema: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in names}


def _typed(kind: str, schema: Mapping[str, Any], root: Any, depth: int) -> list[Any]:
    if kind == "null":
        return [None]
    if kind == "boolean":
        return [True, False]
    if kind in ("integer", "number"):
        return _numbers(schema, integer=kind == "integer")
    if kind == "string":
        return _strings(schema)
    if kind == "array":
        return _arrays(schema, root, depth)
    if kind == "object":
        return _objects(schema, root, depth)
    return []


def _numbers(schema: Mapping[str, Any], integer: bool) -> list[Any]:
    values: list[float] = [0, 1, -1, 2, 100, 2**31, 2**53 - 1, -(2**31)]
    if not integer:
        values += [0.5, -0.5, 1.25]
    for name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = schema.get(name)
        if isinstance(bound, int | float) and not isinstance(bound, bool):
            values += [bound, bound - 1, bound + 1]
            if not integer:
                values += [bound - 0.5, bound + 0.5]
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        values += [step, step * 2, step * 3 + (0.5 if not integer else 1)]
    out: list[Any] = []
    for value in values:
        if integer:
            if float(value).is_integer():
                out.append(int(value))
        else:
            out.append(value)
    return out


def _strings(schema: Mapping[str, Any]) -> list[Any]:
    low = schema.get("minLength", 0)
    high = schema.get("maxLength")
    low = low if isinstance(low, int) and not isinstance(low, bool) else 0
    high = high if isinstance(high, int) and not isinstance(high, bool) else None
    seeds: list[str]
    pattern = schema.get("pattern")
    fmt = schema.get("format")
    if isinstance(pattern, str):
        seeds = regex_examples(pattern) or ["a"]
    elif isinstance(fmt, str) and fmt in _FORMATS:
        seeds = list(_FORMATS[fmt])
    else:
        seeds = ["a", "example", "Example value 42", "x" * 200]
    out: list[Any] = ["", *seeds]
    filler = seeds[0] if seeds else "a"
    for length in (low, low - 1, high, None if high is None else high + 1):
        if isinstance(length, int) and 0 <= length <= 4096:
            base = (filler * (length // max(1, len(filler)) + 1))[:length] if filler else "a" * length
            out.append(base)
            if isinstance(pattern, str):
                out += [s + "a" * max(0, length - len(s)) for s in seeds]
    return out


def _arrays(schema: Mapping[str, Any], root: Any, depth: int) -> list[Any]:
    items = schema.get("items", {})
    item_examples = _examples(items, root, depth + 1)[:_PER_PROPERTY] if items is not False else []
    prefix = schema.get("prefixItems")
    head: list[Any] = []
    if isinstance(prefix, list):
        for part in prefix:
            found = _examples(part, root, depth + 1)
            head.append(found[0] if found else None)
    out: list[Any] = [[], head] if head else [[]]
    for item in item_examples:
        out.append([*head, item])
    first = item_examples[0] if item_examples else None
    for name in ("minItems", "maxItems"):
        count = schema.get(name)
        if isinstance(count, int) and not isinstance(count, bool):
            for n in (count - 1, count, count + 1):
                if 0 <= n <= 64:
                    out.append([*head, *([first] * max(0, n - len(head)))])
    if "contains" in schema:
        for found in _examples(schema["contains"], root, depth + 1)[:3]:
            out.append([found])
    return out


def _objects(schema: Mapping[str, Any], root: Any, depth: int) -> list[Any]:
    props = schema.get("properties") or {}
    props = props if isinstance(props, Mapping) else {}
    required = [n for n in schema.get("required") or [] if isinstance(n, str)]
    per_property = {
        name: _examples(sub, root, depth + 1)[:_PER_PROPERTY] for name, sub in props.items()
    }
    base: dict[str, Any] = {}
    for name in required:
        found = per_property.get(name) or ["a"]
        base[name] = copy.deepcopy(found[0])
    out: list[Any] = [base]
    full = dict(base)
    for name, found in per_property.items():
        if found:
            full.setdefault(name, copy.deepcopy(found[0]))
        for value in found:
            out.append({**base, name: value})
    out.append(full)
    for name in required:  # each required member missing: refused by one side, maybe not the other
        out.append({k: v for k, v in full.items() if k != name})
    extra = schema.get("additionalProperties", True)
    if extra is not False:
        for value in (_examples(extra, root, depth + 1)[:3] if isinstance(extra, Mapping) else ["x"]):
            out.append({**base, "x_extra": value})
    return out


def candidates(*schemas: Mapping[str, Any]) -> list[Any]:
    """Boundary instances drawn from every given schema document (deterministic, deduplicated)."""
    found: list[Any] = []
    for schema in schemas:
        found += _examples(schema, schema, 0)
    return _dedupe(found)


# -- the check -----------------------------------------------------------------------------------
def _sample_action(key: str) -> str:
    if key == "*":
        return "example.action"
    if key.endswith(".*"):
        return key[:-1] + "example"
    return key


def _envelope_base(key: str) -> dict[str, Any]:
    return {
        "time": "2024-05-01T12:00:00Z",
        "actor": {"id": "alice@example.com"},
        "action": _sample_action(key),
        "resource": {"type": "example", "id": "example-1"},
    }


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for name, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(name), Mapping):
            out[name] = _deep_merge(out[name], value)
        else:
            out[name] = value
    return out


def _envelopes(key: str, instances: list[Any]) -> Iterator[dict[str, Any]]:
    """Each candidate as given and completed into an envelope, kept when a valid event of ``key``."""
    from trailseal.schema.patterns import matches

    base = _envelope_base(key)
    yield base
    for instance in instances:
        if not isinstance(instance, Mapping):
            continue
        for event in (dict(instance), _deep_merge(base, instance)):
            try:
                Event.from_dict(event)
            except (InvalidEvent, TypeError, ValueError):
                continue
            if isinstance(event.get("action"), str) and matches(key, event["action"]):
                yield event


def find_counter_example(
    key: str, old: Mapping[str, Any], new: Mapping[str, Any], mode: str = "backward"
) -> CounterExample | None:
    """The first event that breaks ``mode`` between ``old`` and ``new`` (both for ``key``), if any."""
    if mode not in MODES:
        raise ValueError(f"compatibility: want one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return None
    old_schema, new_schema = CompiledSchema(old), CompiledSchema(new)
    pool = candidates(old, new)
    checks: list[tuple[str, CompiledSchema, CompiledSchema]] = []
    if mode in ("backward", "full"):
        checks.append(("backward", old_schema, new_schema))
    if mode in ("forward", "full"):
        checks.append(("forward", new_schema, old_schema))
    seen: set[bytes] = set()
    for event in _envelopes(key, pool):
        tag = _key(event)
        if tag in seen:
            continue
        seen.add(tag)
        for direction, accepting, refusing in checks:
            if accepting.is_valid(event) and not refusing.is_valid(event):
                return CounterExample(direction, event, tuple(refusing.violations(event)))
    return None
