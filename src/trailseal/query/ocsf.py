"""OCSF 1.1.0 events (https://schema.ocsf.io/1.1.0) from trailseal envelopes.

Class by action (the first rule that applies; ``verb`` is the action's last segment, ``object``
the one before it)::

    Authentication  3002  verb login|logon|signin|authenticate (Logon) or logout|logoff|signout
                          (Logoff), also as the last word (console_login)
    Account Change  3001  object user|account|role|service_account with create, enable,
                          disable, delete, attach/detach_policy, lock (or update, rename: Other);
                          password change/reset, mfa enable/disable
    Authentication  3002  first segment auth|authn|sso|session (Other)
    API Activity    6003  everything else (the default class), activity by verb: create 1,
                          read 2, update 3, delete 4, other 99

An action whose last segment is ``verb_object`` (CloudTrail's ``CreateUser`` as ``create_user``)
is read as that verb on that object.

Every event carries the base attributes OCSF requires (``activity_id``, ``category_uid``,
``class_uid``, ``type_uid`` = class_uid * 100 + activity_id, ``severity_id``, ``time`` in epoch
milliseconds, ``metadata`` with ``product`` and ``version``) and each class's own: API Activity
``actor``, ``api`` (``operation``), ``src_endpoint``; Account Change ``user``; Authentication
``user`` and ``service``/``dst_endpoint``. What OCSF has no place for (``before``, ``after``,
``metadata``, the log position) goes to ``unmapped``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from trailseal import __version__

OCSF_VERSION = "1.1.0"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # for times without an offset: read as UTC
_MS = timedelta(milliseconds=1)

CLASSES = {
    3001: ("Account Change", 3, "Identity & Access Management"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    6003: ("API Activity", 6, "Application Activity"),
}
ACTIVITIES = {
    3001: {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset", 5: "Disable",
           6: "Delete", 7: "Attach Policy", 8: "Detach Policy", 9: "Lock", 10: "MFA Factor Enable",
           11: "MFA Factor Disable", 99: "Other"},
    3002: {1: "Logon", 2: "Logoff", 99: "Other"},
    6003: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
}
_ACCOUNT_OBJECTS = frozenset({"user", "account", "role", "service_account", "serviceaccount"})
_ACCOUNT_VERBS = {
    "create": 1, "add": 1, "register": 1, "enable": 2, "activate": 2, "disable": 5,
    "deactivate": 5, "suspend": 5, "delete": 6, "remove": 6, "attach_policy": 7,
    "detach_policy": 8, "lock": 9,
}
_ACCOUNT_CHANGES = frozenset({"update", "modify", "change", "rename", "set", "unlock"})
_LOGON = frozenset({"login", "logon", "signin", "sign_in", "authenticate"})
_LOGOFF = frozenset({"logout", "logoff", "signout", "sign_out"})
_AUTH_ROOTS = frozenset({"auth", "authn", "sso", "session"})
_CREATE = frozenset({"create", "add", "insert", "put", "post", "register", "invite", "new",
                     "upload", "issue"})
_READ = frozenset({"get", "read", "list", "describe", "view", "select", "search", "query",
                   "export", "download", "fetch", "show", "decrypt", "access"})
_UPDATE = frozenset({"update", "modify", "set", "patch", "edit", "change", "rotate", "scale",
                     "toggle", "enable", "disable", "attach", "detach", "grant", "revoke",
                     "approve", "promote", "alter", "capture", "cancel", "cordon", "move",
                     "rename", "restore"})
_DELETE = frozenset({"delete", "remove", "destroy", "drop", "purge", "terminate", "erase"})
_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "denied": (2, "Failure"),
           "unknown": (0, "Unknown")}
_SEVERITY = {"success": (1, "Informational"), "unknown": (1, "Informational"),
             "failure": (2, "Low"), "denied": (3, "Medium")}
_USER_TYPES = {"user": 1, "human": 1, "admin": 2, "system": 3, "service": 4, "bot": 4}


def epoch_ms(time: str) -> int | None:
    """Milliseconds since the Unix epoch of an RFC 3339 UTC time (``None`` if unreadable)."""
    try:
        moment = datetime.fromisoformat(time[:-1] if time.endswith(("Z", "z")) else time)
    except ValueError:
        return None
    return (moment - (_NAIVE_EPOCH if moment.tzinfo is None else _EPOCH)) // _MS


@functools.lru_cache(maxsize=4096)
def classify(action: str) -> tuple[int, int]:
    """``(class_uid, activity_id)`` for an action (see the module docstring).

    ``iam.user.create`` and CloudTrail-style ``iam.create_user`` (verb first, object last) read
    the same way.
    """
    segments = action.split(".")
    verb = segments[-1]
    obj = segments[-2] if len(segments) > 1 else ""
    words = verb.split("_")
    if words[-1] in _LOGON:
        return 3002, 1
    if words[-1] in _LOGOFF:
        return 3002, 2
    if len(words) > 1 and verb not in _ACCOUNT_VERBS:  # verb_object: create_user, attach_role_policy
        verb, nouns = words[0], words[1:]
        if verb in ("attach", "detach") and nouns[-1] == "policy":
            verb, nouns = f"{verb}_policy", nouns[:-1]
        obj = nouns[-1] if nouns else obj
    if obj == "password" and verb in ("change", "update", "set"):
        return 3001, 3
    if obj == "password" and verb == "reset":
        return 3001, 4
    if obj == "mfa" and verb in ("enable", "disable"):
        return 3001, 10 if verb == "enable" else 11
    if obj in _ACCOUNT_OBJECTS and (verb in _ACCOUNT_VERBS or verb in _ACCOUNT_CHANGES):
        return 3001, _ACCOUNT_VERBS.get(verb, 99)
    if segments[0] in _AUTH_ROOTS:
        return 3002, 99
    for activity, verbs in ((1, _CREATE), (2, _READ), (3, _UPDATE), (4, _DELETE)):
        if verb in verbs:
            return 6003, activity
    return 6003, 99


_PRODUCT = {"name": "trailseal", "vendor_name": "trailseal", "version": __version__}


def _part(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-object of the envelope (``{}`` when absent or not an object)."""
    value = event.get(key)
    return value if type(value) is dict else {}


def _drop_none(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` without its ``None`` and empty-object members."""
    return {k: v for k, v in value.items() if v is not None and (v or not isinstance(v, dict))}


def _user(uid: Any, name: Any = None, kind: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"uid": str(uid), "name": str(name if name is not None else uid)}
    if kind is not None:
        out["type"] = str(kind)
        type_id = _USER_TYPES.get(str(kind).lower())
        out["type_id"] = type_id if type_id is not None else 99
    return out


def ocsf_event(event: Mapping[str, Any], leaf_index: int, leaf_hash: bytes) -> dict[str, Any]:
    """The OCSF 1.1.0 event for one stored envelope."""
    action = str(event.get("action", ""))
    class_uid, activity_id = classify(action)
    class_name, category_uid, category_name = CLASSES[class_uid]
    outcome = str(event.get("outcome") or "")
    status_id, status = _STATUS.get(outcome, (0, "Unknown"))
    severity_id, severity = _SEVERITY.get(outcome, (1, "Informational"))
    actor, resource, source = _part(event, "actor"), _part(event, "resource"), _part(event, "source")
    actor_id, actor_type = actor.get("id"), actor.get("type")
    resource_type, resource_id, resource_name = resource.get("type"), resource.get("id"), resource.get("name")
    service, host = source.get("service"), source.get("host")
    ip, user_agent = actor.get("ip"), actor.get("user_agent")
    activity_name = ACTIVITIES[class_uid][activity_id]
    out: dict[str, Any] = {
        "activity_id": activity_id,
        "activity_name": activity_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "class_uid": class_uid,
        "class_name": class_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": severity_id,
        "severity": severity,
        "time": epoch_ms(str(event.get("time", ""))),
        "status_id": status_id,
        "status": status,
        "message": event.get("reason") or f"{action} by {actor_id} on {resource_type}:{resource_id}",
        "metadata": _drop_none({
            "version": OCSF_VERSION,
            "product": _PRODUCT,
            "uid": event.get("id"),
            "original_time": event.get("time"),
            "logged_time": epoch_ms(str(event["received_at"])) if event.get("received_at") else None,
            "log_name": event.get("log"),
            "correlation_uid": event.get("trace_id"),
            "sequence": leaf_index,
        }),
        "actor": _drop_none({
            "user": _user(actor_id, kind=actor_type) if actor_id is not None else None,
            "app_name": service,
        }),
        "src_endpoint": {"ip": ip} if ip else {"name": "unknown"},
        "resources": [_drop_none({"type": resource_type, "uid": resource_id, "name": resource_name})],
        "unmapped": _drop_none({
            "trailseal": _drop_none({
                "log": event.get("log"), "leaf_index": leaf_index,
                "leaf_hash": base64.b64encode(leaf_hash).decode(),
                "environment": source.get("environment"),
                "region": source.get("region"),
                "producer": event.get("producer"), "span_id": event.get("span_id"),
            }),
            "before": event.get("before"),
            "after": event.get("after"),
            "metadata": event.get("metadata"),
        }),
    }
    if outcome and outcome != status.lower():
        out["status_detail"] = outcome
    if user_agent:
        out["http_request"] = {"user_agent": user_agent}
    if class_uid == 6003:
        out["api"] = _drop_none({
            "operation": action,
            "service": {"name": service} if service else None,
            "request": {"uid": event["request_id"]} if event.get("request_id") else None,
        })
    elif class_uid == 3001:
        if resource_type in _ACCOUNT_OBJECTS and resource_id is not None:
            out["user"] = _user(resource_id, resource_name, resource_type)
        else:  # e.g. auth.password.change on a session: the actor's own account
            out["user"] = _user(actor_id, kind=actor_type)
    else:
        out["user"] = _user(actor_id, kind=actor_type)
        out["dst_endpoint"] = _drop_none({"svc_name": service or "unknown", "hostname": host})
        if service:
            out["service"] = {"name": service}
    return out
