"""The audit context: nesting, threads, tasks, late actors."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from trailseal.core.event import Actor
from trailseal.sdk import AuditContext, audit_context, bind_context, current_context, set_actor


def test_nesting_overrides_and_restores() -> None:
    assert current_context() == AuditContext()
    with audit_context(actor="alice", tenant="acme", request_id="r1") as outer:
        assert outer.actor == {"id": "alice"}
        with audit_context(request_id="r2", actor_type="user"):
            inner = current_context()
            assert inner.actor == {"id": "alice", "type": "user"} and inner.tenant == "acme" and inner.request_id == "r2"
        assert current_context().request_id == "r1"
    assert current_context() == AuditContext()


def test_actor_forms() -> None:
    with audit_context(actor=Actor("svc", type="service")):
        assert current_context().actor == {"id": "svc", "type": "service"}
    with audit_context(actor={"id": "bob", "ip": "203.0.113.1"}):
        assert current_context().actor == {"id": "bob", "ip": "203.0.113.1"}


def test_context_round_trips_through_a_job_payload() -> None:
    with audit_context(actor="alice", trace_id="t1"):
        saved = current_context().to_dict()
    assert saved == {"actor": {"id": "alice"}, "trace_id": "t1"}
    with audit_context(**saved):
        assert current_context().actor == {"id": "alice"}


def test_threads_get_the_context_with_bind_context_and_tasks_inherit_it() -> None:
    seen: list[AuditContext] = []
    with audit_context(actor="alice"):
        job = bind_context(lambda: seen.append(current_context()))
        plain = threading.Thread(target=lambda: seen.append(current_context()))
        plain.start()
        plain.join()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(job).result()
    assert seen[0].actor is None  # a plain thread starts empty
    assert seen[1].actor == {"id": "alice"}

    async def main() -> AuditContext | None:
        with audit_context(actor="carol"):
            return await asyncio.create_task(asyncio.sleep(0, current_context()))

    result = asyncio.run(main())
    assert result is not None and result.actor == {"id": "carol"}


def test_set_actor_keeps_network_details() -> None:
    with audit_context(actor={"id": "anonymous", "ip": "198.51.100.4"}):
        set_actor("alice", actor_type="user")
        assert current_context().actor == {"ip": "198.51.100.4", "id": "alice", "type": "user"}
    assert current_context().actor is None
