"""SQLAlchemy hooks on a real SQLite file: each kind of change, bulk statements, rollbacks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Numeric, String, create_engine, delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from trailseal.core.canonical import canonicalize
from trailseal.sdk import AuditRecorder, audit_context
from trailseal.sdk.sqlalchemy import AuditHooks


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="active")
    balance: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal("0"))
    iban: Mapped[str | None] = mapped_column(String(34))
    note: Mapped[str | None] = mapped_column(String(200))


class Session_(Base):  # not audited
    __tablename__ = "web_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64))


hooks = AuditHooks(metadata=Base.metadata, default_actor="migrations")
hooks.register(Account, resource_type="account", hashed=["iban"], exclude=["note"])
Factory = sessionmaker(expire_on_commit=True)
hooks.install(Factory)


def sha(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonicalize(value)).hexdigest()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    Base.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Factory(bind=engine) as session:
        yield session


def relayed(engine: Engine, recorder: AuditRecorder) -> list[dict[str, Any]]:
    hooks.relay(engine, recorder).drain()
    out = []
    for item in recorder.recorded:
        wire = item.event.to_dict()
        wire.pop("producer", None)
        out.append(wire)
    recorder.clear()
    return out


def seed(session: Session) -> None:
    with audit_context(actor="seed"):
        session.add_all([Account(id=n, owner=f"owner-{n}", balance=Decimal(n * 10), iban=f"DE{n:020d}") for n in (1, 2, 3)])
        session.commit()


def test_orm_insert_update_delete(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    with audit_context(actor="alice", request_id="req-1", tenant="acme"):
        account = Account(owner="alice", balance=Decimal("12.50"), iban="DE001", note="secret")
        session.add(account)
        session.add(Session_(token="t"))
        session.commit()
        created = relayed(engine, audit_recorder)
        account.balance = Decimal("20.00")
        account.note = "only an excluded column changes here too"
        session.commit()
        updated = relayed(engine, audit_recorder)
        account.note = "excluded only"
        session.commit()
        assert relayed(engine, audit_recorder) == []  # no audited column changed
        session.delete(account)  # its columns were expired by the commit: loaded before the flush
        session.commit()
        deleted = relayed(engine, audit_recorder)
    [event] = created
    assert event["action"] == "account.create" and event["resource"] == {"type": "account", "id": str(account.id)}
    assert event["actor"] == {"id": "alice"} and event["request_id"] == "req-1" and event["outcome"] == "success"
    assert event["after"] == {"id": account.id, "owner": "alice", "status": "active", "balance": "12.50", "iban": sha("DE001")}
    assert "before" not in event
    assert audit_recorder.recorded == []
    [event] = updated
    assert event["action"] == "account.update"
    assert (event["before"], event["after"]) == ({"balance": "12.50"}, {"balance": "20.00"})
    [event] = deleted
    assert event["action"] == "account.delete" and "after" not in event
    assert event["before"] == {"id": account.id, "owner": "alice", "status": "active", "balance": "20.00", "iban": sha("DE001")}


def test_tenant_selects_the_log_and_default_actor(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    with audit_context(tenant="acme"):
        session.add(Account(id=7, owner="x"))
        session.commit()
    hooks.relay(engine, audit_recorder).drain()
    [item] = audit_recorder.recorded
    assert item.log == "acme" and item.event.actor.id == "migrations" and item.event.actor.type == "service"


def test_rollback_and_savepoint_rollback_emit_nothing(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    seed(session)
    relayed(engine, audit_recorder)
    with audit_context(actor="bob"):
        session.add(Account(id=10, owner="rolled back"))
        session.flush()  # written to the outbox in this transaction...
        session.execute(update(Account).where(Account.id == 1).values(status="frozen"))
        session.rollback()  # ...and gone with it
        assert relayed(engine, audit_recorder) == []
        session.add(Account(id=11, owner="kept"))
        savepoint = session.begin_nested()
        session.add(Account(id=12, owner="savepoint"))
        session.flush()
        session.get_one(Account, 2).owner = "changed in savepoint"
        session.flush()
        savepoint.rollback()  # rolls back the savepoint only
        session.commit()
    events = relayed(engine, audit_recorder)
    assert [(e["action"], e["resource"]["id"]) for e in events] == [("account.create", "11")]
    assert session.execute(select(Account.status).where(Account.id == 1)).scalar_one() == "active"


def test_bulk_update_captures_each_rows_before_and_after(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    seed(session)
    relayed(engine, audit_recorder)
    with audit_context(actor="ops"):
        # The WHERE column changes too: the rows are re-read by primary key, not by the WHERE.
        result = session.execute(update(Account).where(Account.status == "active", Account.id >= 2)
                                 .values(status="frozen", balance=Account.balance + 1))
        assert result.rowcount == 2  # type: ignore[attr-defined]
        session.commit()
    events = relayed(engine, audit_recorder)
    assert [(e["action"], e["resource"]["id"]) for e in events] == [("account.update", "2"), ("account.update", "3")]
    assert events[0]["before"] == {"status": "active", "balance": "20.00"}
    assert events[0]["after"] == {"status": "frozen", "balance": "21.00"}
    assert events[1]["after"] == {"status": "frozen", "balance": "31.00"} and events[1]["actor"] == {"id": "ops"}
    assert all(e["metadata"] == {"bulk": True} for e in events)


def test_bulk_update_by_primary_key_and_bulk_delete(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    seed(session)
    relayed(engine, audit_recorder)
    session.execute(update(Account), [{"id": 1, "owner": "renamed"}, {"id": 3, "iban": "FR99"}])
    session.commit()
    events = relayed(engine, audit_recorder)
    assert [(e["resource"]["id"], e["before"], e["after"]) for e in events] == [
        ("1", {"owner": "owner-1"}, {"owner": "renamed"}),
        ("3", {"iban": sha("DE" + "3".zfill(20))}, {"iban": sha("FR99")}),
    ]
    session.execute(delete(Account).where(Account.balance < 25))
    session.commit()
    events = relayed(engine, audit_recorder)
    assert [(e["action"], e["resource"]["id"]) for e in events] == [("account.delete", "1"), ("account.delete", "2")]
    assert events[0]["before"]["owner"] == "renamed" and "after" not in events[0]


def test_bulk_insert_with_and_without_primary_keys(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    session.execute(insert(Account), [{"id": 40, "owner": "a"}, {"id": 41, "owner": "b"}])
    session.execute(insert(Account), [{"owner": "c"}, {"owner": "d"}])
    session.commit()
    events = relayed(engine, audit_recorder)
    assert [e["action"] for e in events] == ["account.create"] * 4
    assert [e["after"]["owner"] for e in events] == ["a", "b", "c", "d"]
    assert [e["resource"]["id"] for e in events][:2] == ["40", "41"]
    assert events[2]["resource"]["id"] == str(events[2]["after"]["id"])


def test_pending_orm_changes_are_flushed_before_a_bulk_statement(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    session.add(Account(id=50, owner="new", status="active"))
    session.execute(update(Account).where(Account.id == 50).values(status="closed"))
    session.commit()
    events = relayed(engine, audit_recorder)
    assert [e["action"] for e in events] == ["account.create", "account.update"]
    assert events[1]["before"] == {"status": "active"} and events[1]["after"] == {"status": "closed"}


def test_relay_hand_off_is_idempotent(engine: Engine, session: Session, audit_recorder: AuditRecorder) -> None:
    seed(session)
    relay = hooks.relay(engine, audit_recorder)
    original_spool = audit_recorder.spool
    calls = {"n": 0}

    def spool_then_crash(events: Any, *, dedupe: bool = True) -> int:
        stored = original_spool(events, dedupe=dedupe)
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("relay died after the hand-off, before deleting the rows")
        return stored

    audit_recorder.spool = spool_then_crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        relay.run_once()
    assert len(audit_recorder.events) == 3
    assert relay.drain() == 3  # the rows were still there: relayed again, deduplicated by id
    assert len(audit_recorder.events) == 3 and relay.drain() == 0
