"""Realistic event dicts for tests."""

from __future__ import annotations

import itertools
from typing import Any

_counter = itertools.count()


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid ~500-byte audit event; each call gets a fresh resource id."""
    n = next(_counter)
    event: dict[str, Any] = {
        "time": "2026-11-28T10:15:30.123456Z",
        "actor": {"id": "alice@example.com", "type": "user", "ip": "203.0.113.7",
                  "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        "action": "iam.role.update",
        "resource": {"type": "role", "id": f"role-{n}"},
        "outcome": "success",
        "request_id": f"req-{n // 3}",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "source": {"service": "identity", "host": "idp-1", "region": "eu-west-1",
                   "environment": "prod"},
        "before": {"role": "viewer", "groups": ["eng", "oncall"]},
        "after": {"role": "admin", "groups": ["eng", "oncall", "admins"]},
        "reason": "break-glass for incident INC-2231",
        "metadata": {"ticket": "INC-2231", "approved_by": "bob@example.com", "attempt": 1},
    }
    event.update(overrides)
    return event
