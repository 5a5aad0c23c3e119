"""ArcSight Common Event Format (CEF) rev. 25: one line per event, with CEF escaping.

Line::

    CEF:0|trailseal|trailseal|<version>|<action>|<action> <outcome>|<severity>|<extension>

Escaping (CEF spec, "Character encoding"): in header fields ``\\`` → ``\\\\`` and ``|`` → ``\\|``,
and a line break (not allowed there) becomes a space; in extension values ``\\`` → ``\\\\``,
``=`` → ``\\=``, LF → ``\\n``, CR → ``\\r``; other control characters become spaces. Keys are fixed.

Extension keys used::

    rt (event time, epoch ms)   externalId (event id)   act (action)     outcome
    cat (first action segment)  suser (actor.id)        src / c6a2 (actor.ip, IPv4 / IPv6)
    requestClientApplication (actor.user_agent)          reason
    destinationServiceName (source.service)             dvchost (source.host)
    cs1 requestId  cs2 traceId  cs3 resourceType  cs4 resourceId  cs5 log  cs6 environment
    flexString1 region          cn1 leafIndex

Severity: success 3, unknown 5, failure 6, denied 8 (no outcome: 3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trailseal import __version__
from trailseal.query.ocsf import epoch_ms

SEVERITY = {"success": 3, "unknown": 5, "failure": 6, "denied": 8}
_HEADER_ESCAPES = {"\\": "\\\\", "|": "\\|", "\n": " ", "\r": " "}
_VALUE_ESCAPES = {"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"}
_HEADER_RE = re.compile(r"[\\|\r\n]")
_VALUE_RE = re.compile(r"[\\=\r\n]")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
_HEADER_SPECIAL = re.compile(r"[\\|\x00-\x1f\x7f]")
_VALUE_SPECIAL = re.compile(r"[\\=\x00-\x1f\x7f]")


def escape_header(value: str) -> str:
    """A CEF header field: backslash and pipe escaped, line breaks and controls as spaces."""
    if not _HEADER_SPECIAL.search(value):
        return value
    value = _HEADER_RE.sub(lambda m: _HEADER_ESCAPES[m.group()], value)
    return _CONTROL_RE.sub(" ", value)


def escape_value(value: str) -> str:
    """A CEF extension value: backslash, equals, CR and LF escaped; other controls as spaces."""
    if not _VALUE_SPECIAL.search(value):
        return value
    value = _VALUE_RE.sub(lambda m: _VALUE_ESCAPES[m.group()], value)
    return _CONTROL_RE.sub(" ", value)


def _part(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    return value if type(value) is dict else {}


def cef_line(event: Mapping[str, Any], leaf_index: int) -> str:
    """The CEF line of one stored envelope (no trailing newline)."""
    action = str(event.get("action", ""))
    outcome = event.get("outcome")
    name = f"{action} {outcome}" if outcome else action
    header = [
        "CEF:0", "trailseal", "trailseal", escape_header(__version__), escape_header(action),
        escape_header(name), str(SEVERITY.get(str(outcome), 3)),
    ]
    actor, resource, source = _part(event, "actor"), _part(event, "resource"), _part(event, "source")
    ip = actor.get("ip")
    ipv6 = isinstance(ip, str) and ":" in ip
    pairs: list[tuple[str, Any]] = [
        ("rt", epoch_ms(str(event.get("time", "")))),
        ("externalId", event.get("id")),
        ("act", action),
        ("outcome", outcome),
        ("cat", action.split(".", 1)[0]),
        ("suser", actor.get("id")),
        ("c6a2" if ipv6 else "src", ip),
        ("requestClientApplication", actor.get("user_agent")),
        ("reason", event.get("reason")),
        ("destinationServiceName", source.get("service")),
        ("dvchost", source.get("host")),
    ]
    if ipv6:
        pairs.append(("c6a2Label", "Source IPv6 Address"))
    for key, label, value in (
        ("cs1", "requestId", event.get("request_id")),
        ("cs2", "traceId", event.get("trace_id")),
        ("cs3", "resourceType", resource.get("type")),
        ("cs4", "resourceId", resource.get("id")),
        ("cs5", "log", event.get("log")),
        ("cs6", "environment", source.get("environment")),
        ("flexString1", "region", source.get("region")),
        ("cn1", "leafIndex", leaf_index),
    ):
        if value is not None:
            pairs += [(key + "Label", label), (key, value)]
    extension = " ".join(f"{key}={escape_value(str(value))}" for key, value in pairs
                         if value is not None and value != "")
    return "|".join(header) + "|" + extension
