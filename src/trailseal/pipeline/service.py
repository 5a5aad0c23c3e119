"""``Pipeline``: runs the stages for a request, quarantines, sequences, and keeps per-tenant state.

One request (``ingest``):

1. :func:`~trailseal.pipeline.stages.run_stages` — malformed input fails the whole request (422/413);
2. events with violations are stored in the tenant's quarantine (idempotent per id and content),
   unless their id is already sequenced (then the sequencer answers as for any retry);
3. the rest (not sampled out) go to the sequencer as one request;
4. after the commit: producer sequence counters and sampling counts are updated, and the sampling
   summaries of finished intervals are written to the trail.

Receipts come back in request order, each with a ``status``: ``sequenced`` (the usual receipt),
``quarantined`` (``quarantine_id`` and ``violations``) or ``sampled_out`` (the rule that dropped it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from trailseal.core.canonical import canonicalize
from trailseal.core.errors import ConflictError, NotFoundError
from trailseal.core.ids import new_event_id
from trailseal.core.receipt import Receipt
from trailseal.pipeline.crypto import (
    ENC_PREFIX,
    TenantSecrets,
    Tokenizer,
    decrypt_field,
    load_or_create_secrets,
    open_sealed,
    parse_encrypted,
    seal,
)
from trailseal.pipeline.redact import Redactor
from trailseal.pipeline.sampling import Count, interval_start, summary_event
from trailseal.pipeline.stages import (
    STAGES,
    STAGES_OFF,
    Context,
    Correlation,
    Draft,
    Tenant,
    enrich,
    parse,
    redact,
    run_stages,
    validate,
)
from trailseal.pipeline.stages import (
    seal as seal_stage,
)
from trailseal.pipeline.state import PipelineState, QuarantineRecord, TenantPolicy
from trailseal.pipeline.subjects import MemorySubjectKeys, SQLiteSubjectKeys, SubjectKeyStore
from trailseal.schema.registry import SchemaRegistry
from trailseal.sequencer.runner import Sequencer
from trailseal.sequencer.types import Prepared
from trailseal.storage.base import Store

__all__ = ["Outcome", "Pipeline", "open_pipeline"]

_REDRIVE_STAGES = (parse, validate, redact, enrich, seal_stage)
_INTERNAL_STAGES = (parse, redact, enrich, seal_stage)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Outcome:
    """What the stages made of one request."""

    log: str
    drafts: list[Draft]
    quarantined: dict[int, QuarantineRecord]

    @property
    def prepared(self) -> list[Prepared]:
        """The events to sequence, in request order."""
        return [d.prepared for d in self.drafts if d.prepared is not None]


class Pipeline:
    """The stages plus the per-tenant state they need; one per server process."""

    def __init__(
        self,
        state: PipelineState,
        *,
        store: Store,
        sequencer: Sequencer | None,
        secrets_for: Callable[[str], TenantSecrets],
        subject_keys: SubjectKeyStore,
        enabled: bool = True,
        node: str = "",
        static_source: Mapping[str, str] | None = None,
        clock: Callable[[], str] = _now,
        closers: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.state = state
        self.store = store
        self.sequencer = sequencer
        self.registry = SchemaRegistry(state.schemas)
        self.subject_keys = subject_keys
        self.enabled = enabled
        self.node = node
        self.static_source = {k: v for k, v in (static_source or {}).items() if v}
        self.clock = clock
        self._secrets_for = secrets_for
        self._secrets: dict[str, TenantSecrets] = {}
        self._tenants: dict[str, Tenant] = {}
        self._keys: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._lock = threading.RLock()
        self._closers = list(closers)
        self._flush_lock = threading.Lock()

    # -- tenants ----------------------------------------------------------------------------------
    def secrets(self, log: str) -> TenantSecrets:
        """The tenant's secrets (created on first use)."""
        with self._lock:
            found = self._secrets.get(log)
            if found is None:
                found = self._secrets[log] = self._secrets_for(log)
            return found

    def policy(self, log: str) -> TenantPolicy:
        """The tenant's policy (defaults when none was set)."""
        stored = self.state.policies.get_policy(log)
        return TenantPolicy.from_json(stored) if stored is not None else TenantPolicy()

    def set_policy(self, log: str, data: Mapping[str, Any]) -> TenantPolicy:
        """Check and store a tenant policy; it applies to the next request."""
        policy = TenantPolicy.from_json(data)
        self.state.policies.set_policy(log, policy.to_json(), self.clock())
        with self._lock:
            self._tenants.pop(log, None)
        return policy

    def tenant(self, log: str) -> Tenant:
        """The tenant's compiled view (cached until its policy changes)."""
        found = self._tenants.get(log)
        if found is not None:
            return found
        with self._lock:
            policy = self.policy(log)
            tokenizer = Tokenizer(self.secrets(log).tokenize_key)

            def subject_key(subject: str) -> tuple[str, bytes]:
                return self._subject_key(log, subject)

            def resolve(action: str) -> Any:
                return self.registry.resolve(log, action)

            found = Tenant(log, policy, tokenizer, Redactor(policy.redaction, tokenizer, subject_key), resolve)
            self._tenants[log] = found
            return found

    def _subject_key(self, log: str, subject: str) -> tuple[str, bytes]:
        found = self._keys.get((log, subject))
        if found is None:
            found = self.subject_keys.reserve(log, subject, self.clock())
            with self._lock:
                self._keys[(log, subject)] = found
        return found

    def context(
        self, log: str, received_at: str, *, correlation: Correlation = Correlation(),
        max_depth: int = 32, max_event_bytes: int = 65_535, internal: bool = False,
        redrive: Mapping[str, str] | None = None,
    ) -> Context:
        """The stage context for one request."""
        return Context(
            log=log, received_at=received_at, tenant=self.tenant(log) if self.enabled else None,
            correlation=correlation, node=self.node, static_source=self.static_source,
            max_depth=max_depth, max_event_bytes=max_event_bytes, internal=internal, redrive=redrive,
        )

    # -- one request ------------------------------------------------------------------------------
    def process(
        self, raws: Sequence[Any], context: Context, sizes: Sequence[int] | None = None
    ) -> Outcome:
        """Run the stages and quarantine what failed validation (durably, before returning)."""
        stages = STAGES if context.tenant is not None else STAGES_OFF
        drafts = run_stages(raws, context, stages, sizes)
        self.subject_keys.commit()  # new subject keys are durable before their ciphertext is
        outcome = Outcome(context.log, drafts, {})
        waiting = [d for d in drafts if d.quarantined]
        if not waiting:
            return outcome
        known = self.store.lookup_ids(context.log, [d.event_id for d in waiting])
        tenant = context.tenant
        assert tenant is not None
        for draft in waiting:
            if draft.event_id in known:
                # A retry of an event already in the trail: let the sequencer answer it.
                draft.violations = []
                enrich(draft, context)
                seal_stage(draft, context)
                continue
            sealed = seal(self.secrets(context.log).quarantine_key, canonicalize(draft.original),
                          log=context.log, event_id=draft.event_id)
            record = QuarantineRecord(
                quarantine_id="q-" + new_event_id(), log=context.log, event_id=draft.event_id,
                action=draft.original["action"], received_at=context.received_at,
                violations=tuple(draft.violations), view=draft.body, sealed=sealed,
                content_hash=draft.content_hash,
                schema_key=draft.schema.id if draft.schema else None,
                schema_version=draft.schema.version if draft.schema else None,
            )
            outcome.quarantined[draft.position] = self.state.quarantine.put(record)
        return outcome

    def receipts(
        self, outcome: Outcome, sequenced: Sequence[Receipt | Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """Every event's receipt JSON, in request order (``sequenced``: one per prepared event)."""
        answers = iter(sequenced)
        out: list[dict[str, Any]] = []
        for draft in outcome.drafts:
            if draft.prepared is not None:
                answer = next(answers)
                receipt = answer.to_json() if isinstance(answer, Receipt) else dict(answer)
                if draft.schema is not None:
                    receipt["schema"] = {"id": draft.schema.id, "version": draft.schema.version}
                out.append(receipt)
            elif draft.position in outcome.quarantined:
                record = outcome.quarantined[draft.position]
                out.append({
                    "id": record.event_id, "log": record.log, "status": "quarantined",
                    "quarantine_id": record.quarantine_id, "received_at": record.received_at,
                    "schema": {"id": record.schema_key, "version": record.schema_version} if record.schema_key else None,
                    "violations": [v.to_json() for v in record.violations],
                })
            else:
                rule = draft.sample_rule
                out.append({
                    "id": draft.event_id, "log": outcome.log, "status": "sampled_out",
                    "sampling": {"pattern": rule.pattern, "rate": rule.rate} if rule else None,
                })
        return out

    def committed(self, outcome: Outcome, received_at: str) -> None:
        """After the sequencer committed: producer counters and sampling counts."""
        if not self.enabled:
            return
        observations = [
            (d.event.producer.id, d.event.producer.seq)
            for d in outcome.drafts
            if d.event is not None and d.event.producer is not None
        ]
        if observations:
            self.state.producers.observe_many(outcome.log, observations, received_at)
        sampled = [d for d in outcome.drafts if d.sample_rule is not None]
        if sampled:
            seconds = self.tenant(outcome.log).policy.sampling.interval_seconds
            start = interval_start(received_at, seconds)
            counts: dict[tuple[str, str], Count] = {}
            for d in sampled:
                rule = d.sample_rule
                assert rule is not None
                key = (d.body["action"], rule.pattern)
                old = counts.get(key) or Count(start, key[0], rule.pattern, rule.rate, 0, 0)
                counts[key] = replace(old, seen=old.seen + 1, kept=old.kept + (0 if d.sampled_out else 1))
            self.state.counts.add_counts(outcome.log, list(counts.values()))

    async def ingest(
        self, raws: Sequence[Any], *, log: str, received_at: str, correlation: Correlation = Correlation(),
        want_proofs: bool = False, max_depth: int = 32, max_event_bytes: int = 65_535,
        sizes: Sequence[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Process, quarantine, sequence, and account for one producer request."""
        assert self.sequencer is not None
        context = self.context(log, received_at, correlation=correlation, max_depth=max_depth,
                               max_event_bytes=max_event_bytes)
        outcome = self.process(raws, context, sizes)
        prepared = outcome.prepared
        sequenced = await self.sequencer.submit(log, prepared, want_proofs=want_proofs) if prepared else []
        self.committed(outcome, received_at)
        self.flush_summaries(received_at)
        return self.receipts(outcome, sequenced)

    # -- sampling summaries -----------------------------------------------------------------------
    def due_summaries(self, now: str, *, everything: bool = False) -> list[tuple[str, str, dict[str, Any]]]:
        """``(log, interval_start, summary event)`` for every finished (or, with ``everything``, any) interval."""
        grouped: dict[tuple[str, str], list[Count]] = {}
        for log, count in self.state.counts.pending_counts():
            grouped.setdefault((log, count.interval_start), []).append(count)
        due: list[tuple[str, str, dict[str, Any]]] = []
        for (log, start), counts in sorted(grouped.items()):
            seconds = self.tenant(log).policy.sampling.interval_seconds
            end = datetime.fromisoformat(start[:26]) + timedelta(seconds=seconds)
            if everything or datetime.fromisoformat(now[:26]) >= end:
                due.append((log, start, summary_event(log, start, seconds, counts)))
        return due

    def flush_summaries(self, now: str, *, everything: bool = False, wait: bool = False) -> int:
        """Write due sampling summaries to the trail; counters are cleared once committed."""
        if not self.enabled or self.sequencer is None or not self._flush_lock.acquire(blocking=wait):
            return 0
        try:
            due = self.due_summaries(now, everything=everything)
            for log, start, event in due:
                context = self.context(log, now, internal=True)
                prepared = run_stages([event], context, _INTERNAL_STAGES)[0].prepared
                assert prepared is not None
                future = self.sequencer.submit_future(log, [prepared])
                if wait:
                    future.result()
                    self.state.counts.clear_counts(log, start)
                else:
                    future.add_done_callback(self._cleared(log, start))
            return len(due)
        finally:
            self._flush_lock.release()

    def _cleared(self, log: str, start: str) -> Callable[[Any], None]:
        def done(future: Any) -> None:
            if future.exception() is None:
                self.state.counts.clear_counts(log, start)

        return done

    # -- quarantine -------------------------------------------------------------------------------
    async def redrive(self, log: str, quarantine_id: str, *, want_proofs: bool = False) -> dict[str, Any]:
        """Re-validate a quarantined event against the current schemas and sequence it if it passes.

        It keeps its original ``received_at``; ``metadata._trailseal.redrive`` records when and from
        which quarantine entry it came. Still invalid: stays quarantined with the new violations.
        """
        assert self.sequencer is not None
        record = self.state.quarantine.get(log, quarantine_id)
        if record is None:
            raise NotFoundError(f"quarantine entry {quarantine_id!r} not found in log {log!r}")
        if record.status != "quarantined" or record.sealed is None:
            raise ConflictError(
                f"quarantine entry {quarantine_id}: already {record.status} (leaf {record.leaf_index})",
                event_id=record.event_id,
            )
        original = orjson.loads(open_sealed(self.secrets(log).quarantine_key, record.sealed, log=log, event_id=record.event_id))
        at = self.clock()
        context = self.context(log, record.received_at, redrive={"quarantine_id": quarantine_id, "at": at})
        draft = run_stages([original], context, _REDRIVE_STAGES)[0]
        self.subject_keys.commit()
        if draft.quarantined:
            updated = replace(record, violations=tuple(draft.violations),
                              schema_key=draft.schema.id if draft.schema else None,
                              schema_version=draft.schema.version if draft.schema else None)
            self.state.quarantine.update(updated)
            return updated.to_json(detail=False)
        assert draft.prepared is not None
        receipt = (await self.sequencer.submit(log, [draft.prepared], want_proofs=want_proofs))[0]
        self.state.quarantine.update(
            replace(record, status="redriven", sealed=None, redriven_at=at, leaf_index=receipt.leaf_index)
        )
        answer = receipt.to_json()
        answer["quarantine_id"] = quarantine_id
        if draft.schema is not None:
            answer["schema"] = {"id": draft.schema.id, "version": draft.schema.version}
        return answer

    # -- subjects ---------------------------------------------------------------------------------
    def subject_token(self, log: str, subject: str) -> str:
        """How ``subject`` is named in ``log`` (its keyed token)."""
        return self.tenant(log).tokenizer.token(subject) if self.enabled else Tokenizer(self.secrets(log).tokenize_key).token(subject)

    async def forget(self, log: str, subject: str, *, actor: str = "admin", reason: str | None = None) -> dict[str, Any]:
        """Destroy the subject's keys and record the erasure as an event in ``log``."""
        assert self.sequencer is not None
        token = self.subject_token(log, subject)
        at = self.clock()
        destroyed = self.subject_keys.forget(log, token, at)
        with self._lock:
            self._keys.pop((log, token), None)
        event: dict[str, Any] = {
            "time": at, "actor": {"id": actor}, "action": "trailseal.subject.forget",
            "resource": {"type": "data_subject", "id": token}, "outcome": "success",
            "metadata": {"keys_destroyed": destroyed},
        }
        if reason:
            event["reason"] = reason
        context = self.context(log, at, internal=True)
        prepared = run_stages([event], context, _INTERNAL_STAGES)[0].prepared
        assert prepared is not None
        receipt = (await self.sequencer.submit(log, [prepared]))[0]
        return {"subject": token, "keys_destroyed": destroyed, "at": at, "receipt": receipt.to_json()}

    def reveal(self, log: str, event: Mapping[str, Any], *, decrypt: bool = False) -> dict[str, Any] | None:
        """The event with each encrypted field read: ``"erased"`` once its key was destroyed, the
        plaintext with ``decrypt``, else left encrypted. None when it has no encrypted field."""
        fields: list[dict[str, str]] = []
        event_id = str(event.get("id", ""))

        def walk(value: Any, where: str) -> Any:
            if isinstance(value, str) and value.startswith(ENC_PREFIX):
                parsed = parse_encrypted(value)
                if parsed is None:
                    return value
                key = self.subject_keys.get(log, parsed[0])
                if key is None:
                    fields.append({"pointer": where, "state": "erased"})
                    return "erased"
                if not decrypt:
                    fields.append({"pointer": where, "state": "encrypted"})
                    return value
                fields.append({"pointer": where, "state": "decrypted"})
                return decrypt_field(key, parsed[1], log=log, event_id=event_id, pointer=where)
            if isinstance(value, Mapping):
                return {k: walk(v, f"{where}/{k.replace('~', '~0').replace('/', '~1')}") for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, f"{where}/{n}") for n, v in enumerate(value)]
            return value

        view = walk(event, "")
        return {"event": view, "fields": fields} if fields else None

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        """Write every pending sampling summary (the sequencer must still run), then release."""
        try:
            self.flush_summaries(self.clock(), everything=True, wait=True)
        finally:
            for closer in self._closers:
                closer()


def open_pipeline(
    store: Store, data_dir: Path, sequencer: Sequencer | None, *, enabled: bool = True,
    node: str = "", static_source: Mapping[str, str] | None = None,
) -> Pipeline:
    """The pipeline for a server: SQLite state and subject-key file for a SQLite store, else memory."""
    from trailseal.storage.sqlite import SQLiteStore

    closers: list[Callable[[], None]] = []
    subject_keys: SubjectKeyStore
    if isinstance(store, SQLiteStore):
        from trailseal.pipeline.state_sqlite import open_sqlite_state

        state, sqlite_state = open_sqlite_state(store)
        subject_keys = SQLiteSubjectKeys(data_dir / "keys" / "subjects.db")
        closers += [sqlite_state.close, subject_keys.close]
    else:
        state, subject_keys = PipelineState(), MemorySubjectKeys()

    def secrets_for(log: str) -> TenantSecrets:
        return load_or_create_secrets(data_dir, log)

    return Pipeline(
        state, store=store, sequencer=sequencer, secrets_for=secrets_for, subject_keys=subject_keys,
        enabled=enabled, node=node, static_source=static_source, closers=closers,
    )
