"""The log writers in their own process (``writer_process``, the default of ``trailseal serve``)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from starlette.testclient import TestClient

from tests.factories import make_event
from tests.server.conftest import make_settings
from trailseal.core.errors import ConflictError, OverloadedError
from trailseal.core.ids import new_event_id
from trailseal.core.receipt import Receipt
from trailseal.pipeline.prepare import prepare
from trailseal.sequencer.process import ProcessSequencer, astuple_receipt
from trailseal.sequencer.runner import SequencerUnavailable
from trailseal.server.app import create_app
from trailseal.server.runtime import Runtime, utc_now
from trailseal.verify.receipt import verify_receipt

NOW = "2026-11-28T10:15:31.000000Z"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(make_settings(tmp_path, writer_process=True))
    yield rt
    rt.close()


def test_runtime_uses_a_writer_process_that_commits_and_signs(runtime: Runtime) -> None:
    sequencer = runtime.sequencer
    assert isinstance(sequencer, ProcessSequencer)
    assert sequencer.pid is not None and sequencer.pid != os.getpid()
    items = [prepare(make_event(), log="default", received_at=NOW) for _ in range(50)]
    receipts = sequencer.submit_sync("default", items, want_proofs=True)
    assert [r.leaf_index for r in receipts] == list(range(50))
    assert [r.id for r in receipts] == [i.event.id for i in items]
    keyring = runtime.keyring("default")
    for receipt, item in zip(receipts, items, strict=True):
        verify_receipt(receipt, keyring.verifiers(), event=orjson.loads(item.body))
    assert sequencer.tree_size("default") == 50
    # what the writer committed is in the store the API process reads
    assert runtime.store.tree_size("default") == 50
    again = sequencer.receipt_for("default", 7)
    assert again.leaf_index == 7 and again.inclusion_proof is not None


def test_retries_and_conflicts_cross_the_process_boundary(runtime: Runtime) -> None:
    raw = make_event(id=new_event_id())
    first = runtime.sequencer.submit_sync("default", [prepare(raw, log="default", received_at=NOW)])
    retry = runtime.sequencer.submit_sync("default", [prepare(raw, log="default", received_at=utc_now())])
    assert retry[0].leaf_index == first[0].leaf_index and retry[0].duplicate
    changed = dict(raw, outcome="failure")
    with pytest.raises(ConflictError) as caught:
        runtime.sequencer.submit_sync("default", [prepare(changed, log="default", received_at=NOW)])
    assert caught.value.event_id == raw["id"]
    assert runtime.store.tree_size("default") == 1


def test_the_api_process_keeps_admission(tmp_path: Path) -> None:
    rt = Runtime(make_settings(tmp_path, writer_process=True, queue_max_events=10, batch_max_wait_ms=200.0))
    try:
        first = rt.sequencer.submit_future("default", [prepare(make_event(), log="default", received_at=NOW)
                                                       for _ in range(10)])
        with pytest.raises(OverloadedError, match="queue full"):
            rt.sequencer.submit_future("default", [prepare(make_event(), log="default", received_at=NOW)])
        assert len(first.result(30)) == 10
        assert rt.sequencer.queued_events == 0
    finally:
        rt.close()


def test_a_dead_writer_is_replaced_and_the_log_continues(tmp_path: Path) -> None:
    runtime = Runtime(make_settings(tmp_path, writer_process=True))  # the client's lifespan closes it
    sequencer = runtime.sequencer
    assert isinstance(sequencer, ProcessSequencer) and sequencer.pid is not None
    with TestClient(create_app(runtime)) as client:
        assert client.post("/v1/events", json=[make_event() for _ in range(5)]).status_code == 200
        assert client.get("/readyz").status_code == 200
        first = sequencer.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (sequencer.pid == first or sequencer.failure is not None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sequencer.pid != first and sequencer.failure is None, "a new writer took over"
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/events", json=make_event())
        assert answer.status_code == 200
        assert answer.json()["receipts"][0]["leaf_index"] == 5  # continues the tree from the store


def test_requests_of_a_dying_writer_get_503(runtime: Runtime) -> None:
    sequencer = runtime.sequencer
    assert isinstance(sequencer, ProcessSequencer) and sequencer.pid is not None
    os.kill(sequencer.pid, signal.SIGSTOP)  # holds the request, then dies with it
    try:
        future = sequencer.submit_future("default", [prepare(make_event(), log="default", received_at=NOW)])
        time.sleep(0.3)
        assert not future.done()
    finally:
        os.kill(sequencer.pid, signal.SIGKILL)
    with pytest.raises(SequencerUnavailable):
        future.result(30)
    assert sequencer.queued_events == 0  # admission released


def test_a_new_writer_waits_for_the_old_one_to_let_go(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, writer_process=True)
    settings.data_dir.mkdir(parents=True)
    lock_path = Path(f"{settings.sqlite_path}.writer-lock")
    held = open(lock_path, "a+")  # noqa: SIM115 - stands for a writer still finishing its commit
    fcntl.flock(held, fcntl.LOCK_EX)
    built: list[Runtime] = []
    starter = threading.Thread(target=lambda: built.append(Runtime(settings)))
    starter.start()
    starter.join(3.0)
    assert starter.is_alive() and not built  # blocked on the lock, not writing
    held.close()
    starter.join(60)
    assert built
    try:
        receipts = built[0].sequencer.submit_sync(
            "default", [prepare(make_event(), log="default", received_at=NOW)])
        assert receipts[0].leaf_index == 0
    finally:
        built[0].close()


def test_receipts_survive_the_wire_form() -> None:
    receipt = Receipt(id="e1", log="default", leaf_index=3, leaf_hash=b"\x01" * 32, tree_size=9,
                      checkpoint="example.com/log\n9\nAAAA\n", inclusion_proof=(b"\x02" * 32,), duplicate=True)
    assert Receipt(*astuple_receipt(receipt)) == receipt
    assert len(astuple_receipt(receipt)) == len(dataclasses.fields(Receipt))
