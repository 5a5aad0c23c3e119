"""Kill -9 the server while clients send batches; check every acknowledged event survived.

Shared by ``tests/integration/test_crash.py`` (a few rounds) and ``bench/crash.py`` (many).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from tests.factories import make_event
from tests.integration.conftest import ServerProcess, run_cli


@dataclass
class CrashResult:
    rounds: int = 0
    acknowledged: int = 0
    failures: list[str] = field(default_factory=list)


def _client(url: str, acked: dict[str, int], lock: threading.Lock, stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            batch = [make_event() for _ in range(50)]
            try:
                response = client.post(f"{url}/v1/events", content=orjson.dumps(batch),
                                       headers={"content-type": "application/json"})
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                with lock:
                    for receipt in response.json()["receipts"]:
                        acked[receipt["id"]] = receipt["leaf_index"]


def check_acknowledged(data_dir: Path, acked: dict[str, int]) -> list[str]:
    """Every acknowledged id is stored at its acknowledged leaf index, leaves are contiguous."""
    conn = sqlite3.connect(data_dir / "trailseal.db")
    rows = dict(conn.execute("SELECT event_id, leaf_index FROM entries WHERE log = 'default'"))
    indexes = sorted(rows.values())
    conn.close()
    problems = [f"acknowledged event {i} lost or moved" for i, leaf in acked.items() if rows.get(i) != leaf]
    if indexes != list(range(len(indexes))):
        problems.append("leaf indexes are not contiguous")
    return problems[:10]


def crash_rounds(data_dir: Path, rounds: int, *, clients: int = 4, run_seconds: float = 1.0) -> CrashResult:
    """Run ``rounds`` kill -9 / restart cycles; verify after each."""
    result = CrashResult()
    acked: dict[str, int] = {}
    lock = threading.Lock()
    server = ServerProcess(data_dir)
    for _ in range(rounds):
        server.start()
        stop = threading.Event()
        threads = [threading.Thread(target=_client, args=(server.url, acked, lock, stop)) for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(run_seconds)
        server.kill9()  # while the clients are still sending
        stop.set()
        for t in threads:
            t.join(15)
        result.rounds += 1
        with lock:
            result.failures += check_acknowledged(data_dir, acked)
        verified = run_cli("verify", "--data", str(data_dir), "--format", "json")
        if verified.returncode != 0:
            result.failures.append(f"verify failed after round {result.rounds}: {verified.stdout}")
        if result.failures:
            break
    result.acknowledged = len(acked)
    return result
