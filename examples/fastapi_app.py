"""A FastAPI service with trailseal: audit middleware, SQLAlchemy hooks, an explicit event.

Run it against a local trailseal server::

    trailseal serve --data ./trailseal-data &
    TRAILSEAL_URL=http://127.0.0.1:8700 uvicorn examples.fastapi_app:create_app_from_env --factory

    curl -s -XPOST localhost:8000/invoices -H 'authorization: Bearer alice' \\
         -H 'content-type: application/json' -d '{"customer": "acme", "amount": 120}'
    curl -s -XPOST localhost:8000/invoices/1/approve -H 'authorization: Bearer bob'

Every request under /invoices gets an ``http.request`` access event; every change to an
``Invoice`` row — including the bulk ``void-overdue`` UPDATE — gets an ``invoice.*`` event with
``before``/``after``, written to the outbox in the same transaction as the change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import String, create_engine, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from trailseal.sdk import AuditClient, AuditMiddleware, Emitter, set_actor
from trailseal.sdk.sqlalchemy import AuditHooks


class Base(DeclarativeBase):
    pass


class Invoice(Base):
    __tablename__ = "invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(100))
    amount: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="draft")
    iban: Mapped[str | None] = mapped_column(String(34))


hooks = AuditHooks(metadata=Base.metadata)  # adds the trailseal_outbox table to our metadata
hooks.register(Invoice, resource_type="invoice", hashed=["iban"])  # the IBAN is stored as a hash


class NewInvoice(BaseModel):
    customer: str
    amount: int
    iban: str | None = None


async def current_user(authorization: str = Header("")) -> str:
    """Stand-in authentication: ``Bearer <user>``. An async dependency, so set_actor() applies to
    the whole request (the endpoint, the SQLAlchemy hooks and the access event)."""
    user = authorization.removeprefix("Bearer ").strip()
    if not user:
        raise HTTPException(401, "who are you?")
    set_actor(user, actor_type="user")
    return user


def create_app(*, database_url: str, audit: Emitter) -> Any:
    """The ASGI app: FastAPI wrapped in the audit middleware. ``audit`` is an ``AuditClient``
    (or an ``AuditRecorder`` in tests)."""
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)
    make_session = sessionmaker(engine)
    hooks.install(make_session)
    relay = hooks.relay(engine, audit, interval=0.5)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        relay.start()
        yield
        relay.stop()
        if isinstance(audit, AuditClient):
            audit.close()

    api = FastAPI(title="invoices", lifespan=lifespan)

    def db() -> Iterator[Session]:
        with make_session() as session:
            yield session

    @api.post("/invoices")
    def create_invoice(body: NewInvoice, user: str = Depends(current_user), session: Session = Depends(db)) -> dict[str, Any]:
        invoice = Invoice(customer=body.customer, amount=body.amount, iban=body.iban)
        session.add(invoice)
        session.commit()  # the invoice row and its invoice.create event commit together
        return {"id": invoice.id, "status": invoice.status}

    @api.post("/invoices/{invoice_id}/approve")
    def approve(invoice_id: int, user: str = Depends(current_user), session: Session = Depends(db)) -> dict[str, Any]:
        invoice = session.get(Invoice, invoice_id)
        if invoice is None:
            raise HTTPException(404, "no such invoice")
        invoice.status = "approved"  # invoice.update with before/after {"status": ...}
        session.commit()
        return {"id": invoice_id, "status": "approved"}

    @api.post("/invoices/void-overdue")
    def void_overdue(user: str = Depends(current_user), session: Session = Depends(db)) -> dict[str, Any]:
        # A bulk UPDATE: each affected row still gets its own invoice.update event.
        result = session.execute(update(Invoice).where(Invoice.status == "draft").values(status="void"))
        session.commit()
        return {"voided": result.rowcount}  # type: ignore[attr-defined]

    @api.post("/invoices/export")
    def export(user: str = Depends(current_user)) -> dict[str, Any]:
        audit.emit(action="invoice.export", resource="invoice:*", reason="monthly report")  # by hand
        return {"status": "queued"}

    return AuditMiddleware(api, client=audit, access_events=["/invoices"])


def create_app_from_env() -> Any:
    """For ``uvicorn --factory``: settings from the environment, read here at the edge."""
    audit = AuditClient(
        os.environ.get("TRAILSEAL_URL", "http://127.0.0.1:8700"),
        api_key=os.environ.get("TRAILSEAL_API_KEY"),
        spool_path=os.environ.get("AUDIT_SPOOL", "./invoices-audit.spool"),
        source={"service": "invoices", "environment": os.environ.get("ENVIRONMENT", "dev")},
    )
    return create_app(database_url=os.environ.get("DATABASE_URL", "sqlite:///./invoices.db"), audit=audit)
