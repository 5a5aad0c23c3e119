"""Sampling: keep a share of high-volume, low-risk events, and record exactly how many were seen.

A tenant's policy lists ``critical`` action patterns (always kept in full, whatever else matches)
and ``rules`` of ``{pattern, rate}``: an event whose action matches a rule (the most specific one)
and no critical pattern is kept when ``H(log, event id) < rate``, a deterministic draw, so a retry
of the same event gets the same decision. For every interval of ``interval_seconds`` and every
sampled action the pipeline counts events seen and kept, and writes them into the trail itself as
a ``trailseal.sampling.summary`` event (``metadata.counts``), so totals and capture rates stay
exact. ``trailseal.*`` actions are always critical.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from trailseal.core.errors import FormatError
from trailseal.schema.patterns import best_match, check_pattern, matches

__all__ = ["DEFAULT_CRITICAL", "Count", "SamplingPolicy", "SamplingRule", "interval_start"]
__all__ += ["summary_event"]

DEFAULT_CRITICAL = ("auth.*", "iam.*", "data.*", "config.*", "deploy.*", "approval.*", "billing.*")
_ALWAYS = ("trailseal.*",)


@dataclass(frozen=True)
class SamplingRule:
    """Keep ``rate`` (0..1) of the events whose action matches ``pattern``."""

    pattern: str
    rate: float


@dataclass(frozen=True)
class Count:
    """Events of one action seen and kept in one interval."""

    interval_start: str
    action: str
    pattern: str
    rate: float
    seen: int
    kept: int


@dataclass(frozen=True)
class SamplingPolicy:
    """A tenant's sampling policy; the default samples nothing."""

    critical: tuple[str, ...] = DEFAULT_CRITICAL
    rules: tuple[SamplingRule, ...] = ()
    interval_seconds: int = 60

    def decide(self, log: str, action: str, event_id: str) -> tuple[bool, SamplingRule | None]:
        """``(keep, rule)``: ``rule`` is None for events not subject to sampling."""
        if not self.rules:
            return True, None
        for pattern in (*_ALWAYS, *self.critical):
            if matches(pattern, action):
                return True, None
        chosen = best_match([r.pattern for r in self.rules], action)
        if chosen is None:
            return True, None
        rule = next(r for r in self.rules if r.pattern == chosen)
        if rule.rate >= 1.0:
            return True, rule
        digest = hashlib.sha256(f"{log}\n{event_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") < rule.rate * 2**64, rule

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "critical": list(self.critical),
            "rules": [{"pattern": r.pattern, "rate": r.rate} for r in self.rules],
            "interval_seconds": self.interval_seconds,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SamplingPolicy:
        """Parse and check; :class:`FormatError` names the problem."""
        if not isinstance(data, Mapping):
            raise FormatError("sampling: want an object with critical, rules, interval_seconds")
        critical = data.get("critical", DEFAULT_CRITICAL)
        if not isinstance(critical, list | tuple):
            raise FormatError("sampling: critical must be a list of action patterns")
        rules: list[SamplingRule] = []
        for number, item in enumerate(data.get("rules") or []):
            if not isinstance(item, Mapping):
                raise FormatError(f"sampling: rules[{number}]: want {{pattern, rate}}")
            rate = item.get("rate")
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise FormatError(f"sampling: rules[{number}]: rate must be a number in 0..1, got {rate!r}")
            rules.append(SamplingRule(check_pattern(item.get("pattern", "")), float(rate)))
        interval = data.get("interval_seconds", 60)
        if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 86_400:
            raise FormatError(f"sampling: interval_seconds must be an integer in 1..86400, got {interval!r}")
        return cls(tuple(check_pattern(p) for p in critical), tuple(rules), interval)


def _parse(moment: str) -> datetime:
    return datetime.strptime(moment[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def interval_start(received_at: str, seconds: int) -> str:
    """Start of the interval (aligned to the epoch) that holds ``received_at``."""
    moment = _parse(received_at)
    epoch = int(moment.timestamp())
    return _format(datetime.fromtimestamp(epoch - epoch % seconds, UTC))


def summary_event(log: str, start: str, seconds: int, counts: Sequence[Count]) -> dict[str, Any]:
    """The ``trailseal.sampling.summary`` event for one interval (deterministic id and content)."""
    end = _format(_parse(start) + timedelta(seconds=seconds))
    rows = sorted(
        ({"action": c.action, "pattern": c.pattern, "rate": c.rate, "seen": c.seen, "kept": c.kept} for c in counts),
        key=lambda r: (str(r["action"]), str(r["pattern"])),
    )
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:12]
    stamp = start[:19].replace("-", "").replace(":", "")
    return {
        "id": f"sampling-{stamp}-{digest}",
        "time": end,
        "actor": {"id": "trailseal", "type": "service"},
        "action": "trailseal.sampling.summary",
        "resource": {"type": "log", "id": log},
        "outcome": "success",
        "metadata": {
            "interval_start": start,
            "interval_end": end,
            "seen": sum(c.seen for c in counts),
            "kept": sum(c.kept for c in counts),
            "counts": rows,
        },
    }
