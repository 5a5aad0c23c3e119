"""AuditLogHandler, AuditRecorder, the pytest plugin and the default client."""

from __future__ import annotations

import logging

import pytest

from trailseal.core.errors import InvalidEvent
from trailseal.sdk import (
    AuditLogHandler,
    AuditRecorder,
    audit_context,
    emit,
    get_default_client,
    set_default_client,
)


@pytest.fixture
def logger(audit_recorder: AuditRecorder) -> logging.Logger:
    log = logging.getLogger("tests.sdk.billing")
    log.setLevel(logging.INFO)
    handler = AuditLogHandler()
    log.addHandler(handler)
    yield log
    log.removeHandler(handler)


def test_records_with_audit_extra_become_events(logger: logging.Logger, audit_recorder: AuditRecorder) -> None:
    with audit_context(actor="alice", request_id="r-5"):
        logger.info("approved invoice %s", "inv-42", extra={"audit": {"action": "invoice.approve",
                                                                       "resource": "invoice:inv-42"}})
        logger.error("payment failed", extra={"audit": {"action": "payment.capture", "resource": "payment:p-1",
                                                        "metadata": {"amount": 10}}})
        logger.info("not an audit record")
    approve, capture = audit_recorder.events
    assert approve.action == "invoice.approve" and approve.actor.id == "alice" and approve.request_id == "r-5"
    assert approve.reason == "approved invoice inv-42" and approve.outcome is None
    assert approve.metadata == {"log": {"logger": "tests.sdk.billing", "level": "INFO"}}
    assert capture.outcome == "failure" and capture.metadata == {"amount": 10, "log": {"logger": "tests.sdk.billing", "level": "ERROR"}}


def test_a_bad_audit_record_does_not_raise_into_the_caller(logger: logging.Logger, audit_recorder: AuditRecorder,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    logger.info("no actor anywhere", extra={"audit": {"action": "invoice.approve", "resource": "invoice:1"}})
    assert audit_recorder.events == []
    assert "actor.id" in capsys.readouterr().err  # logging.Handler.handleError reports it


def test_recorder_assertions(audit_recorder: AuditRecorder) -> None:
    assert get_default_client() is audit_recorder
    emit(action="invoice.approve", actor="alice", resource="invoice:inv-42", after={"status": "approved", "n": 1})
    emit(action="invoice.view", actor="bob", resource="invoice:inv-42", log="acme")
    assert audit_recorder.actions() == ["invoice.approve", "invoice.view"]
    audit_recorder.assert_emitted("invoice.approve", count=1, actor="alice", resource="invoice:inv-42",
                                  after={"status": "approved"})
    audit_recorder.assert_not_emitted("invoice.delete")
    assert audit_recorder.recorded[1].log == "acme"
    assert [e.producer.seq for e in audit_recorder.events if e.producer] == [0, 1]
    with pytest.raises(AssertionError, match=r"emitted:\n  invoice\.approve actor=alice"):
        audit_recorder.assert_emitted("invoice.approve", actor="mallory")
    with pytest.raises(InvalidEvent):
        emit(action="invoice.view", actor={"id": "a", "ip": "nope"}, resource="invoice:1")  # fully validated
    assert audit_recorder.spool([{"id": "x-1", "actor": {"id": "a"}, "action": "a.b", "resource": {"type": "t", "id": "1"}}]) == 1
    assert audit_recorder.spool([{"id": "x-1", "actor": {"id": "a"}, "action": "a.b", "resource": {"type": "t", "id": "1"}}]) == 0
    audit_recorder.clear()
    assert audit_recorder.events == []


def test_without_a_default_client_emit_says_what_to_do() -> None:
    previous = set_default_client(None)
    try:
        with pytest.raises(RuntimeError, match="set_default_client"):
            emit(action="a.b", actor="a", resource="t:1")
    finally:
        set_default_client(previous)


def test_plugin_is_registered_through_the_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("trailseal")
