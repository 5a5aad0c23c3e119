"""Retention policies: how long to keep events, by tenant (log) and action pattern.

A policy is ``(name, log, action, keep_days)``: ``log`` is a log name or ``*`` (every log);
``action`` is a glob over the dotted action (``auth.*`` matches ``auth.login`` and
``auth.mfa.enroll``; ``*`` matches everything, which makes a default). ``keep_days`` ``None``
keeps events forever. For one event the most specific matching policy wins:

1. a policy of the event's own log beats a ``*`` one;
2. then the pattern with the longest literal text before its first wildcard
   (``iam.role.*`` beats ``iam.*`` beats ``*``); an exact action beats any glob;
3. then the name, so the choice never depends on storage order.

No matching policy keeps the event forever. ``*`` policies do not apply to system logs (names
starting with ``_``, e.g. ``_system``): the record of what was pruned, and why, is only ever
pruned by a policy that names that log. Durations: ``90d``, ``12w``, ``6m`` (30 days),
``7y`` (365 days, counted from the ingest time ``received_at``), or ``forever``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

from trailseal.core.errors import FormatError
from trailseal.storage.retention import PolicyRecord

_DURATION = re.compile(r"([1-9][0-9]{0,5})([dwmy])")
_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ACTION = re.compile(r"[a-z0-9_.*?-]{1,128}")
_LOG = re.compile(r"\*|[A-Za-z0-9_.-]{1,128}")


def parse_keep(text: str) -> int | None:
    """Days in ``90d`` / ``12w`` / ``6m`` / ``7y``; ``None`` for ``forever``."""
    value = text.strip().lower()
    if value in {"forever", "never", "inf"}:
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    m = _DURATION.fullmatch(value)
    if m is None:
        raise FormatError(f"keep: want a duration like 90d, 12w, 6m, 7y or 'forever', got {text!r}")
    return int(m.group(1)) * _DAYS[m.group(2)]


def format_keep(days: int | None) -> str:
    """The shortest exact spelling of ``days`` (``forever`` for ``None``)."""
    if days is None:
        return "forever"
    for unit in ("y", "w"):
        if days % _DAYS[unit] == 0:
            return f"{days // _DAYS[unit]}{unit}"
    return f"{days}d"


def check_policy(name: str, log: str, action: str) -> None:
    """Validate the identifying fields of a policy (FormatError naming the field)."""
    if not _NAME.fullmatch(name):
        raise FormatError(f"name: want 1-64 of [a-z0-9._-] starting alphanumeric, got {name!r}")
    if not _LOG.fullmatch(log):
        raise FormatError(f"log: want a log name or '*', got {log!r}")
    if not _ACTION.fullmatch(action):
        raise FormatError(f"action: want a dotted lowercase action or glob, got {action!r}")


def default_name(log: str, action: str) -> str:
    """A readable policy name from its scope: ``default.auth`` for ``log=default action=auth.*``."""
    scope = "all" if log == "*" else log.lower()
    what = action.rstrip(".*") or "default"
    return re.sub(r"[^a-z0-9._-]", "-", f"{scope}.{what}")[:64]


def _applies(policy: PolicyRecord, log: str) -> bool:
    return policy.log == log or (policy.log == "*" and not log.startswith("_"))


def _literal_prefix(pattern: str) -> int:
    for position, ch in enumerate(pattern):
        if ch in "*?[":
            return position
    return len(pattern) + 1  # no wildcard: an exact action, more specific than any glob


class PolicySet:
    """The policies in force; :meth:`resolve` picks the one for an event (cached per action)."""

    def __init__(self, policies: Iterable[PolicyRecord]) -> None:
        self.policies = sorted(policies, key=lambda p: p.name)
        self._cache: dict[tuple[str, str], PolicyRecord | None] = {}

    def for_log(self, log: str) -> list[PolicyRecord]:
        """Policies that can apply to ``log``."""
        return [p for p in self.policies if _applies(p, log)]

    def resolve(self, log: str, action: str) -> PolicyRecord | None:
        """The most specific policy for an event of ``log`` with ``action``, or ``None``."""
        key = (log, action)
        if key in self._cache:
            return self._cache[key]
        best: PolicyRecord | None = None
        best_rank = (-1, -1)
        for policy in self.policies:  # by name: on a tie the first name stays
            if not _applies(policy, log) or not fnmatchcase(action, policy.action):
                continue
            rank = (int(policy.log == log), _literal_prefix(policy.action))
            if rank > best_rank:
                best, best_rank = policy, rank
        self._cache[key] = best
        return best


def cutoff(horizon: str, keep_days: int) -> str:
    """``horizon - keep_days``: events received at or before it have expired.

    Stored times share one fixed-width form, so the comparison is a string comparison.
    """
    return format_time(parse_time(horizon) - dt.timedelta(days=keep_days))


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 UTC time (``Z`` or an offset) as an aware datetime."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FormatError(f"time: not RFC 3339: {text!r}") from exc
    if value.tzinfo is None:
        raise FormatError(f"time: {text!r} has no time zone; use Z")
    return value.astimezone(dt.UTC)


def format_time(moment: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``, the form the log stores (sorts as text)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
