"""What the ASGI and WSGI middleware share: the access filter and the access event."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from trailseal.sdk.context import AuditContext
from trailseal.sdk.default import Emitter, resolve

__all__ = ["AccessFilter", "access_event", "client_ip", "emit_safely", "outcome_for", "wants_access"]

_log = logging.getLogger("trailseal.sdk")

AccessFilter = bool | Sequence[str] | Callable[[str, str], bool]
"""Which requests get an access event: ``True`` (all), ``False`` (none), path prefixes, or
``callable(method, path) -> bool``."""


def wants_access(rule: AccessFilter, method: str, path: str) -> bool:
    """Whether ``rule`` selects this request."""
    if isinstance(rule, bool):
        return rule
    if callable(rule):
        return bool(rule(method, path))
    return any(path == prefix or path.startswith(prefix.rstrip("/") + "/") for prefix in rule)


def client_ip(value: Any) -> str | None:
    """``value`` when it is an IP address (ASGI servers may put a host name or a socket path)."""
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def outcome_for(status: int) -> str:
    """``success`` below 400, ``denied`` for 401/403, ``failure`` otherwise."""
    if status < 400:
        return "success"
    return "denied" if status in (401, 403) else "failure"


def access_event(
    *, action: str, method: str, path: str, route: str | None, status: int, duration: float,
    context: AuditContext, late_actor: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The access event's fields (``actor`` falls back to ``anonymous``)."""
    actor = dict(late_actor or context.actor or {})
    if "id" not in actor:
        actor = {**actor, "id": "anonymous", "type": "anonymous"}
    return {
        "action": action,
        "actor": actor,
        "resource": {"type": "http.route", "id": f"{method} {route or path}"[:256]},
        "outcome": outcome_for(status),
        "metadata": {"method": method, "path": path[:2048], "status": status,
                     "duration_ms": round(duration * 1000, 3)},
    }


def emit_safely(client: Emitter | None, fields: dict[str, Any]) -> None:
    """Emit, never raising: a failure is logged with the whole event (never silently dropped)."""
    try:
        resolve(client).emit(**fields)
    except Exception as exc:
        _log.error("trailseal: could not record audit event %r: %s", fields, exc)


async def aemit_safely(client: Emitter | None, fields: dict[str, Any]) -> None:
    """:func:`emit_safely` for async code: awaits an ``AsyncAuditClient``'s ``emit``."""
    try:
        result: Any = resolve(client).emit(**fields)
        if hasattr(result, "__await__"):
            await result
    except Exception as exc:
        _log.error("trailseal: could not record audit event %r: %s", fields, exc)
