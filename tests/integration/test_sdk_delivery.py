"""The SDK against real ``trailseal serve`` subprocesses: outages, kill -9, exactly-once order."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.integration.conftest import REPO, ServerProcess
from tests.integration.sdk_kit import server_events
from trailseal.sdk import AuditClient, RetryPolicy, audit_context

FAST = RetryPolicy(initial=0.05, maximum=0.3)


def assert_exactly_once_in_order(events: list[dict[str, object]], ids: list[str], producer: str) -> None:
    mine = [e for e in events if e.get("producer", {}).get("id") == producer]  # type: ignore[union-attr]
    assert [e["id"] for e in mine] == ids, "every event exactly once, in producer order"
    assert [e["producer"]["seq"] for e in mine] == list(range(len(ids))), "producer.seq has no gaps"  # type: ignore[index]


def test_server_killed_mid_stream_every_event_arrives_once_in_order(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    ids: list[str] = []
    try:
        with AuditClient(server.url, spool_path=tmp_path / "spool.db", retry=FAST, linger=0.01, batch_size=100,
                         timeout=5) as audit:
            stop = threading.Event()

            def produce() -> None:
                with audit_context(actor="svc-a"):
                    n = 0
                    while not stop.is_set() and n < 1500:
                        ids.append(audit.emit(action="order.create", resource=f"order:{n}"))
                        n += 1
                        time.sleep(0.0005)

            producer = threading.Thread(target=produce)
            producer.start()
            while audit.stats.sent < 300:
                time.sleep(0.01)
            server.kill9()  # mid-stream: batches in flight, more being emitted
            time.sleep(0.5)
            assert audit.stats.spooled > 0 and audit.stats.retries > 0
            server.start()
            producer.join(60)
            stop.set()
            assert audit.flush(60) == 0
            assert audit.stats.failed == 0
            producer_id = audit.producer_id
        assert_exactly_once_in_order(server_events(server.url), ids, producer_id)
    finally:
        server.stop()


def run_producer(mode: str, url: str, spool: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.sdk_kit", mode, url, str(spool), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 60, minimum: int = 0) -> str:
    """The first stdout line starting with ``prefix`` whose second word is at least ``minimum``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix) and int(line.split()[1]) >= minimum:
            return line
        if not line and proc.poll() is not None:
            raise AssertionError(f"producer exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError(f"no {prefix!r} line within {timeout}s")


def test_producer_process_killed_9_loses_nothing_spooled(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")  # not started yet: the service is down
    # 1. The service is down; the producer spools 1,500 events and is killed -9.
    spool = tmp_path / "producer.spool"
    producer = run_producer("spool", server.url, spool, 1500)
    line = wait_for_line(producer, "SPOOLED")
    assert line.split()[1] == "1500"
    producer_id = line.split()[3]
    producer.send_signal(signal.SIGKILL)
    producer.wait(10)
    server.start()
    try:
        report = resume(server.url, spool)
        assert report == {"left": 0, "sent": 1500, "producer": producer_id}
        events = [e for e in server_events(server.url) if e["producer"]["id"] == producer_id]
        assert [e["metadata"]["n"] for e in events] == list(range(1500))
        assert [e["producer"]["seq"] for e in events] == list(range(1500))
        assert {e["actor"]["id"] for e in events} == {"producer-process"}

        # 2. The service is up; a producer is killed -9 while batches are in flight (some
        # acknowledged, some not): after a restart nothing is stored twice and seq has no gap.
        spool = tmp_path / "streaming.spool"
        producer = run_producer("stream", server.url, spool, 100_000)
        line = wait_for_line(producer, "SPOOLED", minimum=600)
        producer.send_signal(signal.SIGKILL)
        producer.wait(10)
        report = resume(server.url, spool)
        assert report["left"] == 0
        events = [e for e in server_events(server.url) if e["producer"]["id"] == report["producer"]]
        assert len(events) >= 600
        assert len({e["id"] for e in events}) == len(events), "no event stored twice"
        assert [e["producer"]["seq"] for e in events] == list(range(len(events))), "gap-free, in order"
        assert [e["metadata"]["n"] for e in events] == list(range(len(events)))
    finally:
        server.stop()


def resume(url: str, spool: Path) -> dict[str, object]:
    resumed = run_producer("resume", url, spool, 0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    report: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return report
