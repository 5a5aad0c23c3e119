"""Action patterns: ``iam.role.update`` (exact), ``iam.role.*`` (prefix) or ``*`` (everything).

A prefix pattern ``a.b.*`` matches every action that starts with ``a.b.`` (any depth below it),
not ``a.b`` itself. When several patterns match, the most specific wins: an exact pattern beats any
prefix, and a longer prefix beats a shorter one (:func:`specificity`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from trailseal.core.errors import FormatError

__all__ = ["best_match", "check_pattern", "matches", "specificity"]

_PATTERN_RE = re.compile(r"\*|[a-z0-9_]+(?:\.[a-z0-9_-]+)*(?:\.\*)?")


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid action pattern, else raise :class:`FormatError`."""
    if not isinstance(pattern, str) or len(pattern) > 128 or not _PATTERN_RE.fullmatch(pattern):
        raise FormatError(
            f"action pattern: want an action like iam.role.update, a prefix like iam.role.* "
            f"or *, got {pattern!r}"
        )
    return pattern


def matches(pattern: str, action: str) -> bool:
    """True when ``action`` falls under ``pattern``."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return action.startswith(pattern[:-1])
    return action == pattern


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key: larger is more specific (exact patterns first, then longer prefixes)."""
    if pattern == "*":
        return (0, 0)
    if pattern.endswith(".*"):
        return (1, len(pattern))
    return (2, len(pattern))


def best_match(patterns: Iterable[str], action: str) -> str | None:
    """The most specific of ``patterns`` that matches ``action``, or ``None``."""
    best: str | None = None
    for pattern in patterns:
        if matches(pattern, action) and (best is None or specificity(pattern) > specificity(best)):
            best = pattern
    return best
