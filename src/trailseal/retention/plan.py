"""The retention plan of one log: what would be archived and pruned, and why (a dry run).

Decisions use only what the log itself records, never the bare system clock:

* an event's age is counted from its ``received_at`` (the ingest time inside its leaf);
* *now* is the **horizon**: the earliest of the clock, the time the newest signed checkpoint
  was stored, and the ``received_at`` of the newest leaf it signs. A clock that jumps ahead
  therefore cannot expire anything the log has not itself reached; a log that receives nothing
  stops ageing until it does (see docs/retention.md);
* only leaves covered by the newest signed checkpoint are considered.

For each leaf in order: already pruned → skip; no policy or ``forever`` → keep; received after
``horizon - keep_days`` → keep; restored for an investigation until after the horizon → keep;
covered by a legal hold in force at the horizon → *held* (kept, listed with the holds); else
*prune*. Every pruned leaf must be archived first: the plan lists the segments to seal so that
``[0, 1 + last leaf to prune)`` is archived.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trailseal.retention.holds import HoldMatcher, QueryMatcher
from trailseal.retention.policy import PolicySet, cutoff
from trailseal.storage.base import Store
from trailseal.storage.retention import RetentionStore

SAMPLE = 50  # plan items listed per category in the JSON form


@dataclass
class Plan:
    """The outcome of :func:`make_plan`."""

    log: str
    horizon: str
    signed_size: int
    archived_end: int
    holds_version: int
    prune: array[int] = field(default_factory=lambda: array("q"))
    prune_policy: list[str] = field(default_factory=list)
    held: list[tuple[int, list[str]]] = field(default_factory=list)
    segments: list[tuple[int, int]] = field(default_factory=list)
    by_policy: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    already_pruned: int = 0
    restored_kept: int = 0
    warnings: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    held_samples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Summary with up to :data:`SAMPLE` example items per category."""
        return {
            "log": self.log, "horizon": self.horizon, "signed_size": self.signed_size,
            "archived_end": self.archived_end,
            "archive": [{"range": [s, e]} for s, e in self.segments],
            "prune": {"count": len(self.prune), "by_policy": dict(sorted(self.by_policy.items())),
                      "sample": self.samples},
            "held": {"count": len(self.held), "sample": self.held_samples},
            "kept": dict(sorted(self.kept.items())),
            "already_pruned": self.already_pruned,
            "restored_kept": self.restored_kept,
            "warnings": self.warnings,
        }


def make_plan(
    store: Store,
    extension: RetentionStore,
    log: str,
    horizon: str,
    *,
    segment_leaves: int,
    matcher: QueryMatcher | None = None,
) -> Plan:
    """Decide, without changing anything, what a run at ``horizon`` archives and prunes."""
    latest = store.latest_checkpoint(log)
    signed = latest.tree_size if latest else 0
    plan = Plan(log, horizon, signed, extension.archived_end(log), extension.holds_version(log))
    if not horizon or not signed:
        return plan
    policies = PolicySet(extension.list_policies())
    cutoffs = {p.name: cutoff(horizon, p.keep_days)
               for p in policies.for_log(log) if p.keep_days is not None}
    holds = HoldMatcher.build(store, log, extension.list_holds(log), horizon, signed, matcher)
    plan.warnings.extend(holds.warnings)
    restored = {r.leaf_index: r.restored_until or "" for r in extension.restored_records(log)}
    for entry in store.iter_entries(log, 0, signed):
        if entry.body[:1] == b"\x00" and entry.pruned is not None:
            plan.already_pruned += 1
            continue
        policy = policies.resolve(log, entry.action)
        if policy is None or policy.keep_days is None:
            plan.kept["no policy" if policy is None else f"{policy.name}: forever"] += 1
            continue
        if entry.received_at > cutoffs[policy.name]:
            plan.kept[f"{policy.name}: not expired"] += 1
            continue
        until = restored.get(entry.leaf_index)
        if until is not None and until > horizon:
            plan.restored_kept += 1
            continue
        hold_ids = holds.covering(entry)
        if hold_ids:
            plan.held.append((entry.leaf_index, hold_ids))
            if len(plan.held_samples) < SAMPLE:
                plan.held_samples.append({"leaf_index": entry.leaf_index, "id": entry.event_id,
                                          "action": entry.action, "policy": policy.name,
                                          "holds": hold_ids})
            continue
        plan.prune.append(entry.leaf_index)
        plan.prune_policy.append(policy.name)
        plan.by_policy[policy.name] += 1
        if len(plan.samples) < SAMPLE:
            plan.samples.append({"leaf_index": entry.leaf_index, "id": entry.event_id,
                                 "action": entry.action, "received_at": entry.received_at,
                                 "policy": policy.name, "keep_days": policy.keep_days})
    if plan.prune:
        need = plan.prune[-1] + 1
        start = plan.archived_end
        while start < need:
            end = min(start + segment_leaves, need)
            plan.segments.append((start, end))
            start = end
    return plan
