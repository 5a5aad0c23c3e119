"""Redaction: per-tenant field rules and free-text detectors, applied before canonicalization.

Rules name fields by JSON pointer, where a segment ``*`` matches one member or index and ``**``
any number of them (``/after/email``, ``/metadata/*/token``, ``/**/password``); a rule naming the
exact path wins, else the first matching wildcard rule in policy order:

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

import functools
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

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
    return _resolve(document, _segments(pointer))


def _resolve(document: Any, segments: tuple[str, ...]) -> tuple[bool, Any]:
    node = document
    for part in segments:
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
_SEEN_LIMIT = 8_192  # scanned strings remembered with their outcome, per scan kind set
_SEEN_MAX_CHARS = 512  # longer ones are rarely repeated: at most ~8 MiB per set
_NODE_LIMIT = 4_096  # compiled matcher states kept per tenant (past it: computed, not kept)

# What a compiled pattern is for: a literal rule, a wildcard rule, a free-text pattern, or one of
# the fixed paths whose strings are never scanned (``_NOT_SCANNED``).
_LITERAL, _WILD, _FREE, _NO_SCAN = range(4)
_UNSET = object()


class _Node:
    """One state of the compiled path matcher: every pattern position a path can have reached.

    ``rule`` is what ``Redactor._rule`` answers for the paths ending here, ``free`` what
    ``Redactor._is_free`` answers, ``scan`` False on ``/actor/ip`` and ``/resource/type``;
    ``live`` tells whether a rule or free-text pattern can still match below. Children are
    compiled on first use: one per key a pattern names literally, one shared by every other key.
    """

    __slots__ = (
        "_active",
        "edges",
        "free",
        "idle",
        "kept",
        "keyed",
        "literals",
        "live",
        "matcher",
        "other",
        "rule",
        "scan",
        "states",
    )

    def __init__(self, matcher: _Matcher, states: frozenset[tuple[int, int]]) -> None:
        self.matcher, self.states = matcher, states
        patterns = matcher.patterns
        done = [index for index, at in states if at == len(patterns[index][0])]
        kinds = {patterns[index][1] for index in done}
        literal = [patterns[index][2] for index in sorted(done) if patterns[index][1] == _LITERAL]
        wild = [patterns[index][2] for index in sorted(done) if patterns[index][1] == _WILD]
        self.rule: Rule | None = (literal or wild or [None])[0]
        self.free = _FREE in kinds
        self.scan = _NO_SCAN not in kinds
        self.live = any(
            at < len(patterns[index][0]) for index, at in states if patterns[index][1] in (_LITERAL, _WILD, _FREE)
        )
        self.idle = not self.live and self.rule is None and not self.free
        self.literals = frozenset(
            patterns[index][0][at] for index, at in states
            if at < len(patterns[index][0]) and patterns[index][0][at] not in ("*", "**")
        )
        self.keyed = bool(self.literals)
        self.edges: dict[str, _Node] = {}
        self.other: _Node | None = None
        self.kept = False
        self._active: tuple[str, ...] | object | None = _UNSET

    def active(self) -> tuple[str, ...] | None:
        """The member names below which something can apply when no secret is about (every other
        member is kept as it is), or None when any member can need a look."""
        found = self._active
        if found is _UNSET:
            other = self.other if self.other is not None else self.matcher.node(self.states, None)
            found = None if not other.idle else tuple(k for k in sorted(self.literals) if not self.step(k).idle)
            self._active = found
        return found  # type: ignore[return-value]

    def step(self, key: str) -> _Node:
        """The state after member or index ``key`` (compiled on first use)."""
        if key in self.literals:
            found = self.edges.get(key)
            if found is None:
                found = self.matcher.node(self.states, key)
                if found.kept:
                    self.edges[key] = found
            return found
        found = self.other
        if found is None:
            found = self.matcher.node(self.states, None)
            if found.kept:
                self.other = found
        return found


class _Matcher:
    """Rules and free-text patterns compiled into one lazily built automaton over JSON paths.

    It gives exactly the answers of ``_match`` (``*`` one segment, ``**`` any number), with the
    rule chosen as ``Redactor._rule`` chooses it (the first literal rule, else the first wildcard
    rule in policy order), one dictionary lookup per member instead of a pattern scan.
    """

    def __init__(self, patterns: list[tuple[tuple[str, ...], int, Rule | None]]) -> None:
        self.patterns = patterns
        self.nodes: dict[frozenset[tuple[int, int]], _Node] = {}
        self.root = self.make(self.closure((index, 0) for index in range(len(patterns))))

    def node(self, states: frozenset[tuple[int, int]], key: str | None) -> _Node:
        """The state after one segment from ``states``: ``key``, or None for a key no pattern names."""
        return self.make(self.advance(states, key))

    def make(self, states: frozenset[tuple[int, int]]) -> _Node:
        found = self.nodes.get(states)
        if found is None:
            found = _Node(self, states)
            if len(self.nodes) < _NODE_LIMIT:  # past it (pathological **-heavy policies): not kept
                found.kept = True
                self.nodes[states] = found
        return found

    def closure(self, states: Any) -> frozenset[tuple[int, int]]:
        """``states`` plus every position reached by letting a ``**`` match no segment."""
        out: set[tuple[int, int]] = set()
        todo = list(states)
        while todo:
            index, at = todo.pop()
            if (index, at) in out:
                continue
            out.add((index, at))
            segs = self.patterns[index][0]
            if at < len(segs) and segs[at] == "**":
                todo.append((index, at + 1))
        return frozenset(out)

    def advance(self, states: frozenset[tuple[int, int]], key: str | None) -> frozenset[tuple[int, int]]:
        moved: list[tuple[int, int]] = []
        for index, at in states:
            segs = self.patterns[index][0]
            if at < len(segs):
                part = segs[at]
                if part == "**":
                    moved.append((index, at))
                elif part == "*" or part == key:
                    moved.append((index, at + 1))
        return self.closure(moved)



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
        # The compiled form used by ``apply``: literal rules first, then wildcard rules, each in
        # policy order (the order ``_rule`` prefers them in), then free text and the fixed paths.
        patterns: list[tuple[tuple[str, ...], int, Rule | None]] = []
        for rule in policy.rules:
            segs = _segments(rule.path)
            if "*" not in segs and "**" not in segs:
                patterns.append((segs, _LITERAL, rule))
        patterns += [(segs, _WILD, rule) for segs, rule in self._wild]
        patterns += [(segs, _FREE, None) for segs in self._free]
        patterns += [(segs, _NO_SCAN, None) for segs in sorted(_NOT_SCANNED)]
        self._matcher = _Matcher(patterns)
        self._subjects = {rule.subject: _segments(rule.subject) for rule in policy.rules}
        self._anywhere_kinds = tuple(self._anywhere)
        self._all_kinds = tuple(self._free_kinds)
        self._card_anywhere = "card" in self._anywhere
        # Scanned strings and what the scan made of them (the string itself when it held no hit), per
        # kind set: repeated values (user agents, notes, an approver's address) skip the detectors
        # and the tokenizer. In memory only and bounded, like the tokenizer's own cache of tokens;
        # a new policy or tenant key builds a new Redactor, and with it new caches.
        self._seen: dict[tuple[str, ...], dict[str, Any]] = {self._anywhere_kinds: {}, self._all_kinds: {}}

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
        whole event skip the per-string secret scan when no secret can be in it. Members that
        nothing changed are the very objects of ``body`` (copy on write); the result is equal to
        :meth:`apply_reference`'s, which walks every path and matches it against every pattern.
        """
        anywhere = (
            bool(self._anywhere)
            and (text is None or detectors.may_contain(text, self._anywhere))  # as apply_reference
            and detectors.may_contain(_scanned_text(body, text), self._anywhere)
        )
        root = self._matcher.root
        visit = self._visit
        out = dict(body)  # members are replaced or deleted in place: the order stays
        active = None if anywhere else root.active()
        if active is None:
            edges = root.edges
            for name, value in body.items():
                if name in _STRUCTURAL:
                    continue
                node = edges.get(name) or root.step(name)
                if node.idle and not anywhere:
                    continue  # no rule, no free text here or below, no secret anywhere
                new = visit(value, node, (), name, body, log, event_id, anywhere)
                if new is _DROP:
                    del out[name]
                elif new is not value:
                    out[name] = new
            return out
        for name in active:  # only the members a rule or free-text pattern names
            if name in body and name not in _STRUCTURAL:
                value = body[name]
                node = root.edges.get(name) or root.step(name)
                new = visit(value, node, (), name, body, log, event_id, False)
                if new is _DROP:
                    del out[name]
                elif new is not value:
                    out[name] = new
        return out

    def _visit(
        self, value: Any, node: _Node, parent: tuple[str, ...], key: str, body: Mapping[str, Any], log: str,
        event_id: str, anywhere: bool,
    ) -> Any:
        """``_walk`` over the compiled matcher: the same value, or ``value`` itself if unchanged."""
        rule = node.rule
        if rule is not None:
            return self._apply_rule(rule, value, (*parent, key), body, log, event_id)
        kind = type(value)
        if kind is str:
            if not node.scan:
                return value
            if node.free:
                kinds = self._all_kinds
            elif anywhere:
                kinds = self._anywhere_kinds
            else:
                return value
            return self._scan_text(value, kinds) if kinds else value
        if kind is dict:
            if not anywhere and not node.live:
                return value
            path = (*parent, key)
            out: dict[str, Any] | None = None
            active = None if anywhere or not node.keyed else node.active()
            if active is not None:  # only the members a pattern names can change
                for name in active:
                    if name in value:
                        item = value[name]
                        child = node.edges.get(name) or node.step(name)
                        new = self._visit(item, child, path, name, body, log, event_id, False)
                        if new is not item:
                            if out is None:
                                out = dict(value)
                            if new is _DROP:
                                del out[name]
                            else:
                                out[name] = new
                return value if out is None else out
            for name, item in value.items():
                child = (node.edges.get(name) or node.step(name)) if node.keyed else (node.other or node.step(name))
                if child.idle and not anywhere:
                    new = item
                else:
                    new = self._visit(item, child, path, name, body, log, event_id, anywhere)
                if out is None:
                    if new is item:
                        continue
                    out = {}
                    for before, kept in value.items():  # copy the unchanged members seen so far
                        if before == name:
                            break
                        out[before] = kept
                if new is not _DROP:
                    out[name] = new
            return value if out is None else out
        if kind is list:
            if not anywhere and not node.live:
                return value
            path = (*parent, key)
            items: list[Any] | None = None
            for n, item in enumerate(value):
                label = str(n)
                child = (node.edges.get(label) or node.step(label)) if node.keyed else (node.other or node.step(label))
                if child.idle and not anywhere:
                    new = item
                else:
                    new = self._visit(item, child, path, label, body, log, event_id, anywhere)
                if items is None:
                    if new is item:
                        continue
                    items = value[:n]
                if new is not _DROP:
                    items.append(new)
            return value if items is None else items
        if kind is int and anywhere and self._card_anywhere and not -10**12 < value < 10**12:
            hits = detectors.find(str(value), ("card",))
            if hits:
                return self._replace(str(value), hits)
        return value

    def _scan_text(self, text: str, kinds: tuple[str, ...]) -> Any:
        """``_scan`` for a string known to be scanned with ``kinds``."""
        seen = self._seen[kinds]
        found = seen.get(text)
        if found is not None:
            return found
        hits = detectors.find(text, kinds)
        if not hits:
            found = text
        elif any(self._actions[h.kind] == "drop" for h in hits):
            found = _DROP
        else:
            found = self._replace(text, hits)
        if len(text) <= _SEEN_MAX_CHARS:
            if len(seen) >= _SEEN_LIMIT:
                seen.clear()
            seen[text] = found
        return found

    def apply_reference(
        self, body: Mapping[str, Any], *, log: str, event_id: str, text: str | None = None
    ) -> dict[str, Any]:
        """:meth:`apply` the plain way (the definition it is tested against): every member below a
        top-level member some pattern can reach is walked, its path matched against the rules."""
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
        found, subject = _resolve(body, self._subjects.get(rule.subject) or _segments(rule.subject))
        if not found or self.subject_key is None or not isinstance(subject, str | int):
            return MASK  # no subject to encrypt for: never store the plaintext
        key_id, key = self.subject_key(self.tokenizer.token(str(subject)))
        where = "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segs)
        return encrypt_field(key_id, key, value, log=log, event_id=event_id, pointer=where)


def _scanned_text(body: Mapping[str, Any], text: str | None) -> str:
    """JSON of the members of ``body`` that the scan can reach (not ``_STRUCTURAL``: an event id
    full of digits must not switch the scan on), else ``text``, else the whole body."""
    try:
        return orjson.dumps({name: value for name, value in body.items() if name not in _STRUCTURAL}).decode()
    except TypeError:  # not JSON as orjson knows it: let the caller's text (or the full scan) decide
        return text if text is not None else _ANY


_ANY = "AKIA eyJ PRIVATE KEY----- 0000000000000 @ +00000000 ...0 ::"
"""A text every prefilter passes on: the same as having no text (scan every string)."""


def _json_text(value: Any) -> str:
    from trailseal.core.canonical import canonicalize

    return canonicalize(value).decode()


@functools.lru_cache(maxsize=4096)
def _truncate_ip(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "0.0.0.0"
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
