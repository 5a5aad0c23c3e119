"""The audit context: who is acting, for which tenant, in which request and trace.

It lives in :mod:`contextvars`, so it follows the code that runs for a request — through ``await``,
into ``asyncio`` tasks, and into threads started with :func:`bind_context` (or anything that runs a
``contextvars.copy_context()``). Middleware sets it per request; code sets it by hand::

    with audit_context(actor="alice@example.com", tenant="acme"):
        client.emit(action="invoice.approve", resource="invoice:inv-42")   # actor and log filled in

A background job gets the context of the code that queued it by carrying
``current_context().to_dict()`` with the job and re-entering it with ``audit_context(**saved)``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any, ParamSpec, TypeVar

__all__ = ["AuditContext", "audit_context", "bind_context", "current_context", "set_actor"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What :meth:`AuditClient.emit` fills in when the call does not say.

    ``actor`` is the wire-form ``actor`` object (``{"id": ..., "type": ..., "ip": ...,
    "user_agent": ...}``); ``tenant`` is the name of the tenant's log; ``request_id``,
    ``trace_id`` and ``span_id`` go to the envelope fields of the same names.
    """

    actor: Mapping[str, Any] | None = None
    tenant: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The set fields, as keyword arguments for :func:`audit_context` (JSON-serializable)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                out[item.name] = dict(value) if item.name == "actor" else value
        return out


_EMPTY = AuditContext()
_current: contextvars.ContextVar[AuditContext] = contextvars.ContextVar("trailseal_audit_context", default=_EMPTY)


def current_context() -> AuditContext:
    """The audit context in force here (an empty one outside any :func:`audit_context`)."""
    return _current.get()


def actor_value(actor: str | Mapping[str, Any] | Any | None) -> dict[str, Any] | None:
    """``actor`` as a wire-form dict: a string is the actor id; an ``Actor`` value is unpacked."""
    if actor is None:
        return None
    if isinstance(actor, str):
        return {"id": actor}
    if isinstance(actor, Mapping):
        return {key: value for key, value in actor.items() if value is not None}
    slots = getattr(actor, "__slots__", None)
    if slots is not None:  # trailseal.core.event.Actor
        return {name: value for name in slots if (value := getattr(actor, name)) is not None}
    raise TypeError(f"actor: want a str, a mapping or an Actor, got {type(actor).__name__}")


@contextmanager
def audit_context(
    *,
    actor: str | Mapping[str, Any] | Any | None = None,
    actor_type: str | None = None,
    tenant: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> Iterator[AuditContext]:
    """Set audit context fields for the ``with`` block; unset fields keep their outer values.

    ``actor`` is an actor id, a wire-form actor mapping, or an ``Actor``; ``actor_type`` sets
    ``actor.type`` on it. Yields the context in force inside the block.
    """
    outer = _current.get()
    changes: dict[str, Any] = {
        name: value
        for name, value in (("tenant", tenant), ("request_id", request_id), ("trace_id", trace_id),
                            ("span_id", span_id))
        if value is not None
    }
    new_actor = actor_value(actor)
    if new_actor is not None:
        if actor_type is not None:
            new_actor["type"] = actor_type
        changes["actor"] = new_actor
    elif actor_type is not None and outer.actor is not None:
        changes["actor"] = {**outer.actor, "type": actor_type}
    inner = replace(outer, **changes) if changes else outer
    token = _current.set(inner)
    try:
        yield inner
    finally:
        _current.reset(token)


def bind_context(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """``func`` wrapped to run in a copy of the *current* context (call this where the job is
    created; the wrapper can then run on any thread, e.g. ``executor.submit(bind_context(job))``)."""
    snapshot = contextvars.copy_context()

    @functools.wraps(func)
    def bound(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return snapshot.copy().run(func, *args, **kwargs)

    return bound


class RequestState:
    """Per-request mutable state the middleware shares with the app: the actor identified late
    (after authentication, which runs inside the app) for the access event."""

    __slots__ = ("actor",)

    def __init__(self) -> None:
        self.actor: dict[str, Any] | None = None


_request: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("trailseal_request", default=None)


def set_actor(actor: str | Mapping[str, Any] | Any, *, actor_type: str | None = None) -> None:
    """Set the actor for the rest of the current context — call it where the app authenticates.

    Inside a request handled by the audit middleware it also becomes the actor of the request's
    access event (even from a handler run on a worker thread). Outside any ``audit_context``
    block it stays set for the rest of this thread's (or task's) context.
    """
    value = actor_value(actor)
    if value is None:
        raise ValueError("set_actor: actor is required")
    if actor_type is not None:
        value["type"] = actor_type
    outer = _current.get()
    if outer.actor:  # keep what the middleware knew (ip, user agent) unless overridden
        value = {**{k: v for k, v in outer.actor.items() if k in ("ip", "user_agent")}, **value}
    _current.set(replace(outer, actor=value))
    state = _request.get()
    if state is not None:
        state.actor = value


def effective_context() -> AuditContext:
    """The current context, with the actor set by :func:`set_actor` for this request filled in
    when the context itself has none (``set_actor`` called in a sync dependency on a worker
    thread changes only that thread's copy of the context, but the request state is shared)."""
    context = _current.get()
    if context.actor is None:
        state = _request.get()
        if state is not None and state.actor is not None:
            return replace(context, actor=state.actor)
    return context
