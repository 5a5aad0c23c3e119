"""Invariant 1: kill -9 loses no acknowledged event, and the log still verifies."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.factories import make_event
from tests.integration.conftest import ServerProcess
from tests.integration.crashkit import crash_rounds


def test_kill9_loses_no_acknowledged_event(tmp_path: Path) -> None:
    result = crash_rounds(tmp_path / "data", rounds=3, clients=3, run_seconds=1.5)
    assert result.failures == []
    assert result.rounds == 3
    assert result.acknowledged > 100, "the clients got acknowledgements before each kill"


def test_the_writer_process_exits_with_its_server(tmp_path: Path) -> None:
    """kill -9 of the API process: its writer commits what it holds and exits (no orphan that
    could keep appending beside the next server)."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        assert server.proc is not None
        pid = server.proc.pid
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        assert children, "serve runs its writer in a child process"
        httpx.post(f"{server.url}/v1/events", json=[make_event() for _ in range(20)], timeout=30).raise_for_status()
        server.kill9()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(child) for child in children):
            time.sleep(0.1)
        assert not any(_alive(child) for child in children)
        server.start()  # the next writer takes the lock at once and continues the log
        answer = httpx.post(f"{server.url}/v1/events", json=make_event(), timeout=30)
        assert answer.status_code == 200 and answer.json()["receipts"][0]["leaf_index"] == 20
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
