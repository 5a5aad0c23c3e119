"""Redaction: per-tenant field rules and free-text detectors, applied before canonicalization.

Rules (first match wins) name fields by JSON pointer, where a segment ``*`` matches one member or
index and ``**`` any number of them (``/after/email``, ``/metadata/*/token``, ``/**/password``):

=========  ===============================================================================
action     the stored value
=========  ===============================================================================
drop       the member is removed
mask       ``"[masked]"``; ``/actor/ip`` keeps its network (IPv4 /24, IPv6 /48)
tokenize   ``tok_...``: keyed HMAC of the value (same value, same token, per tenant)
encrypt    ``enc:A256GCM:<key id>:...``: AES-256-GCM under the key of the data subject named
           by the ``subject`` pointer (default ``/actor/id``); destroyed by ``subject forget``
=========  ===============================================================================

Detectors (:mod:`trailseal.pipeline.detectors`) run on string values that no rule matched, each
with an action (``mask``: ``[REDACTED:<kind>]``, ``tokenize``: ``[<kind>:tok_...]``, ``drop``: the
whole value is removed, ``off``) and a scope (``anywhere``: every string of the event but the
structural fields; ``free_text``: only fields matching ``free_text`` patterns). The defaults protect
without configuration: secrets (cloud access keys, JWTs, private keys, card numbers) are masked
anywhere; emails and phone numbers are tokenized in the free-text fields (``/reason``,
``/actor/user_agent``, ``/resource/name``, ``/metadata/**``); IP detectors are off.

Structural fields (``/id``, ``/time``, ``/action``, ``/outcome``, ``/log``, ``/received_at``,
``/schema``, ``/producer``, ``/resource/type``, correlation ids) are never rewritten, and a rule
that would rewrite one, or remove a required member, is refused when the policy is set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trailseal.core.errors import FormatError
from trailseal.pipeline import detectors
from trailseal.pipeline.crypto import Tokenizer, encrypt_field

__all__ = ["ACTIONS", "DEFAULT_DETECTORS", "DEFAULT_FREE_TEXT", "DetectorSetting", "Redactor"]
__all__ += ["RedactionPolicy", "Rule", "path_matches", "resolve_pointer"]

ACTIONS = ("drop", "mask", "tokenize", "encrypt")
DETECTOR_ACTIONS = ("mask", "tokenize", "drop", "off")
SCOPES = ("anywhere", "free_text")
MASK = "[masked]"
DEFAULT_FREE_TEXT = ("/reason", "/actor/user_agent", "/resource/name", "/metadata/**")

# Never scanned nor rewritten: identity, ordering and correlation of the event itself.
_STRUCTURAL = frozenset(
    {"id", "time", "action", "outcome", "log", "received_at", "schema", "request_id", "trace_id",
     "span_id", "producer"}
)
_NOT_SCANNED = frozenset({("actor", "ip"), ("resource", "type")})
_PROTECTED = ("/id", "/time", "/action", "/outcome", "/log", "/received_at", "/schema",
              "/schema/id", "/schema/version", "/producer", "/producer/id", "/producer/seq",
              "/resource/type", "/request_id", "/trace_id", "/span_id", "/actor", "/resource")
_REQUIRED = ("/actor/id", "/resource/id")
_OBJECTS = ("/before", "/after", "/metadata", "/source")


@dataclass(frozen=True)
class DetectorSetting:
    """What a detector does and where it looks."""

    action: str
    scope: str = "free_text"


DEFAULT_DETECTORS: Mapping[str, DetectorSetting] = {
    **{kind: DetectorSetting("mask", "anywhere") for kind in detectors.SECRETS},
    "email": DetectorSetting("tokenize", "free_text"),
    "phone": DetectorSetting("tokenize", "free_text"),
    "ipv4": DetectorSetting("off", "free_text"),
    "ipv6": DetectorSetting("off", "free_text"),
}


def _segments(path: str) -> tuple[str, ...]:
    if path == "" or path == "/":
        return ()
    if not path.startswith("/"):
        raise FormatError(f"redaction: path {path!r} must be a JSON pointer starting with /")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))


def _match(pattern: Sequence[str], i: int, segs: Sequence[str], j: int) -> bool:
    while i < len(pattern):
        part = pattern[i]
        if part == "**":
            return any(_match(pattern, i + 1, segs, k) for k in range(j, len(segs) + 1))
        if j >= len(segs) or (part != "*" and part != segs[j]):
            return False
        i, j = i + 1, j + 1
    return j == len(segs)


def path_matches(pattern: str, pointer: str) -> bool:
    """True when the JSON pointer ``pointer`` falls under the path ``pattern`` (``*``, ``**``)."""
    return _match(_segments(pattern), 0, _segments(pointer), 0)


def resolve_pointer(document: Any, pointer: str) -> tuple[bool, Any]:
    """``(found, value)`` at an RFC 6901 pointer."""
    node = document
    for part in _segments(pointer):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


@dataclass(frozen=True)
class Rule:
    """A field rule: ``path`` pattern, ``action``, and for ``encrypt`` the ``subject`` pointer."""

    path: str
    action: str
    subject: str = "/actor/id"

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        out: dict[str, Any] = {"path": self.path, "action": self.action}
        if self.action == "encrypt":
            out["subject"] = self.subject
        return out


@dataclass(frozen=True)
class RedactionPolicy:
    """A tenant's rules, free-text fields and detector settings (defaults: see module docs)."""

    rules: tuple[Rule, ...] = ()
    free_text: tuple[str, ...] = DEFAULT_FREE_TEXT
    detectors: Mapping[str, DetectorSetting] = field(default_factory=lambda: dict(DEFAULT_DETECTORS))

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "rules": [r.to_json() for r in self.rules],
            "free_text": list(self.free_text),
            "detectors": {k: {"action": v.action, "scope": v.scope} for k, v in sorted(self.detectors.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RedactionPolicy:
        """Parse and check a policy; omitted parts keep their defaults. :class:`FormatError` if bad."""
        if not isinstance(data, Mapping):
            raise FormatError("redaction: want an object with rules, free_text, detectors")
        unknown = set(data) - {"rules", "free_text", "detectors"}
        if unknown:
            raise FormatError(f"redaction: unknown member {sorted(unknown)[0]!r}")
        rules = tuple(_rule(item, n) for n, item in enumerate(data.get("rules") or []))
        free_text = data.get("free_text", DEFAULT_FREE_TEXT)
        if not isinstance(free_text, list | tuple) or not all(isinstance(p, str) for p in free_text):
            raise FormatError("redaction: free_text must be a list of path patterns")
        for pattern in free_text:
            _segments(pattern)
        settings = dict(DEFAULT_DETECTORS)
        given = data.get("detectors") or {}
        if not isinstance(given, Mapping):
            raise FormatError("redaction: detectors must be an object of kind -> {action, scope}")
        for kind, value in given.items():
            if kind not in detectors.KINDS:
                raise FormatError(f"redaction: unknown detector {kind!r}; known: {', '.join(detectors.KINDS)}")
            value = {"action": value} if isinstance(value, str) else value
            if not isinstance(value, Mapping):
                raise FormatError(f"redaction: detector {kind}: want {{action, scope}}")
            action = value.get("action", settings[kind].action)
            scope = value.get("scope", settings[kind].scope)
            if action not in DETECTOR_ACTIONS or scope not in SCOPES:
                raise FormatError(
                    f"redaction: detector {kind}: action must be one of {', '.join(DETECTOR_ACTIONS)} "
                    f"and scope one of {', '.join(SCOPES)}, got {action!r}/{scope!r}"
                )
            settings[kind] = DetectorSetting(action, scope)
        return cls(rules, tuple(free_text), settings)


def _rule(item: Any, number: int) -> Rule:
    where = f"redaction: rules[{number}]"
    if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
        raise FormatError(f"{where}: want {{path, action[, subject]}}")
    path, action = item["path"], item.get("action")
    if action not in ACTIONS:
        raise FormatError(f"{where}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
    subject = item.get("subject", "/actor/id")
    if not isinstance(subject, str):
        raise FormatError(f"{where}: subject must be a JSON pointer")
    _segments(path)
    _segments(subject)
    for protected in _PROTECTED:
        if path_matches(path, protected):
            raise FormatError(f"{where}: {path} would rewrite {protected}, which must stay as sent")
    for required in _REQUIRED:
        if action == "drop" and path_matches(path, required):
            raise FormatError(f"{where}: cannot drop {required} (required); mask or tokenize it")
    for container in _OBJECTS:
        if action != "drop" and path_matches(path, container):
            raise FormatError(f"{where}: {container} must stay an object; only drop applies to it")
    if action in ("tokenize", "encrypt") and path_matches(path, "/actor/ip"):
        raise FormatError(f"{where}: /actor/ip must stay an IP address; use mask or drop")
    return Rule(path, action, subject)


_DROP = object()
_CACHE_LIMIT = 20_000


class Redactor:
    """A policy compiled for one tenant: ``apply(body, ...)`` returns the redacted copy."""

    def __init__(
        self,
        policy: RedactionPolicy,
        tokenizer: Tokenizer,
        subject_key: Callable[[str], tuple[str, bytes]] | None = None,
    ) -> None:
        self.policy = policy
        self.tokenizer = tokenizer
        self.subject_key = subject_key
        self._literal: dict[tuple[str, ...], Rule] = {}
        self._wild: list[tuple[tuple[str, ...], Rule]] = []
        for rule in policy.rules:
            segs = _segments(rule.path)
            if "*" in segs or "**" in segs:
                self._wild.append((segs, rule))
            else:
                self._literal.setdefault(segs, rule)
        self._rule_roots = {s[0] for s, _ in self._wild} | {s[0] for s in self._literal if s}
        self._rules_everywhere = any(s and s[0] in ("*", "**") for s, _ in self._wild)
        self._free = [_segments(p) for p in policy.free_text]
        active = {k: v for k, v in policy.detectors.items() if v.action != "off"}
        self._anywhere = [k for k, v in active.items() if v.scope == "anywhere"]
        self._free_kinds = [k for k, v in active.items()]
        self._actions = {k: v.action for k, v in active.items()}
        self._rule_cache: dict[tuple[str, ...], Rule | None] = {}
        # Top-level members a rule or a free-text pattern can reach (None: any of them can).
        heads = [s[0] for s, _ in self._wild] + [s[0] for s in self._literal if s] + [s[0] for s in self._free if s]
        self._roots: frozenset[str] | None = None if any(h in ("*", "**") for h in heads) else frozenset(heads)
        self._free_cache: dict[tuple[str, ...], bool] = {}

    def _rule(self, segs: tuple[str, ...]) -> Rule | None:
        # Events of one tenant repeat the same paths: remember each path's answer.
        cache = self._rule_cache
        if segs in cache:
            return cache[segs]
        found = self._literal.get(segs)
        if found is None:
            found = next((rule for pattern, rule in self._wild if _match(pattern, 0, segs, 0)), None)
        if len(cache) < _CACHE_LIMIT:
            cache[segs] = found
        return found

    def _is_free(self, segs: tuple[str, ...]) -> bool:
        cache = self._free_cache
        found = cache.get(segs)
        if found is None:
            found = any(_match(p, 0, segs, 0) for p in self._free)
            if len(cache) < _CACHE_LIMIT:
                cache[segs] = found
        return found

    def apply(
        self, body: Mapping[str, Any], *, log: str, event_id: str, text: str | None = None
    ) -> dict[str, Any]:
        """The redacted copy of ``body`` (an envelope dict); ``body`` itself is not changed.

        ``text``, the body serialized as JSON when the caller has it, lets one check over the
        whole event skip the per-string secret scan when no secret can be in it.
        """
        anywhere = bool(self._anywhere) and (text is None or detectors.may_contain(text, self._anywhere))
        out: dict[str, Any] = {}
        for name, value in body.items():
            if name in _STRUCTURAL or (not anywhere and self._roots is not None and name not in self._roots):
                out[name] = value  # nothing can apply below: no rule, no free text, no secret
                continue
            new = self._walk(value, (name,), body, log, event_id, anywhere)
            if new is not _DROP:
                out[name] = new
        return out

    def _walk(
        self, value: Any, segs: tuple[str, ...], body: Mapping[str, Any], log: str, event_id: str, anywhere: bool
    ) -> Any:
        if self._rule_roots and (self._rules_everywhere or segs[0] in self._rule_roots):
            rule = self._rule(segs)
            if rule is not None:
                return self._apply_rule(rule, value, segs, body, log, event_id)
        kind = type(value)
        if kind is dict:
            out = {}
            for name, item in value.items():
                new = self._walk(item, (*segs, name), body, log, event_id, anywhere)
                if new is not _DROP:
                    out[name] = new
            return out
        if kind is list:
            items = [self._walk(item, (*segs, str(n)), body, log, event_id, anywhere) for n, item in enumerate(value)]
            return [item for item in items if item is not _DROP]
        if kind is str:
            if segs in _NOT_SCANNED:
                return value
            return self._scan(value, segs, anywhere)
        if kind is int and anywhere and not -10**12 < value < 10**12 and "card" in self._anywhere:
            hits = detectors.find(str(value), ("card",))
            if hits:
                return self._replace(str(value), hits)
        return value

    def _scan(self, text: str, segs: tuple[str, ...], anywhere: bool) -> Any:
        if self._free and self._is_free(segs):
            kinds = self._free_kinds
        elif anywhere:
            kinds = self._anywhere
        else:
            return text
        if not kinds:
            return text
        hits = detectors.find(text, kinds)
        if not hits:
            return text
        if any(self._actions[h.kind] == "drop" for h in hits):
            return _DROP
        return self._replace(text, hits)

    def _replace(self, text: str, hits: Sequence[detectors.Hit]) -> str:
        parts: list[str] = []
        cursor = 0
        for hit in hits:
            parts.append(text[cursor : hit.start])
            if self._actions[hit.kind] == "tokenize":
                parts.append(f"[{hit.kind}:{self.tokenizer.token(detectors.normalize(hit.kind, hit.text))}]")
            else:
                parts.append(f"[REDACTED:{hit.kind}]")
            cursor = hit.end
        parts.append(text[cursor:])
        return "".join(parts)

    def _apply_rule(
        self, rule: Rule, value: Any, segs: tuple[str, ...], body: Mapping[str, Any], log: str, event_id: str
    ) -> Any:
        if rule.action == "drop":
            return _DROP
        if rule.action == "mask":
            if segs == ("actor", "ip") and isinstance(value, str):
                return _truncate_ip(value)
            return MASK
        if rule.action == "tokenize":
            return self.tokenizer.token(value if isinstance(value, str) else _json_text(value))
        found, subject = resolve_pointer(body, rule.subject)
        if not found or self.subject_key is None or not isinstance(subject, str | int):
            return MASK  # no subject to encrypt for: never store the plaintext
        key_id, key = self.subject_key(self.tokenizer.token(str(subject)))
        where = "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segs)
        return encrypt_field(key_id, key, value, log=log, event_id=event_id, pointer=where)


def _json_text(value: Any) -> str:
    from trailseal.core.canonical import canonicalize

    return canonicalize(value).decode()


def _truncate_ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "0.0.0.0"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
