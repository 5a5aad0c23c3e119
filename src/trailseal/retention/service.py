"""``Retention``: policies, holds, runs and restores over one store — what the API and CLI call.

A run of one log (:meth:`Retention.apply`) is journalled so that kill -9 at any point and a
rerun end in the same state, and no event is ever pruned without being archived first:

1. **journal** — a run record with a fixed horizon (a killed run is *resumed*: same id, same
   horizon, so the same decisions);
2. **archive** — seal each planned segment in the target (data, then signed manifest), then
   record it; a segment already in the target from a killed run is verified and adopted;
3. **prune** — in batches, each one transaction that re-checks archive coverage and the log's
   holds version (a hold written meanwhile makes the run plan again);
4. **record** — mark the run done, then append it as a ``retention.run`` audit event to the
   ``_system`` log under the id ``retention-run-<run id>`` (idempotent: a rerun that finds a
   done-but-unrecorded run appends the same event, which the log deduplicates).

Policy and hold changes and restores are audit events in ``_system`` too (invariant 7).
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from trailseal.core.errors import ConflictError, FormatError, NotFoundError, VerificationError
from trailseal.core.ids import new_event_id
from trailseal.core.keys import Keyring
from trailseal.pipeline.prepare import prepare
from trailseal.retention.archive import (
    SealOptions,
    adopt_segment,
    entry_from_body,
    read_segment,
    seal_segment,
)
from trailseal.retention.holds import QueryMatcher, find_query_matcher, in_force, normalize_selector
from trailseal.retention.plan import Plan, make_plan
from trailseal.retention.policy import (
    PolicySet,
    check_policy,
    default_name,
    format_keep,
    format_time,
    parse_time,
)
from trailseal.retention.targets import ArchiveTarget
from trailseal.sequencer.runner import Sequencer
from trailseal.storage.base import PruneMark, Store
from trailseal.storage.proofs import node_reader
from trailseal.storage.retention import (
    HoldRecord,
    HoldsChanged,
    PolicyRecord,
    RunRecord,
    SegmentRecord,
    retention_store,
)

_log = logging.getLogger("trailseal.retention")

SYSTEM_LOG = "_system"
_UNSET: Any = object()


@dataclass(frozen=True)
class RetentionConfig:
    """Knobs of runs and restores (``Settings.retention_*`` / ``archive_*``)."""

    segment_leaves: int = 16_384
    prune_batch: int = 5_000
    pause_seconds: float = 0.0  # between batches: throttles I/O on a busy store
    restore_days: int = 30
    system_log: str = SYSTEM_LOG
    seal: SealOptions = field(default_factory=SealOptions)


class Retention:
    """Retention for every log of ``store``; thread-safe (runs and restores serialize)."""

    def __init__(
        self,
        store: Store,
        *,
        keyring_for: Callable[[str], Keyring],
        target: ArchiveTarget,
        clock: Callable[[], str],
        sequencer: Sequencer | None = None,
        config: RetentionConfig | None = None,
        matcher: QueryMatcher | None = _UNSET,
    ) -> None:
        self.store = store
        self.ext = retention_store(store)
        self.keyring_for = keyring_for
        self.target = target
        self.clock = clock
        self.sequencer = sequencer
        self.config = config or RetentionConfig()
        self.matcher: QueryMatcher | None = find_query_matcher() if matcher is _UNSET else matcher
        self._lock = threading.RLock()

    # -- time --------------------------------------------------------------------------------
    def horizon(self, log: str) -> str:
        """The latest moment retention may treat as *now* for ``log`` (see plan.py)."""
        latest = self.store.latest_checkpoint(log)
        if latest is None or latest.tree_size == 0:
            return ""
        moments = [self.clock(), latest.created_at]
        newest = self.store.get_entry(log, latest.tree_size - 1)
        if newest is not None and newest.received_at:
            moments.append(newest.received_at)
        return min(format_time(parse_time(m)) for m in moments)

    def _pause(self) -> None:
        if self.config.pause_seconds > 0:
            time.sleep(self.config.pause_seconds)

    # -- audit -------------------------------------------------------------------------------
    def _audit(self, action: str, resource: tuple[str, str], actor: str,
               metadata: Mapping[str, Any], *, event_id: str | None = None,
               at: str | None = None) -> str | None:
        """Append one audit event to the system log; its id, or None without a sequencer."""
        if self.sequencer is None:
            return None
        raw: dict[str, Any] = {
            "time": at or self.clock(), "actor": {"id": actor or "unknown"}, "action": action,
            "resource": {"type": resource[0], "id": resource[1]}, "outcome": "success",
            "source": {"service": "trailseal-retention"}, "metadata": dict(metadata),
        }
        if event_id is not None:
            raw["id"] = event_id
        log = self.config.system_log
        prepared = prepare(raw, log=log, received_at=self.clock())
        return self.sequencer.submit_sync(log, [prepared])[0].id

    # -- policies ----------------------------------------------------------------------------
    def policies(self, log: str | None = None) -> list[PolicyRecord]:
        """Every policy, or those that can apply to ``log``."""
        found = self.ext.list_policies()
        return found if log is None else PolicySet(found).for_log(log)

    def set_policy(self, log: str, action: str, keep_days: int | None, *, actor: str,
                   name: str | None = None) -> PolicyRecord:
        """Create or change a policy (audit event ``retention.policy.set``)."""
        name = name or default_name(log, action)
        check_policy(name, log, action)
        if keep_days is not None and not 1 <= keep_days <= 365 * 1000:
            raise FormatError(f"keep_days: want 1..365000 or forever, got {keep_days}")
        with self._lock:
            now = self.clock()
            before = next((p for p in self.ext.list_policies() if p.name == name), None)
            policy = PolicyRecord(name, log, action, keep_days,
                                  before.created_at if before else now, now, actor)
            self.ext.put_policy(policy)
        self._audit("retention.policy.set", ("retention_policy", name), actor,
                    {"log": log, "action_pattern": action, "keep": format_keep(keep_days),
                     "previous": before.to_json() if before else None})
        return policy

    def delete_policy(self, name: str, *, actor: str) -> PolicyRecord:
        """Remove a policy (audit event ``retention.policy.delete``)."""
        with self._lock:
            before = next((p for p in self.ext.list_policies() if p.name == name), None)
            if before is None:
                raise NotFoundError(f"retention policy {name!r} does not exist")
            self.ext.delete_policy(name)
        self._audit("retention.policy.delete", ("retention_policy", name), actor,
                    {"previous": before.to_json()})
        return before

    # -- holds -------------------------------------------------------------------------------
    def hold_status(self, hold: HoldRecord) -> str:
        """``active``, ``expired`` or ``released`` (expiry judged at the log's horizon)."""
        if hold.released_at is not None:
            return "released"
        horizon = self.horizon(hold.log) or self.clock()
        return "active" if in_force(hold, min(horizon, self.clock())) else "expired"

    def hold_json(self, hold: HoldRecord) -> dict[str, Any]:
        """The hold with its status."""
        return {**hold.to_json(), "status": self.hold_status(hold)}

    def create_hold(self, log: str, *, case: str, owner: str, selector: Mapping[str, Any],
                    actor: str, expires_at: str | None = None, reason: str = "") -> HoldRecord:
        """Place a legal hold (audit event ``retention.hold.create``)."""
        if not case.strip() or not owner.strip():
            raise FormatError("hold: case and owner are required")
        normalized = normalize_selector(selector)
        if normalized["kind"] == "query":
            if self.matcher is None:
                raise FormatError("selector.q: query holds need the query engine "
                                  "(trailseal.query.match_leaves), which is not installed; "
                                  "hold by time range, event ids or tenant instead")
            list(self.matcher(self.store, log, normalized["q"], 0, 0))  # parses, or FormatError
        now = self.clock()
        hold = HoldRecord(
            hold_id="hold-" + new_event_id(), log=log, case_ref=case.strip(),
            owner=owner.strip(), selector=normalized, created_at=now, created_by=actor,
            reason=reason, expires_at=self._future(expires_at, now), updated_at=now,
        )
        self.ext.put_hold(hold)
        self._audit("retention.hold.create", ("legal_hold", hold.hold_id), actor, hold.to_json())
        return hold

    def _future(self, value: str | None, now: str) -> str | None:
        if value is None:
            return None
        normalized = format_time(parse_time(value))
        if normalized <= now:
            raise FormatError(f"expires_at: {value} is not in the future")
        return normalized

    def get_hold(self, hold_id: str) -> HoldRecord:
        """The hold; NotFoundError if unknown."""
        hold = self.ext.get_hold(hold_id)
        if hold is None:
            raise NotFoundError(f"hold {hold_id!r} does not exist")
        return hold

    def list_holds(self, log: str | None = None, *, include_released: bool = True) -> list[HoldRecord]:
        """Holds, oldest first."""
        holds = self.ext.list_holds(log)
        return holds if include_released else [h for h in holds if h.released_at is None]

    def change_hold(self, hold_id: str, *, actor: str, expires_at: str | None = _UNSET,
                    owner: str | None = None, case: str | None = None,
                    reason: str | None = None) -> HoldRecord:
        """Change a standing hold's expiry, owner, case or reason (``retention.hold.change``)."""
        with self._lock:
            before = self.get_hold(hold_id)
            if before.released_at is not None:
                raise ConflictError(f"hold {hold_id} was released; create a new one")
            now = self.clock()
            after = replace(
                before, updated_at=now,
                expires_at=before.expires_at if expires_at is _UNSET else self._future(expires_at, now),
                owner=owner.strip() if owner else before.owner,
                case_ref=case.strip() if case else before.case_ref,
                reason=before.reason if reason is None else reason,
            )
            self.ext.put_hold(after)
        self._audit("retention.hold.change", ("legal_hold", hold_id), actor,
                    {"before": before.to_json(), "after": after.to_json()})
        return after

    def release_hold(self, hold_id: str, *, actor: str, reason: str = "") -> HoldRecord:
        """Release a hold (``retention.hold.release``); its events age normally again."""
        with self._lock:
            before = self.get_hold(hold_id)
            if before.released_at is not None:
                raise ConflictError(f"hold {hold_id} was already released at {before.released_at}")
            now = self.clock()
            after = replace(before, released_at=now, released_by=actor, release_reason=reason,
                            updated_at=now)
            self.ext.put_hold(after)
        self._audit("retention.hold.release", ("legal_hold", hold_id), actor, after.to_json())
        return after

    # -- plan and run ------------------------------------------------------------------------
    def plan(self, log: str, *, horizon: str | None = None) -> Plan:
        """The dry run of :meth:`apply` (nothing changes)."""
        if self.store.get_log(log) is None:
            raise NotFoundError(f"log {log!r} does not exist")
        return make_plan(self.store, self.ext, log,
                         self.horizon(log) if horizon is None else horizon,
                         segment_leaves=self.config.segment_leaves, matcher=self.matcher)

    def apply(self, log: str, *, actor: str) -> RunRecord:
        """Archive, then prune what the plan allows; resumes a killed run of ``log``."""
        if self.store.get_log(log) is None:
            raise NotFoundError(f"log {log!r} does not exist")
        with self._lock:
            for pending in self.ext.open_runs(log):
                if pending.state == "done":
                    self._record(pending)
            running = [r for r in self.ext.open_runs(log) if r.state == "running"]
            if running:
                run = replace(running[0], resumed=running[0].resumed + 1)
                _log.warning("resuming retention run %s of log %s", run.run_id, log)
            else:
                run = RunRecord(new_event_id(), log, self.clock(), self.horizon(log), actor)
            self.ext.put_run(run)
            for _attempt in range(10):
                plan = self.plan(log, horizon=run.horizon)
                run = self._archive(plan, run)
                try:
                    run = self._prune(plan, run)
                    break
                except HoldsChanged:
                    _log.info("holds of log %s changed during run %s; planning again", log,
                              run.run_id)
            else:
                raise ConflictError(f"retention: holds of log {log} kept changing; run again")
            run = replace(run, state="done", finished_at=self.clock(), held=len(plan.held),
                          detail={"by_policy": dict(sorted(plan.by_policy.items())),
                                  "archived_end": self.ext.archived_end(log),
                                  "signed_size": plan.signed_size, "warnings": plan.warnings})
            self.ext.put_run(run)
            return self._record(run)

    def apply_all(self, *, actor: str) -> list[RunRecord]:
        """:meth:`apply` on every log some policy can apply to."""
        policies = PolicySet(self.ext.list_policies())
        return [self.apply(info.name, actor=actor) for info in self.store.list_logs()
                if policies.for_log(info.name)]

    def _archive(self, plan: Plan, run: RunRecord) -> RunRecord:
        if not plan.segments:
            return run
        log = plan.log
        latest = self.store.latest_checkpoint(log)
        info = self.store.get_log(log)
        assert latest is not None and info is not None
        keyring = self.keyring_for(log)
        start, need = plan.segments[0][0], plan.segments[-1][1]
        while start < need:
            # A killed run may have sealed a segment without recording it (perhaps with another
            # segment size): adopt it rather than writing an overlapping one.
            record = adopt_segment(self.store, log, info.origin, start, keyring, self.target)
            if record is None:
                end = min(start + self.config.segment_leaves, need)
                record = seal_segment(self.store, log, info.origin, start, end, latest, keyring,
                                      self.target, self.clock(), self.config.seal)
            self.ext.add_segment(record)
            start = record.end
            run = replace(run, segments=run.segments + 1)
            self.ext.put_run(run)
            self._pause()
        return run

    def _prune(self, plan: Plan, run: RunRecord) -> RunRecord:
        if not plan.prune:
            return run
        segments = self.ext.list_segments(plan.log)
        starts = [s.start for s in segments]
        batch = max(1, self.config.prune_batch)
        for at in range(0, len(plan.prune), batch):
            now = self.clock()
            items: list[tuple[int, PruneMark]] = []
            for k in range(at, min(at + batch, len(plan.prune))):
                leaf_index = plan.prune[k]
                segment = segments[bisect.bisect_right(starts, leaf_index) - 1]
                items.append((leaf_index, PruneMark(plan.prune_policy[k], now, segment.segment_id)))
            pruned = self.ext.prune(plan.log, items, run.run_id, plan.holds_version)
            run = replace(run, pruned=run.pruned + pruned)
            self.ext.put_run(run)
            self._pause()
        return run

    def _record(self, run: RunRecord) -> RunRecord:
        metadata = {"run_id": run.run_id, "horizon": run.horizon, "started_at": run.started_at,
                    "segments_sealed": run.segments, "pruned": run.pruned, "held": run.held,
                    "resumed": run.resumed, **dict(run.detail)}
        try:
            self._audit("retention.run", ("log", run.log), run.actor, metadata,
                        event_id=f"retention-run-{run.run_id}", at=run.finished_at)
        except Exception:  # recorded on the next run; the run itself is complete
            _log.exception("could not record retention run %s", run.run_id)
            return run
        done = replace(run, recorded=True)
        self.ext.put_run(done)
        return done

    # -- archive -----------------------------------------------------------------------------
    def segments(self, log: str) -> list[SegmentRecord]:
        """The log's sealed segments."""
        return self.ext.list_segments(log)

    def restore(self, log: str, segment: str, *, actor: str,
                keep_days: int | None = None) -> dict[str, Any]:
        """Bring a segment's pruned events back for an investigation (``archive.segment.restore``).

        The segment is verified (manifest and checkpoint signatures, data hashes, proof to the
        signed root), its checkpoint must match the stored one, and every archived leaf hash
        must equal the stored leaf hash and the level-0 tile. Restored events are kept for
        ``keep_days`` (default ``restore_days``), then the next run prunes them again.
        """
        days = self.config.restore_days if keep_days is None else keep_days
        if not 1 <= days <= 3650:
            raise FormatError(f"keep_days: want 1..3650, got {days}")
        with self._lock:
            record = next((s for s in self.ext.list_segments(log) if s.segment_id == segment), None)
            if record is None:
                raise NotFoundError(f"log {log!r} has no archive segment {segment!r}")
            info = self.store.get_log(log)
            assert info is not None
            check = read_segment(self.target, record, self.keyring_for(log), info.origin)
            manifest = check.manifest
            assert manifest is not None
            stored = self.store.get_checkpoint(log, manifest.tree_size)
            if stored is not None and stored.note.decode() != manifest.checkpoint:
                raise VerificationError(f"archive: segment {segment}'s checkpoint differs from the "
                                        f"stored checkpoint at size {manifest.tree_size}")
            get_node = node_reader(self.store, log)
            entries = list(self.store.iter_entries(log, record.start, record.end))
            if len(entries) != record.end - record.start:
                raise VerificationError(f"archive: log {log} is missing leaves of {segment}")
            restore = []
            for entry, body, want in zip(entries, check.lines, manifest.leaf_hashes, strict=True):
                if not want == entry.leaf_hash == get_node(0, entry.leaf_index):
                    raise VerificationError(f"archive: leaf {entry.leaf_index}: archived leaf hash "
                                            f"differs from the log's tree")
                if entry.pruned is not None:
                    restore.append(entry_from_body(log, entry.leaf_index, body, entry))
            now = self.clock()
            until = format_time(parse_time(now) + dt.timedelta(days=days))
            count = self.ext.restore(log, restore, now, until)
        result = {"log": log, "segment": segment, "range": [record.start, record.end],
                  "restored": count, "restored_until": until,
                  "already_present": len(entries) - len(restore)}
        self._audit("archive.segment.restore", ("archive_segment", f"{log}/{segment}"), actor,
                    result)
        return result

    # -- overview ----------------------------------------------------------------------------
    def show(self, log: str) -> dict[str, Any]:
        """Policies that apply, holds, archive and prune state, recent runs."""
        if self.store.get_log(log) is None:
            raise NotFoundError(f"log {log!r} does not exist")
        segments = self.ext.list_segments(log)
        pruned, restored = self.ext.count_pruned(log)
        return {
            "log": log,
            "horizon": self.horizon(log),
            "policies": [{**p.to_json(), "keep": format_keep(p.keep_days)}
                         for p in self.policies(log)],
            "holds": [self.hold_json(h) for h in self.ext.list_holds(log)
                      if h.released_at is None],
            "archive": {"target": self.target.url, "segments": len(segments),
                        "archived_end": segments[-1].end if segments else 0,
                        "raw_bytes": sum(s.raw_bytes for s in segments),
                        "stored_bytes": sum(s.stored_bytes for s in segments)},
            "pruned": pruned,
            "restored": restored,
            "runs": [r.to_json() for r in self.ext.list_runs(log, 5)],
        }
