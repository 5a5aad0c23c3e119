"""SQLAlchemy integration: an audit event for every insert, update and delete of opted-in models,
written to an outbox table *in the application's own transaction* and relayed to the client.

::

    hooks = AuditHooks(metadata=Base.metadata)          # adds the trailseal_outbox table
    hooks.register(Invoice, resource_type="invoice", hashed=["iban"], exclude=["internal_note"])
    hooks.install(Session)                              # a Session class, sessionmaker or session
    relay = hooks.relay(engine, client=audit).start()   # outbox → client spool → server

What is captured, per change:

- ORM unit of work (``session.add`` / attribute changes / ``session.delete``, on flush):
  ``<type>.create`` with ``after``; ``<type>.update`` with ``before`` and ``after`` of the changed
  columns (all columns with ``full_update=True``); ``<type>.delete`` with ``before``.
- ORM bulk statements through the session: ``update(Model).where(...).values(...)``,
  ``delete(Model).where(...)``, bulk UPDATE by primary key (``session.execute(update(Model),
  [rows])``) and bulk ``insert(Model)``: the affected rows are read (``SELECT ... FOR UPDATE`` where
  the database has it) before the statement and re-read after it in the same transaction, so each
  row gets its own event with the real ``before`` and ``after`` — not "a bulk update happened".
  A bulk insert without primary keys in its parameters gets ``RETURNING`` of the keys added.
- Per field: ``exclude`` drops it, ``hashed`` replaces the value by ``"sha256:<hex>"`` of its
  RFC 8785 form (proves what it was without storing it), ``include`` keeps only the listed ones.

The outbox row commits or rolls back with the change (a savepoint rollback too), so a committed
change always gets its event and a rolled-back one never does. The relay moves outbox rows to
the client with ``client.spool(events, dedupe=True)`` — durable in the client's spool before the
rows are deleted, and deduplicated by event id if the relay dies in between — and is woken after
each commit that wrote to the outbox (and polls every ``interval`` seconds). Changes made with
textual SQL or a Core connection outside the session are not seen.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection, Engine, Result
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, sessionmaker
from sqlalchemy.sql.expression import ColumnElement

from trailseal.core.canonical import canonicalize
from trailseal.sdk.context import effective_context
from trailseal.sdk.default import Emitter, resolve
from trailseal.sdk.envelope import build_event
from trailseal.sdk.errors import SDKError

__all__ = ["AuditHooks", "ModelPolicy", "OutboxRelay"]

_log = logging.getLogger("trailseal.sdk")
_PENDING_DELETES = "trailseal_deleted"
_WROTE = "trailseal_outbox_written"
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """How one model is audited; see :meth:`AuditHooks.register`."""

    resource_type: str
    action_prefix: str
    include: frozenset[str] | None
    exclude: frozenset[str]
    hashed: frozenset[str]
    full_update: bool


def _jsonable(value: Any) -> Any:
    """A column value as I-JSON: datetimes ISO 8601, decimals/UUIDs as strings, bytes base64."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else str(value)
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID, dt.timedelta)):
        return str(value)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


class AuditHooks:
    """Registers audited models, writes the outbox, and builds relays. See the module docstring.

    ``metadata`` — put the outbox table in the application's ``MetaData`` (so ``create_all`` and
    migrations see it); ``table_name`` — its name; ``default_actor`` — the actor when the audit
    context has none (e.g. a migration script).
    """

    def __init__(
        self,
        *,
        metadata: MetaData | None = None,
        table_name: str = "trailseal_outbox",
        default_actor: str | Mapping[str, Any] = "system",
    ) -> None:
        self.outbox = Table(
            table_name, metadata if metadata is not None else MetaData(),
            Column("position", Integer, primary_key=True, autoincrement=True),
            Column("event_id", String(128), nullable=False),
            Column("log", String(128), nullable=True),
            Column("body", Text, nullable=False),
        )
        self.default_actor = {"id": default_actor, "type": "service"} if isinstance(default_actor, str) else dict(default_actor)
        self._policies: dict[type[Any], ModelPolicy] = {}
        self._relays: list[OutboxRelay] = []

    # -- configuration ----------------------------------------------------------------------------
    def register(
        self,
        model: type[Any],
        *,
        resource_type: str | None = None,
        action_prefix: str | None = None,
        include: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        hashed: Iterable[str] = (),
        full_update: bool = False,
    ) -> type[Any]:
        """Audit ``model``: resource type (default: the table name), action prefix (default: the
        resource type; actions are ``<prefix>.create|update|delete``) and per-field policy."""
        mapper: Mapper[Any] = inspect(model)
        kind = resource_type or str(getattr(mapper.local_table, "name", model.__name__.lower()))
        self._policies[model] = ModelPolicy(
            kind, action_prefix or kind, frozenset(include) if include is not None else None,
            frozenset(exclude), frozenset(hashed), full_update,
        )
        # Load the old value on assignment even when it was expired or never loaded, so every
        # update has a real "before" (SQLAlchemy "active history").
        for prop in mapper.column_attrs:
            event.listen(getattr(model, prop.key), "set", _noop_set, active_history=True)
        return model

    def audited(self, **options: Any) -> Callable[[type[Any]], type[Any]]:
        """Class decorator form of :meth:`register`."""

        def decorate(model: type[Any]) -> type[Any]:
            return self.register(model, **options)

        return decorate

    def install(self, target: type[Session] | sessionmaker[Any] | Session = Session) -> None:
        """Listen on ``target``'s sessions (default: every ``Session``)."""
        event.listen(target, "before_flush", self._before_flush)
        event.listen(target, "after_flush", self._after_flush)
        event.listen(target, "do_orm_execute", self._on_execute)
        event.listen(target, "after_commit", self._after_commit)
        event.listen(target, "after_rollback", self._after_rollback)

    def create_outbox(self, bind: Engine | Connection) -> None:
        """Create the outbox table if it does not exist."""
        self.outbox.create(bind, checkfirst=True)

    def relay(self, engine: Engine, client: Emitter | None = None, *, batch_size: int = 500,
              interval: float = 1.0) -> OutboxRelay:
        """A relay from this outbox to ``client`` (default: the default client); ``start()`` it."""
        relay = OutboxRelay(engine, self.outbox, client, batch_size=batch_size, interval=interval)
        self._relays.append(relay)
        return relay

    # -- capture: the unit of work ----------------------------------------------------------------
    def _before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        # A deleted object's columns may be expired: load them now, while SQL may still be run.
        snapshots = session.info.setdefault(_PENDING_DELETES, {})
        for obj in session.deleted:
            policy = self._policies.get(type(obj))
            if policy is not None:
                snapshots[id(obj)] = self._columns(obj, policy, load=True)

    def _after_flush(self, session: Session, flush_context: Any) -> None:
        events: list[dict[str, Any]] = []
        for obj in session.new:
            if (policy := self._policies.get(type(obj))) is not None:
                events.append(self._event(policy, "create", self._key(obj), None, self._columns(obj, policy)))
        for obj in session.dirty:
            if (policy := self._policies.get(type(obj))) is None or obj in session.deleted:
                continue
            before, after = self._changes(obj, policy)
            if before or after:
                events.append(self._event(policy, "update", self._key(obj), before, after))
        snapshots = session.info.pop(_PENDING_DELETES, {})
        for obj in session.deleted:
            if (policy := self._policies.get(type(obj))) is not None:
                before = snapshots.get(id(obj)) or self._columns(obj, policy)
                events.append(self._event(policy, "delete", self._key(obj), before, None))
        self._write(session.connection(), events)
        if events:
            session.info[_WROTE] = True

    # -- capture: bulk statements -----------------------------------------------------------------
    def _on_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        if not (state.is_update or state.is_delete or state.is_insert) or state.bind_mapper is None:
            return None
        mapper = state.bind_mapper
        policy = self._policies.get(mapper.class_)
        if policy is None:
            return None
        session = state.session
        if session.autoflush:
            session.flush()  # pending ORM changes first, in order (and audited by the flush hooks)
        conn = session.connection(bind_arguments=state.bind_arguments)
        if state.is_insert:
            return self._bulk_insert(state, mapper, policy, conn)
        params = state.parameters
        rows: list[dict[str, Any]]
        if isinstance(params, Sequence) and not isinstance(params, Mapping):  # UPDATE by primary key
            keys = [tuple(p[prop.key] for prop in self._pk_props(mapper)) for p in params]
            rows = self._select(conn, mapper, keys)
        else:
            where = state.statement.whereclause  # type: ignore[attr-defined]
            query = select(*self._labeled(mapper)).with_for_update()
            if where is not None:
                query = query.where(where)
            bound: dict[str, Any] = dict(params) if isinstance(params, Mapping) else {}
            rows = [dict(row) for row in conn.execute(query, bound).mappings()]
        result = state.invoke_statement()
        events = []
        if state.is_delete:
            for row in rows:
                events.append(self._event(policy, "delete", self._row_key(mapper, row), self._shape(row, policy), None,
                                          bulk=True))
        else:
            keys = [self._row_tuple(mapper, row) for row in rows]
            after_rows = {self._row_tuple(mapper, row): row for row in self._select(conn, mapper, keys)}
            for row in rows:
                new = after_rows.get(self._row_tuple(mapper, row))
                if new is None:
                    continue  # the update moved the primary key: out of scope
                before, after = self._diff(row, new, policy)
                events.append(self._event(policy, "update", self._row_key(mapper, row), before, after, bulk=True))
        self._write(conn, events)
        if events:
            session.info[_WROTE] = True
        return result

    def _bulk_insert(self, state: ORMExecuteState, mapper: Mapper[Any], policy: ModelPolicy, conn: Connection) -> Result[Any]:
        params = state.parameters
        rows = [dict(p) for p in (params if isinstance(params, Sequence) and not isinstance(params, Mapping) else [params or {}])]
        pk_keys = [prop.key for prop in self._pk_props(mapper)]
        if all(all(row.get(key) is not None for key in pk_keys) for row in rows):
            result = state.invoke_statement()
            keys = [tuple(row[key] for key in pk_keys) for row in rows]
        else:
            statement = state.statement
            if getattr(statement, "_returning", ()) or not conn.dialect.insert_executemany_returning:
                raise SDKError(
                    f"sqlalchemy: bulk insert into audited {mapper.class_.__name__} needs the primary key in "
                    "every parameter set, or a database with INSERT ... RETURNING"
                )
            statement = statement.returning(*[mapper.get_property(key).columns[0] for key in pk_keys])  # type: ignore[attr-defined]
            frozen = state.invoke_statement(statement=statement).freeze()
            keys = [tuple(row) for row in frozen.data]
            result = frozen()
        after_rows = {self._row_tuple(mapper, row): row for row in self._select(conn, mapper, keys)}
        events = [self._event(policy, "create", ",".join(map(str, key)), None, self._shape(after_rows.get(key, {}), policy),
                              bulk=True) for key in keys]
        self._write(conn, events)
        if events:
            state.session.info[_WROTE] = True
        return result

    # -- after the transaction --------------------------------------------------------------------
    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_WROTE, False):
            for relay in self._relays:
                relay.wake()

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(_PENDING_DELETES, None)
        session.info.pop(_WROTE, None)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _pk_props(mapper: Mapper[Any]) -> list[Any]:
        return [mapper.get_property_by_column(column) for column in mapper.primary_key]

    def _labeled(self, mapper: Mapper[Any]) -> list[ColumnElement[Any]]:
        return [prop.columns[0].label(prop.key) for prop in mapper.column_attrs]

    def _select(self, conn: Connection, mapper: Mapper[Any], keys: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        """Rows (by attribute key) whose primary key is in ``keys``, in chunks."""
        columns = list(mapper.primary_key)
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            match = columns[0].in_([k[0] for k in chunk]) if len(columns) == 1 else tuple_(*columns).in_(chunk)
            out += [dict(row) for row in conn.execute(select(*self._labeled(mapper)).where(match)).mappings()]
        return out

    def _row_tuple(self, mapper: Mapper[Any], row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[prop.key] for prop in self._pk_props(mapper))

    def _row_key(self, mapper: Mapper[Any], row: Mapping[str, Any]) -> str:
        return ",".join(str(v) for v in self._row_tuple(mapper, row))

    @staticmethod
    def _key(obj: Any) -> str:
        state = inspect(obj)
        identity = state.identity or state.mapper.primary_key_from_instance(obj)
        return ",".join(str(v) for v in identity)

    def _columns(self, obj: Any, policy: ModelPolicy, *, load: bool = False) -> dict[str, Any]:
        state = inspect(obj)
        values = {}
        for prop in state.mapper.column_attrs:
            if load:
                values[prop.key] = getattr(obj, prop.key)
            elif prop.key in state.dict:
                values[prop.key] = state.dict[prop.key]
        return self._shape(values, policy)

    def _changes(self, obj: Any, policy: ModelPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
        state = inspect(obj)
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        changed: dict[str, Any] = {}
        for prop in state.mapper.column_attrs:
            history = state.attrs[prop.key].history
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if (history.added or history.deleted) and old != new:
                before[prop.key], after[prop.key] = old, new
                changed[prop.key] = True
            elif policy.full_update and prop.key in state.dict:
                before[prop.key] = after[prop.key] = state.dict[prop.key]
        if not self._visible(changed, policy):
            return {}, {}  # nothing audited changed (only excluded columns, or relationships)
        return self._shape(before, policy), self._shape(after, policy)

    def _diff(self, old: Mapping[str, Any], new: Mapping[str, Any], policy: ModelPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
        if policy.full_update:
            return self._shape(old, policy), self._shape(new, policy)
        changed = [key for key in new if old.get(key) != new[key]]
        return self._shape({k: old.get(k) for k in changed}, policy), self._shape({k: new[k] for k in changed}, policy)

    @staticmethod
    def _visible(values: Mapping[str, Any], policy: ModelPolicy) -> list[str]:
        return [key for key in values
                if key not in policy.exclude and (policy.include is None or key in policy.include)]

    def _shape(self, values: Mapping[str, Any], policy: ModelPolicy) -> dict[str, Any]:
        """Apply include / exclude / hashed to column values, and make them JSON."""
        out: dict[str, Any] = {}
        for key in self._visible(values, policy):
            value = _jsonable(values[key])
            if key in policy.hashed and value is not None:
                value = "sha256:" + hashlib.sha256(canonicalize(value)).hexdigest()
            out[key] = value
        return out

    def _event(self, policy: ModelPolicy, verb: str, key: str, before: dict[str, Any] | None,
               after: dict[str, Any] | None, *, bulk: bool = False) -> dict[str, Any]:
        context = effective_context()
        fields: dict[str, Any] = {
            "action": f"{policy.action_prefix}.{verb}",
            "resource": {"type": policy.resource_type, "id": key[:256] or "?"},
            "outcome": "success",
        }
        if context.actor is None:
            fields["actor"] = self.default_actor
        if before is not None:
            fields["before"] = before
        if after is not None:
            fields["after"] = after
        if bulk:
            fields["metadata"] = {"bulk": True}
        wire, log = build_event(None, fields, context, source=None, strict=False)
        if log:
            wire["log"] = log
        return wire

    def _write(self, conn: Connection, events: list[dict[str, Any]]) -> None:
        if events:
            conn.execute(self.outbox.insert(), [
                {"event_id": e["id"], "log": e.pop("log", None), "body": orjson.dumps(e).decode()} for e in events
            ])


def _noop_set(target: Any, value: Any, oldvalue: Any, initiator: Any) -> Any:
    return value


class OutboxRelay:
    """Moves outbox rows to the client's spool, oldest first; see the module docstring."""

    def __init__(self, engine: Engine, outbox: Table, client: Emitter | None = None, *,
                 batch_size: int = 500, interval: float = 1.0) -> None:
        self.engine = engine
        self.outbox = outbox
        self.client = client
        self.batch_size = batch_size
        self.interval = interval
        self.relayed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Relay up to ``batch_size`` rows in one transaction; returns how many."""
        table = self.outbox
        with self.engine.begin() as conn:
            query = select(table.c.position, table.c.log, table.c.body).order_by(table.c.position)
            rows = conn.execute(query.limit(self.batch_size).with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            events = []
            for _position, log, body in rows:
                wire = orjson.loads(body)
                if log:
                    wire["log"] = log
                events.append(wire)
            spool = getattr(resolve(self.client), "spool", None)
            if spool is None:
                raise SDKError("outbox relay: the client has no spool() (use AuditClient or AuditRecorder)")
            spool(events, dedupe=True)
            conn.execute(delete(table).where(table.c.position.in_([row[0] for row in rows])))
        self.relayed += len(rows)
        return len(rows)

    def drain(self) -> int:
        """Relay until the outbox is empty; returns how many rows moved."""
        total = 0
        while moved := self.run_once():
            total += moved
        return total

    def wake(self) -> None:
        """Run soon (called after a commit that wrote to the outbox)."""
        self._wake.set()

    def start(self) -> OutboxRelay:
        """Relay on a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="trailseal-outbox-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Relay what is left, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        failures = 0
        while True:
            try:
                self.drain()
                failures = 0
            except Exception:
                failures += 1
                _log.exception("trailseal outbox relay: failed; the rows stay in the outbox and are retried")
            if self._stop.is_set():
                return
            self._wake.wait(self.interval if not failures else min(30.0, self.interval * 2**failures))
            self._wake.clear()
