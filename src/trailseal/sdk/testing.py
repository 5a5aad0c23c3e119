"""``AuditRecorder``: an in-memory stand-in for ``AuditClient`` that records what code emitted.

No server, no threads: ``emit`` builds the event exactly as ``AuditClient.emit`` does (same
context handling), validates it fully (``Event.from_dict``), and appends it to ``events``. The
``audit_recorder`` pytest fixture (:mod:`trailseal.sdk.pytest_plugin`) installs one as the
default client for the duration of a test::

    def test_approve_emits(audit_recorder):
        approve_invoice("inv-42", user="alice")
        audit_recorder.assert_emitted("invoice.approve", actor="alice", resource="invoice:inv-42")
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trailseal.core.event import Event
from trailseal.sdk.context import effective_context
from trailseal.sdk.envelope import build_event

__all__ = ["AuditRecorder", "RecordedEvent"]


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One recorded event and the log it was addressed to (``None``: the default log)."""

    event: Event
    log: str | None


class AuditRecorder:
    """Records emitted events; see the module docstring. Thread-safe."""

    producer_id = "audit-recorder"

    def __init__(self, *, source: Mapping[str, str] | None = None) -> None:
        self.recorded: list[RecordedEvent] = []
        self._source = dict(source) if source else None
        self._seq = itertools.count()
        self._lock = threading.Lock()

    @property
    def events(self) -> list[Event]:
        """Every recorded event, in emit order."""
        return [item.event for item in self.recorded]

    def emit(self, event: Any = None, **fields: Any) -> str:
        """Record one event (same arguments as ``AuditClient.emit``); returns its id."""
        wire, log = build_event(event, {k: v for k, v in fields.items() if v is not None}, effective_context(),
                                source=self._source, strict=False)
        with self._lock:
            wire["producer"] = {"id": self.producer_id, "seq": next(self._seq)}
            self.recorded.append(RecordedEvent(Event.from_dict(wire), log))
        return str(wire["id"])

    def spool(self, events: Iterable[Any], *, dedupe: bool = True) -> int:
        """Record ``events`` (what ``AuditClient.spool`` would make durable); dedupes by id."""
        seen = {item.event.id for item in self.recorded} if dedupe else set()
        stored = 0
        for event in events:
            event_id = event.id if isinstance(event, Event) else event.get("id")
            if event_id in seen:
                continue
            self.emit(event)
            stored += 1
        return stored

    def flush(self, timeout: float | None = None) -> int:
        """Nothing is ever pending."""
        return 0

    def close(self, timeout: float | None = None) -> int:
        """Nothing to release."""
        return 0

    def clear(self) -> None:
        """Forget what was recorded."""
        with self._lock:
            self.recorded.clear()

    def actions(self) -> list[str]:
        """The ``action`` of every recorded event, in order."""
        return [event.action for event in self.events]

    def find(self, action: str | None = None, **expected: Any) -> list[Event]:
        """Recorded events with this ``action`` whose fields match ``expected``.

        ``actor="alice"`` matches ``actor.id``; ``resource="invoice:inv-42"`` matches type and id;
        a mapping matches when it is a subset of the field (``after={"status": "paid"}``); any
        other value must equal the field.
        """
        return [event for event in self.events
                if (action is None or event.action == action) and _matches(event.to_dict(), expected)]

    def assert_emitted(self, action: str, count: int | None = None, **expected: Any) -> list[Event]:
        """Assert events with ``action`` matching ``expected`` were emitted (exactly ``count``
        times when given); returns them. The failure message lists what was emitted."""
        found = self.find(action, **expected)
        if (count is None and not found) or (count is not None and len(found) != count):
            want = f"{count} x " if count is not None else ""
            emitted = "\n  ".join(f"{e.action} actor={e.actor.id} resource={e.resource.type}:{e.resource.id}"
                                  for e in self.events) or "(nothing)"
            raise AssertionError(f"expected {want}{action} matching {expected}, found {len(found)}; "
                                 f"emitted:\n  {emitted}")
        return found

    def assert_not_emitted(self, action: str, **expected: Any) -> None:
        """Assert no event with ``action`` matching ``expected`` was emitted."""
        found = self.find(action, **expected)
        if found:
            raise AssertionError(f"expected no {action} matching {expected}, found {len(found)}")


def _matches(wire: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    for name, want in expected.items():
        have = wire.get(name)
        if name == "actor" and isinstance(want, str):
            have = (have or {}).get("id")
        elif name == "resource" and isinstance(want, str) and ":" in want:
            have = f"{(have or {}).get('type')}:{(have or {}).get('id')}"
        if isinstance(want, Mapping):
            if not isinstance(have, Mapping) or not _matches(have, want):
                return False
        elif have != want:
            return False
    return True
